"""Stored bytes from safetensors headers, the fixture source, and the serve flags the fit engine reads
(runtimes/fit/safetensors.py, facts.py, options.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.registry import load_registry
from nemoclaw_runtime.runtimes.fit import (
    DTYPE_BITS,
    DirectoryModelSource,
    ServeOptions,
    StaticModelSource,
    parse_header,
    stored_bytes,
    weights_from_document,
)
from nemoclaw_runtime.runtimes.fit.safetensors import HeaderError, dtype_bytes, header_length
from tests.fake_servers.fake_hf import safetensors_file, safetensors_header_end

FIT_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fit"
GIB = 1024**3


# --- safetensors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "size"), [("BF16", 2), ("F16", 2), ("F32", 4), ("F64", 8), ("F8_E4M3", 1),
                                             ("F8_E5M2", 1), ("I8", 1), ("U8", 1), ("BOOL", 1), ("I16", 2),
                                             ("I32", 4), ("I64", 8), ("F8_E8M0", 1)])
def test_dtype_sizes(dtype: str, size: int) -> None:
    assert dtype_bytes(dtype, 10) == 10 * size


def test_sub_byte_dtypes_round_up() -> None:
    assert DTYPE_BITS["F4"] == 4 and dtype_bytes("F4", 3) == 2


def test_header_parse_counts_stored_elements_per_dtype() -> None:
    data = safetensors_file({"w": ("U8", [64, 32]), "w_scale": ("F8_E4M3", [64, 4]), "norm": ("BF16", [64]),
                             "w2": ("U8", [16])})
    end = safetensors_header_end(data)
    counts = parse_header(data[8:end])

    assert counts == {"U8": 64 * 32 + 16, "F8_E4M3": 256, "BF16": 64}
    assert stored_bytes(counts) == len(data) - end  # the stored bytes are exactly the data section


def test_packed_4bit_counts_bytes_not_parameters() -> None:
    # a 4096×4096 NVFP4 weight: 4096×2048 packed U8 bytes plus one fp8 scale per 16 values
    assert stored_bytes({"U8": 4096 * 2048, "F8_E4M3": 4096 * 256, "F32": 1}) == 4096 * 2048 + 4096 * 256 + 4


@pytest.mark.parametrize("prefix", [b"", b"\x00" * 8, struct.pack("<Q", 10**9)])
def test_implausible_header_lengths(prefix: bytes) -> None:
    with pytest.raises(HeaderError):
        header_length(prefix)


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"t": {"shape": [1]}}', b'{"t": {"dtype": "Q9", "shape": [1]}}',
                                 b'{"t": {"dtype": "F32", "shape": [-1]}}'])
def test_bad_headers(raw: bytes) -> None:
    with pytest.raises(HeaderError):
        parse_header(raw)


# --- fixtures and sources ---------------------------------------------------------------------------------------


def test_every_fixture_folder_is_documented_and_readable() -> None:
    source = DirectoryModelSource(FIT_FIXTURES)
    folders = sorted(p for p in FIT_FIXTURES.iterdir() if p.is_dir())
    assert len(folders) >= 10
    for folder in folders:
        assert (folder / "SOURCE.md").is_file(), folder.name
        facts = source.facts(folder.name.replace("__", "/"))
        assert facts.weights is not None and facts.weights.total_bytes > 0, folder.name


def test_registry_models_all_have_fixtures() -> None:
    source = DirectoryModelSource(FIT_FIXTURES)
    for entry in load_registry().vllm_models:
        assert source.facts(entry.hf_id).weights is not None, entry.hf_id


def test_header_fixture_matches_the_published_stored_size() -> None:
    facts = DirectoryModelSource(FIT_FIXTURES).facts("Qwen/Qwen3.6-27B-FP8")
    assert facts.weights is not None and facts.weights.exact
    assert facts.weights.total_bytes / GIB == pytest.approx(28.75, abs=0.005)  # the reference's 28.75 GiB
    assert facts.revision == "e89b16ebf1988b3d6befa7de50abc2d76f26eb09"


def test_weights_document_shapes() -> None:
    by_counts = weights_from_document({"source": "safetensors-headers", "parameter_count": {"BF16": 10, "F32": 1}})
    assert by_counts is not None and by_counts.total_bytes == 24
    declared = weights_from_document({"source": "declared", "total_bytes": 5, "note": "catalog"})
    assert declared is not None and declared.total_bytes == 5 and not declared.exact
    assert weights_from_document({"source": "guess", "total_bytes": 5}) is None
    assert weights_from_document({"source": "declared"}) is None


def test_a_missing_fixture_is_unknown_with_reasons(tmp_path: Path) -> None:
    facts = DirectoryModelSource(tmp_path).facts("acme/none")
    assert facts.config is None and facts.weights is None and len(facts.reasons) == 2


def test_static_source() -> None:
    assert StaticModelSource().facts("acme/x").reasons


def test_declared_weights_are_an_assumption(tmp_path: Path) -> None:
    folder = tmp_path / "acme__m"
    folder.mkdir()
    (folder / "weights.json").write_text(json.dumps({"source": "declared", "total_bytes": 7, "note": "catalog"}))
    facts = DirectoryModelSource(tmp_path).facts("acme/m")
    assert facts.assumptions == ("weights: declared (catalog)",)


# --- serve flags ------------------------------------------------------------------------------------------------


def test_registry_flags_of_deepseek_v4_flash() -> None:
    entry = load_registry().vllm_model("deepseek-v4-flash")
    opts = ServeOptions.from_argv(entry.serve_argv())

    assert opts.max_model_len == 1048576
    assert opts.kv_cache_dtype == "fp8"
    assert opts.block_size == 256
    assert opts.gpu_memory_utilization == 0.92
    assert (opts.max_num_batched_tokens, opts.max_num_seqs) == (8192, 16)
    assert (opts.speculative_method, opts.speculative_tokens) == ("mtp", 3)


def test_flag_spellings_and_last_wins() -> None:
    opts = ServeOptions.from_argv(["--max-model-len=4096", "--max_model_len", "32K", "-tp", "2",
                                   "--gpu_memory_utilization=0.5", "--enforce-eager", "--dtype", "float16"])
    assert opts.max_model_len == 32768  # vLLM: uppercase K is 1024, lowercase k 1000
    assert ServeOptions.from_argv(["--max-model-len", "32k"]).max_model_len == 32000
    assert opts.tensor_parallel_size == 2
    assert opts.gpu_memory_utilization == 0.5
    assert opts.enforce_eager and opts.dtype == "float16"


def test_defaults_and_auto_context() -> None:
    opts = ServeOptions.from_argv(["--max-model-len", "auto"])
    assert opts.max_model_len is None and opts.max_model_len_auto
    assert opts.gpu_memory_utilization == 0.9 and opts.kv_cache_dtype == "auto"
    assert opts.batched_tokens(80 * GIB) == 8192 and opts.batched_tokens(24 * GIB) == 2048


@pytest.mark.parametrize("argv", [["--gpu-memory-utilization", "1.5"], ["--gpu-memory-utilization", "x"],
                                  ["--max-model-len", "0"], ["--tensor-parallel-size", "two"]])
def test_bad_flag_values_are_invalid_input(argv: list[str]) -> None:
    with pytest.raises(InvalidInput):
        ServeOptions.from_argv(argv)


def test_an_unreachable_hub_is_probed_once_and_never_retried(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port makes every fact unknown with the reason, without huggingface_hub's retry ladder."""
    import huggingface_hub

    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes.fit.hub import HubModelSource
    from tests.helpers.docker_env import free_port

    online_calls: list[str] = []

    def no_network(repo_id: str, filename: str, **kwargs: object) -> str:
        if not kwargs.get("local_files_only"):
            online_calls.append(filename)
        raise FileNotFoundError(filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    settings = Settings.from_env({"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HOME": str(tmp_path)})
    source = HubModelSource(settings)
    for model in ("acme/one", "acme/two"):
        facts = source.facts(model)
        assert facts.config is None and facts.weights is None
        assert all("unreachable" in reason for reason in facts.reasons), facts.reasons
    assert online_calls == []
