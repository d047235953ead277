"""A damaged data file is rejected on load, naming the file, the entry and the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.errors import NemoclawError
from nemoclaw_runtime.registry import DATA_DIR, load_registry


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def _load_error(folder: Path) -> NemoclawError:
    with pytest.raises(NemoclawError) as caught:
        load_registry(folder)
    return caught.value


def test_copy_loads_like_the_packaged_data(data_dir: Path) -> None:
    assert load_registry(data_dir) == load_registry()


def test_path_accepts_str(data_dir: Path) -> None:
    assert load_registry(str(data_dir)).vllm_models == load_registry().vllm_models


VLLM_CASES = [
    # (old text, new text, entry, field, problem fragment)
    (
        "max_model_len = 32768",
        "max_model_len = -1",
        "model 'deepseek-r1-distill-70b'",
        "max_model_len",
        "positive integer",
    ),
    (
        "max_model_len = 32768",
        'max_model_len = "32768"',
        "model 'deepseek-r1-distill-70b'",
        "max_model_len",
        "positive integer",
    ),
    (
        "max_model_len = 32768",
        "max_model_len = true",
        "model 'deepseek-r1-distill-70b'",
        "max_model_len",
        "positive integer",
    ),
    ("gated = true", 'gated = "yes"', "model 'deepseek-r1-distill-70b'", "gated", "true or false"),
    (
        'hf_id = "Qwen/Qwen3.6-27B-FP8"',
        'hf_id = "Qwen3.6-27B-FP8"',
        "model 'qwen3.6-27b'",
        "hf_id",
        "Hugging Face id",
    ),
    ('slug = "qwen3.6-27b"', 'slug = "Qwen 27b"', "model 'Qwen 27b'", "slug", "lower-case"),
    ('slug = "qwen3.6-27b"\n', "", "model #1", "slug", "is missing"),
    (
        'platforms = ["dgx-station"]',
        'platforms = ["station"]',
        "model 'deepseek-v4-flash'",
        "platforms[0]",
        "must be one of",
    ),
    (
        'platforms = ["dgx-station"]',
        "platforms = []",
        "model 'deepseek-v4-flash'",
        "platforms",
        "non-empty list",
    ),
    (
        '"--compilation-config", \'{"cudagraph_mode":"FULL_AND_PIECEWISE","custom_ops":["all"]}\',',
        '"--compilation-config", "\'{\\"cudagraph_mode\\":\\"FULL_AND_PIECEWISE\\"}\'",',
        "model 'deepseek-v4-flash'",
        "flags[8]",
        "not shell text",
    ),
    (
        '\'{"method":"mtp","num_speculative_tokens":3}\'',
        '\'{"method":"mtp",\'',
        "model 'deepseek-v4-flash'",
        "flags[23]",
        "does not parse",
    ),
    (
        '"--tool-call-parser", "hermes",',
        '"--tool-call-parser hermes",',
        "model 'deepseek-r1-distill-70b'",
        "flags[7]",
        "not shell text",
    ),
    (
        '"--tool-call-parser", "hermes",',
        '"--tool-call-parser", "hermes", "--port", "9000",',
        "model 'deepseek-r1-distill-70b'",
        "flags[9]",
        "must not set --port",
    ),
    (
        '"--tool-call-parser", "hermes",',
        '"--tool-call-parser", "hermes", "--max-num-seqs", "8",',
        "model 'deepseek-r1-distill-70b'",
        "flags[9]",
        "repeats --max-num-seqs",
    ),
    (
        '"--tool-call-parser", "hermes",',
        '"--tool-call-parser", "hermes", " --x",',
        "model 'deepseek-r1-distill-70b'",
        "flags[9]",
        "whitespace",
    ),
    (
        "max_model_len = 32768",
        "max_model_len = 32768\ncontext = 5",
        "model 'deepseek-r1-distill-70b'",
        "context",
        "not a known field",
    ),
    (
        'hf_id = "deepseek-ai/DeepSeek-V4-Flash"',
        'hf_id = "Qwen/qwen3.6-27b-fp8"',
        "model 'qwen/qwen3.6-27b-fp8'",
        "hf_id",
        "more than one entry",
    ),
    (
        'default_slug = "qwen3.6-27b"',
        'default_slug = "deepseek-v5"',
        "profile 'dgx-station'",
        "default_slug",
        "not a [[model]] slug",
    ),
    (
        'default_slug = "qwen3.6-27b"',
        'default_slug = "qwen3.6-35b-a3b-nvfp4"',
        "profile 'dgx-station'",
        "default_slug",
        "does not list dgx-station",
    ),
    (
        'image = "nvcr.io/nvidia/vllm:26.03.post1-py3"',
        'image = "nvcr.io/nvidia/vllm"',
        "profile 'linux-nvidia'",
        "image",
        "image reference",
    ),
    (
        'pull_timeout_s = 43200\nload_timeout_s = 1800\ncontainer_name = "nemoclaw-vllm"\n'
        'also_for = ["jetson"]',
        'pull_timeout_s = 0\nload_timeout_s = 1800\ncontainer_name = "nemoclaw-vllm"\nalso_for = ["jetson"]',
        "profile 'linux-nvidia'",
        "pull_timeout_s",
        "positive integer",
    ),
    (
        'also_for = ["jetson"]',
        'also_for = ["mac"]',
        "profile 'linux-nvidia'",
        "also_for[0]",
        "must be one of",
    ),
    (
        'gpu_profile = "dgx-spark"',
        'gpu_profile = "spark"',
        "profile 'spark'",
        "gpu_profile",
        "must be one of",
    ),
    (
        'container_name = "nemoclaw-vllm"',
        'container_name = "nemoclaw vllm"',
        "profile 'dgx-spark'",
        "container_name",
        "container name",
    ),
]


@pytest.mark.parametrize(("old", "new", "entry", "field", "problem"), VLLM_CASES)
def test_bad_vllm_value(data_dir: Path, old: str, new: str, entry: str, field: str, problem: str) -> None:
    _edit(data_dir / "vllm.toml", old, new)
    error = _load_error(data_dir)
    assert str(data_dir / "vllm.toml") in error.message
    assert f"{entry}, field '{field}'" in error.message
    assert problem in error.message
    assert error.details == {"file": str(data_dir / "vllm.toml"), "entry": entry, "field": field}
    assert error.remedy and error.exit_code == 1
    assert "\n" not in error.message


@pytest.mark.parametrize(
    ("old", "new", "entry", "field", "problem"),
    [
        (
            "min_vram_mib = 8192",
            "min_vram_mib = 8192.0",
            "model 'nvidia/nemotron-3-nano-30b-a3b'",
            "min_vram_mib",
            "positive integer",
        ),
        (
            'served_id = "nvidia/nemotron-3-nano"',
            'served_id = "nvidia/nemotron 3"',
            "model 'nvidia/nemotron-3-nano-30b-a3b'",
            "served_id",
            "must match",
        ),
        (
            'image = "nvcr.io/nim/nvidia/nemotron-3-nano:latest"',
            'image = ""',
            "model 'nvidia/nemotron-3-nano-30b-a3b'",
            "image",
            "non-empty string",
        ),
    ],
)
def test_bad_nim_value(data_dir: Path, old: str, new: str, entry: str, field: str, problem: str) -> None:
    _edit(data_dir / "nim.toml", old, new)
    error = _load_error(data_dir)
    assert f"nim.toml: {entry}, field '{field}': " in error.message and problem in error.message


@pytest.mark.parametrize(
    ("old", "new", "entry", "field", "problem"),
    [
        (
            "compute_intensive = false",
            "compute_intensive = 0",
            "starter 'qwen3.5:9b'",
            "compute_intensive",
            "true or false",
        ),
        (
            "download_bytes = 6_600_000_000",
            "download_bytes = 6.6e9",
            "starter 'qwen3.5:9b'",
            "download_bytes",
            "positive integer",
        ),
        ('\ntag = "qwen3.5:9b"', '\ntag = "qwen3.5"', "starter 'qwen3.5'", "tag", "Ollama tag"),
        ('fallback_tag = "qwen3.5:9b"', 'fallback_tag = "llama3:8b"', "file", "fallback_tag", "starter tags"),
    ],
)
def test_bad_ollama_value(data_dir: Path, old: str, new: str, entry: str, field: str, problem: str) -> None:
    _edit(data_dir / "ollama.toml", old, new)
    error = _load_error(data_dir)
    assert f"ollama.toml: {entry}, field '{field}': " in error.message and problem in error.message


def test_not_toml(data_dir: Path) -> None:
    (data_dir / "nim.toml").write_text("[[model]\nname = ")
    error = _load_error(data_dir)
    assert "nim.toml: file: not valid TOML" in error.message


def test_missing_file(data_dir: Path) -> None:
    (data_dir / "ollama.toml").unlink()
    assert "ollama.toml: file: the file is missing" in _load_error(data_dir).message


def test_wrong_schema(data_dir: Path) -> None:
    _edit(data_dir / "vllm.toml", "schema = 1", "schema = 2")
    assert "vllm.toml: file, field 'schema': must be 1" in _load_error(data_dir).message


def test_unknown_top_level_key(data_dir: Path) -> None:
    _edit(data_dir / "vllm.toml", "schema = 1", "schema = 1\n[[models]]\nslug = 'x'")
    assert "file, field 'models': is not a known top-level key" in _load_error(data_dir).message


def test_no_entries(data_dir: Path) -> None:
    (data_dir / "nim.toml").write_text("schema = 1\n")
    assert (
        "nim.toml: file, field 'model': must hold at least one [[model]] entry"
        in _load_error(data_dir).message
    )


def test_entry_not_a_table(data_dir: Path) -> None:
    (data_dir / "nim.toml").write_text("schema = 1\nmodel = [1]\n")
    assert "nim.toml: model #1: must be a table" in _load_error(data_dir).message


def test_errors_are_not_cached(data_dir: Path) -> None:
    _edit(data_dir / "nim.toml", "min_vram_mib = 8192", "min_vram_mib = 0")
    _load_error(data_dir)
    _edit(data_dir / "nim.toml", "min_vram_mib = 0", "min_vram_mib = 8192")
    assert len(load_registry(data_dir).nim_models) == 5
