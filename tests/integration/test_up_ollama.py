"""``up ollama`` in host mode, through the CLI in-process: an Ollama (the threaded fake) already answers on the port,
so it is used as is — model choice, streamed pull, tools check, validation — and no container is started.

Docker-marked: ``up`` pings the engine and looks for managed containers holding the port before adopting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.runtimes.drivers import ollama
from tests.fake_servers.fake_ollama import FakeOllama, FakeOllamaConfig
from tests.helpers.docker_env import unique_name

pytestmark = pytest.mark.docker

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPU_FIXTURES / "h100_x8.json"))
    monkeypatch.setenv("NEMOCLAW_PULL_STALL_TIMEOUT", "1.5")


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["qwen3.5:9b"]) as server:
        yield server


def up(capsys: pytest.CaptureFixture[str], port: int, *extra: str) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Run ``up ollama --json`` against ``port``; returns (exit code, result or error document, events)."""
    code = run(["up", "ollama", "--port", str(port), "--name", unique_name("nrt-ollama-host"), "--json", *extra])
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    return code, json.loads(captured.out), events


def test_running_ollama_is_used_as_is(capsys: pytest.CaptureFixture[str], fake: FakeOllama) -> None:
    code, result, events = up(capsys, fake.port)
    assert code == 0, result
    assert result["adopted"] is True and result["name"] is None and result["image"] is None
    assert result["model"] == result["served_model_id"] == "qwen3.5:9b"
    assert result["base_url"] == f"http://127.0.0.1:{fake.port}/v1" and result["validated_api"] == "ollama-generate"
    assert "/api/pull" not in fake.paths("POST") and "qwen3.5:9b" in fake.loaded
    assert any("already answers" in e.get("message", "") for e in events)


def test_nothing_installed_pulls_the_starter_with_progress(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama(FakeOllamaConfig(layer_sizes=(40_000, 2_000), pull_chunk=4_000, tick_s=0.02)) as server:
        code, result, events = up(capsys, server.port)
        assert code == 0, result
        assert [r.body["model"] for r in server.requests if r.path == "/api/pull"] == ["qwen3.6:35b"]
    assert result["model"] == "qwen3.6:35b"  # the largest starter that fits 8x H100
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and {e["task"] for e in progress} == {"model"}
    assert progress[-1]["done_bytes"] == progress[-1]["total_bytes"] == 42_000


def test_explicit_model_is_pulled_then_validated(capsys: pytest.CaptureFixture[str], fake: FakeOllama) -> None:
    code, result, _ = up(capsys, fake.port, "--model", "llama3")
    assert code == 0, result
    assert result["model"] == "llama3" and fake.find_model("llama3") is not None
    assert [r.body["model"] for r in fake.requests if r.path == "/api/generate"] == ["llama3"]


def test_unknown_tag_is_a_download_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama(FakeOllamaConfig(unknown_tags=frozenset({"nosuch:1b"}))) as server:
        code, error, _ = up(capsys, server.port, "--model", "nosuch:1b")
    assert code == 4 and error["error"] == "ImageNotFound"


def test_stalled_pull_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama(FakeOllamaConfig(pull_mode="stall", stall_after_bytes=1_000)) as server:
        code, error, _ = up(capsys, server.port, "--model", "qwen3.5:9b")
    assert code == 4 and error["error"] == "PullStalled"
    assert "NEMOCLAW_PULL_STALL_TIMEOUT" in error["remedy"]


def test_probe_timeout_then_retry_succeeds(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           fake: FakeOllama) -> None:
    monkeypatch.setattr(ollama, "PROBE_BUDGETS_S", (0.5, 10.0))
    fake.config.generate_mode, fake.config.slow_s = "slow_first", 2.0
    code, result, events = up(capsys, fake.port)
    assert code == 0, result
    assert fake.generate_calls == 2
    assert any("retrying once" in e.get("message", "") for e in events)


@pytest.mark.parametrize(("mode", "cause"), [("crash", "ollama-runner-crash"), ("empty", "ollama-probe-timeout")])
def test_failed_probe_exits_5(capsys: pytest.CaptureFixture[str], fake: FakeOllama, mode: str, cause: str) -> None:
    fake.config.generate_mode = mode
    code, error, _ = up(capsys, fake.port)
    assert code == 5 and error["error"] == "ValidationFailed" and error["cause"] == cause


def test_model_without_tools_exits_3_unless_allowed(capsys: pytest.CaptureFixture[str], fake: FakeOllama) -> None:
    fake.config.models["qwen3.5:9b"].capabilities = ("completion",)
    code, error, _ = up(capsys, fake.port)
    assert code == 3 and error["error"] == "UnsupportedRuntime" and "--allow-no-tools" in error["remedy"]
    code, result, events = up(capsys, fake.port, "--allow-no-tools")
    assert code == 0, result
    assert any(e["event"] == "warning" and "tool calling" in e["message"] for e in events)


def test_foreign_listener_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama(FakeOllamaConfig(foreign=True)) as server:
        code, error, _ = up(capsys, server.port)
        assert server.paths() == ["/api/tags"]  # asked who it is, trusted nothing
    assert code == 3 and error["error"] == "PortInUse" and "is not Ollama" in error["message"]


def test_old_ollama_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama(FakeOllamaConfig(version="0.6.2"), models=["qwen3.5:9b"]) as server:
        code, error, _ = up(capsys, server.port)
    assert code == 3 and error["error"] == "UnsupportedRuntime" and "upgrade" in error["remedy"].lower()
