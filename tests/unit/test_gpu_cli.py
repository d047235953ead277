"""``nemoclaw-runtime gpus``: human lines, the JSON document, snapshot replay and bad snapshots (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nemoclaw_runtime.cli.main import run
from tests.fakes.fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


def use_fixture(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / f"{name}.json"))


def test_human_output_for_a_dgx_spark(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    use_fixture(monkeypatch, "dgx_spark")
    assert run(["gpus"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "NVIDIA GPU detected (NVIDIA GB10, 121000 MB)"
    assert "Host profile: dgx-spark (unified memory: GPU budget = host memory 118 GiB)" in lines


def test_human_output_for_mixed_gpus(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    use_fixture(monkeypatch, "mixed")
    assert run(["gpus"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [
        "NVIDIA GPU detected: 3 GPUs, 204800 MB VRAM",
        "    - 2x NVIDIA H100 80GB HBM3 (163840 MB)",
        "    - 1x NVIDIA A100 40GB (40960 MB)",
    ]


def test_json_output_replays_as_a_snapshot(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    use_fixture(monkeypatch, "dgx_station")
    assert run(["gpus", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profile"] == "dgx-station"
    assert (doc["gpu_count"], doc["total_vram_mib"], doc["unified_memory"]) == (2, 382095, False)
    assert doc["summary"][0] == "NVIDIA GPU detected: 2 GPUs, 382095 MB VRAM"
    assert "reason" not in doc
    assert doc["snapshot"] == json.loads((FIXTURES / "dgx_station.json").read_text())

    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(doc))
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(whole))
    assert run(["gpus", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == doc


def test_no_driver_prints_the_reason_and_exits_0(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("nemoclaw_runtime.gpu.inventory.load_pynvml",
                        lambda: FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    assert run(["gpus"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "No NVIDIA GPU detected"
    assert "libnvidia-ml.so.1" in lines[1]
    assert "Host profile: none" in lines
    assert "Traceback" not in captured.out + captured.err

    assert run(["gpus", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profile"] == "none" and doc["gpu_count"] == 0 and "libnvidia-ml" in doc["reason"]


@pytest.mark.parametrize("content", [None, "{not json", '{"schema": 99, "machine": {}, "gpus": []}', "[]"])
def test_a_bad_snapshot_is_exit_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       content: str | None) -> None:
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(path))
    assert run(["gpus"]) == 2
    err = capsys.readouterr().err
    assert "NEMOCLAW_GPU_SNAPSHOT" in err
    assert "Traceback" not in err

    assert run(["gpus", "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] == "InvalidSetting"
    assert doc["details"]["variable"] == "NEMOCLAW_GPU_SNAPSHOT"


def test_importing_the_command_and_the_package_does_not_load_pynvml() -> None:
    code = ("import sys, nemoclaw_runtime.cli.gpus, nemoclaw_runtime.gpu; "
            "assert 'pynvml' not in sys.modules, 'pynvml imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
