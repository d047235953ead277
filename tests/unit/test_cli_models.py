"""`nemoclaw-runtime models` on replayed GPU snapshots (fixtures/gpu) and a patched detector."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nemoclaw_runtime import api
from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.registry.listing import HostView

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


def _patch_host(monkeypatch: pytest.MonkeyPatch, host: HostView) -> None:
    """The GPU detector the library uses answers with ``host``'s facts (an inventory-shaped stand-in)."""
    inventory = SimpleNamespace(profile=host.gpu_profile, memory_budget_mib=host.memory_budget_mib,
                                compute_constrained=host.compute_constrained, reason=host.reason,
                                available_memory_mib=host.available_memory_mib)
    monkeypatch.setattr(api, "detect_gpus", lambda settings=None: inventory)


def _run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str | None, *args: str
) -> tuple[int, str, str]:
    if snapshot is not None:
        monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / f"{snapshot}.json"))
    code = run(["models", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str | None, *args: str
) -> dict[str, Any]:
    code, out, err = _run(capsys, monkeypatch, snapshot, *args, "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("snapshot", "gpu_profile", "default", "slugs"),
    [
        (
            "dgx_spark",
            "dgx-spark",
            "qwen3.6-35b-a3b-nvfp4",
            ["qwen3.6-35b-a3b-nvfp4", "qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b"],
        ),
        (
            "dgx_station",
            "dgx-station",
            "qwen3.6-27b",
            ["qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b", "deepseek-v4-flash"],
        ),
        (
            "h100_x8",
            "linux-nvidia",
            "nemotron-3-nano-4b",
            ["nemotron-3-nano-4b", "qwen3.6-27b", "deepseek-r1-distill-70b"],
        ),
        (
            "jetson_orin",
            "jetson",
            "nemotron-3-nano-4b",
            ["nemotron-3-nano-4b", "qwen3.6-27b", "deepseek-r1-distill-70b"],
        ),
    ],
)
def test_vllm_entries_for_profile(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    snapshot: str,
    gpu_profile: str,
    default: str,
    slugs: list[str],
) -> None:
    doc = _json(capsys, monkeypatch, snapshot, "--runtime", "vllm")
    assert doc["host"]["gpu_profile"] == gpu_profile
    assert set(doc) == {"host", "all", "vllm"}
    entries = doc["vllm"]["entries"]
    assert [e["slug"] for e in entries] == slugs
    assert [e["slug"] for e in entries if e["default"]] == [default]
    for entry in entries:
        assert {"slug", "hf_id", "gated", "max_model_len", "platforms", "default"} <= set(entry)
        assert entry["serve_argv"][:3] == ["vllm", "serve", entry["hf_id"]]


def test_vllm_all_lists_every_entry(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = _json(capsys, monkeypatch, "h100_x8", "--runtime", "vllm", "--all")
    entries = {e["slug"]: e for e in doc["vllm"]["entries"]}
    assert len(entries) == 5
    assert entries["deepseek-v4-flash"]["for_this_host"] is False
    assert entries["nemotron-3-nano-4b"]["default"] is True
    gated = entries["deepseek-r1-distill-70b"]
    assert gated["gated"] is True and gated["token_variables"] == ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
    assert gated["max_model_len"] == 32768


def test_no_gpu_vllm_says_why_and_suggests_all(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _run(capsys, monkeypatch, "no_gpu", "--runtime", "vllm")
    assert code == 0
    assert "No vLLM host profile for GPU profile 'none'" in out
    assert "--all" in out
    assert "qwen3.6-27b" not in out
    doc = _json(capsys, monkeypatch, "no_gpu", "--runtime", "vllm")
    assert doc["vllm"]["entries"] == [] and doc["vllm"]["profile"] is None
    assert doc["host"]["reason"]
    doc = _json(capsys, monkeypatch, "no_gpu", "--runtime", "vllm", "--all")
    assert len(doc["vllm"]["entries"]) == 5
    assert not any(e["default"] for e in doc["vllm"]["entries"])


def test_nim_fit_against_budget(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_host(monkeypatch, HostView("linux-nvidia", 24576))
    doc = _json(capsys, monkeypatch, None, "--runtime", "nim")
    names = [e["name"] for e in doc["nim"]["entries"]]
    assert names == [
        "nvidia/nemotron-3-nano-30b-a3b",
        "nvidia/llama-3.3-nemotron-super-49b-v1",
        "meta/llama-3.1-8b-instruct",
    ]
    assert all(e["fits"] is True for e in doc["nim"]["entries"])
    assert doc["nim"]["entries"][0]["default"] is True
    every = _json(capsys, monkeypatch, None, "--runtime", "nim", "--all")["nim"]["entries"]
    assert {e["name"]: e["fits"] for e in every}["nvidia/llama-3.1-nemotron-70b-instruct"] is False
    for entry in every:
        assert {"slug", "image", "min_vram_mib", "fits", "gated", "default"} <= set(entry)


def test_nim_with_no_gpu(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _json(capsys, monkeypatch, "no_gpu", "--runtime", "nim", "--all")
    assert len(doc["nim"]["entries"]) == 5
    assert all(e["fits"] is None and e["default"] is False for e in doc["nim"]["entries"])


def test_ollama_on_jetson_skips_compute_intensive(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = _json(capsys, monkeypatch, "jetson_orin", "--runtime", "ollama")
    assert doc["host"]["compute_constrained"] is True
    assert [(e["tag"], e["default"]) for e in doc["ollama"]["entries"]] == [("qwen3.5:9b", True)]
    every = _json(capsys, monkeypatch, "jetson_orin", "--runtime", "ollama", "--all")["ollama"]["entries"]
    assert [e["tag"] for e in every] == ["qwen3.5:9b", "nemotron-3-nano:30b", "qwen3.6:35b"]
    assert [e["offered"] for e in every] == [True, False, False]
    for entry in every:
        assert {"tag", "required_memory_mib", "download_bytes", "fits", "default"} <= set(entry)


def test_ollama_uses_available_memory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = HostView("linux-nvidia", 81920, available_memory_mib=28000)
    _patch_host(monkeypatch, host)
    entries = _json(capsys, monkeypatch, None, "--runtime", "ollama")["ollama"]["entries"]
    assert [(e["tag"], e["default"]) for e in entries] == [
        ("qwen3.5:9b", False),
        ("nemotron-3-nano:30b", True),
    ]


def test_without_runtime_lists_all_three_groups(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = _json(capsys, monkeypatch, "dgx_spark")
    assert {"vllm", "nim", "ollama"} <= set(doc)
    code, out, _ = _run(capsys, monkeypatch, "dgx_spark")
    assert code == 0
    assert "vLLM (DGX Spark, image nvcr.io/nvidia/vllm:26.05.post1-py3):" in out
    assert "NIM (needs an NGC key" in out and "Ollama starter models" in out


def test_human_marks_default_and_gated(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _run(capsys, monkeypatch, "dgx_station", "--runtime", "vllm")
    assert code == 0
    lines = out.splitlines()
    default_line = next(line for line in lines if "qwen3.6-27b" in line)
    assert default_line.lstrip().startswith("*") and "default" in default_line
    gated_line = next(line for line in lines if "deepseek-r1-distill-70b" in line)
    assert "gated: needs HF_TOKEN" in gated_line and "https://huggingface.co/" in gated_line


def test_bad_runtime_is_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = _run(capsys, monkeypatch, "dgx_spark", "--runtime", "tgi")
    assert code == 2
    assert err.splitlines() == ["Error: Unknown runtime 'tgi'", "  fix: use one of: vllm, nim, ollama"]
    code, out, _ = _run(capsys, monkeypatch, "dgx_spark", "--runtime", "tgi", "--json")
    assert code == 2 and json.loads(out)["error"] == "InvalidInput"


def test_the_library_refuses_an_unknown_runtime_too() -> None:
    from nemoclaw_runtime.kernel.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        api.models("tgi")
    assert caught.value.exit_code == 2 and "vllm, nim, ollama" in (caught.value.remedy or "")


def test_bad_snapshot_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(tmp_path / "missing.json"))
    assert run(["models"]) == 2


def test_module_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nemoclaw_runtime.cli.models; "
        "bad = [m for m in ('docker', 'httpx', 'pynvml', 'huggingface_hub', 'rich') if m in sys.modules]; "
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
