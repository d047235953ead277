"""`nemoclaw-runtime options [--json] [--select]` end to end through the CLI: replayed GPU snapshots, fake vLLM and
Ollama servers on free ports (NEMOCLAW_VLLM_PORT / NEMOCLAW_OLLAMA_PORT), no Docker engine (DOCKER_HOST points at
a socket that does not exist) and no `ollama` on PATH."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.cli.main import run
from tests.fake_servers.fake_ollama import FakeOllama
from tests.fake_servers.fake_openai import FakeOpenAI
from tests.helpers.docker_env import free_port

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


@pytest.fixture(autouse=True)
def isolated_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(free_port()))
    monkeypatch.setenv("NEMOCLAW_OLLAMA_PORT", str(free_port()))


@pytest.fixture
def vllm_running(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(server.port))
        yield server


@pytest.fixture
def ollama_running(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    with FakeOllama(models=["qwen3.5:9b"]) as server:
        monkeypatch.setenv("NEMOCLAW_OLLAMA_PORT", str(server.port))
        yield server


def invoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str, *args: str,
           env: dict[str, str] | None = None) -> tuple[int, str, str]:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / f"{snapshot}.json"))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    code = run(["options", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    code, out, err = invoke(capsys, monkeypatch, snapshot, "--json", env=env)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def summary(data: dict[str, Any]) -> tuple[list[str], dict[str, str], str | None]:
    return ([o["key"] for o in data["options"]], {a["key"]: a["reason"] for a in data["absent"]},
            data["suggested"])


NOT_INSTALLED = {"ollama": "ollama-not-installed"}

# (snapshot, experimental) -> (offered, absent, suggested) with nothing running
NOTHING_RUNNING = [
    ("dgx_spark", False, ["install-vllm"], {"vllm": "not-running", "nim": "not-experimental", **NOT_INSTALLED},
     "install-vllm"),
    ("dgx_station", False, ["install-vllm"], {"vllm": "not-running", "nim": "not-experimental", **NOT_INSTALLED},
     "install-vllm"),
    ("dgx_station", True, ["install-vllm", "nim"], {"vllm": "not-running", **NOT_INSTALLED}, "install-vllm"),
    ("h100_x8", False, [], {"vllm": "not-running", "install-vllm": "not-experimental", "nim": "not-experimental",
                            **NOT_INSTALLED}, None),
    ("h100_x8", True, ["install-vllm", "nim"], {"vllm": "not-running", **NOT_INSTALLED}, "install-vllm"),
    ("no_gpu", False, [], {"vllm": "not-running", "install-vllm": "no-gpu", "nim": "no-gpu", **NOT_INSTALLED}, None),
]


@pytest.mark.parametrize(("snapshot", "experimental", "offered", "absent", "suggested"), NOTHING_RUNNING)
def test_nothing_running(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str,
                         experimental: bool, offered: list[str], absent: dict[str, str], suggested: str | None) -> None:
    env = {"NEMOCLAW_EXPERIMENTAL": "1"} if experimental else {}
    data = as_json(capsys, monkeypatch, snapshot, env)
    assert summary(data) == (offered, absent, suggested)
    assert data["engine"]["reachable"] is False
    for option in data["options"]:
        assert option["image_present"] is None  # no engine: unknown, and said so
        assert option["label"].startswith(("Install vLLM (", "Local NVIDIA NIM"))


@pytest.mark.parametrize(("snapshot", "experimental"), [("dgx_spark", False), ("dgx_station", True),
                                                        ("h100_x8", False), ("h100_x8", True), ("no_gpu", False)])
def test_vllm_and_ollama_running(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                 vllm_running: FakeOpenAI, ollama_running: FakeOllama, snapshot: str,
                                 experimental: bool) -> None:
    env = {"NEMOCLAW_EXPERIMENTAL": "1"} if experimental else {}
    data = as_json(capsys, monkeypatch, snapshot, env)
    offered, absent, suggested = summary(data)
    expected_nim = experimental and snapshot != "no_gpu"
    assert offered == ["vllm", *(["nim"] if expected_nim else []), "ollama"]
    assert absent["install-vllm"] == "vllm-running"
    assert suggested == "vllm"
    vllm = data["options"][0]
    assert vllm["label"] == f"Local vLLM [experimental] (localhost:{vllm_running.port}) — running (suggested)"
    assert (vllm["default_model"], vllm["context_window"]) == ("fake/model", 4096)
    ollama = data["options"][-1]
    assert ollama["label"] == f"Local Ollama (localhost:{ollama_running.port}) — running"
    assert [m["id"] for m in ollama["models"]] == ["qwen3.5:9b"]


@pytest.mark.parametrize(("snapshot", "suggested"), [("dgx_spark", "ollama"), ("h100_x8", "ollama"),
                                                     ("no_gpu", "ollama")])
def test_only_ollama_running(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                             ollama_running: FakeOllama, snapshot: str, suggested: str) -> None:
    data = as_json(capsys, monkeypatch, snapshot)
    offered, absent, chosen = summary(data)
    assert chosen == suggested
    assert "ollama" in offered and "ollama" not in absent
    assert absent["vllm"] == "not-running"


def test_only_vllm_running_on_a_host_without_gpu(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                 vllm_running: FakeOpenAI) -> None:
    data = as_json(capsys, monkeypatch, "no_gpu")
    assert summary(data) == (["vllm"], {"install-vllm": "vllm-running", "nim": "no-gpu", **NOT_INSTALLED}, "vllm")


def test_human_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke(capsys, monkeypatch, "dgx_spark", env={"NEMOCLAW_EXPERIMENTAL": "1"})
    assert code == 0
    assert "* install-vllm  Install vLLM (DGX Spark)" in out
    assert "models: qwen3.6-35b-a3b-nvfp4 (default)" in out
    assert "Local NVIDIA NIM [experimental]" in out
    assert "token: NGC_API_KEY or NVIDIA_INFERENCE_API_KEY or NVIDIA_API_KEY (not set)" in out
    assert "Not offered here:" in out and "ollama: Ollama is not installed" in out
    assert "Docker engine: not reachable" in out


def test_human_output_without_any_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke(capsys, monkeypatch, "no_gpu")
    assert code == 0
    assert "No local inference option is available on this host." in out
    assert "install-vllm: No vLLM install profile available for this host." in out


def test_select_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = invoke(capsys, monkeypatch, "dgx_station", "--select", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["key"], data["model"], data["source"]) == ("install-vllm", "qwen3.6-27b", "suggested")


def test_select_human(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                      vllm_running: FakeOpenAI) -> None:
    code, out, _ = invoke(capsys, monkeypatch, "h100_x8", "--select", env={"NEMOCLAW_PROVIDER": "vllm"})
    assert code == 0
    assert out.startswith("Selected: vllm — Local vLLM [experimental]")
    assert "model: fake/model (served)" in out


@pytest.mark.parametrize(("snapshot", "env", "code", "message"), [
    ("dgx_spark", {"NEMOCLAW_PROVIDER": "vllm"}, 3, "NEMOCLAW_PROVIDER=vllm, but no vLLM answers"),
    ("no_gpu", {"NEMOCLAW_PROVIDER": "install-vllm"}, 3, "No vLLM install profile available for this host."),
    ("dgx_spark", {"NEMOCLAW_PROVIDER": "lmstudio"}, 2, "Invalid NEMOCLAW_PROVIDER"),
    ("dgx_spark", {"NEMOCLAW_VLLM_MODEL": "nope"}, 2, "Unknown NEMOCLAW_VLLM_MODEL='nope'"),
    ("h100_x8", {"NEMOCLAW_PROVIDER": "ollama"}, 3, "Ollama is not installed"),
])
def test_select_refusals(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str,
                         env: dict[str, str], code: int, message: str) -> None:
    exit_code, out, _ = invoke(capsys, monkeypatch, snapshot, "--select", "--json", env=env)
    assert exit_code == code
    error = json.loads(out)
    assert error["exit_code"] == code
    assert message in error["message"]


def test_help_mentions_select(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["options", "--help"]) == 0
    assert "--select" in capsys.readouterr().out
