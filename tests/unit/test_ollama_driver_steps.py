"""The Ollama driver's hooks against the threaded fake Ollama over real httpx (no Docker): adopt (host mode),
after_ready (container mode), validate, and the unload hook for ``stop``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.errors import PortInUse, PullStalled, UnsupportedRuntime, ValidationFailed
from nemoclaw_runtime.kernel.events import Event, Info, PhaseChanged, Progress, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, ContainerState
from nemoclaw_runtime.runtimes.docker.spec import LABEL_HOST, LABEL_PORT, LABEL_RUNTIME
from nemoclaw_runtime.runtimes.drivers import ollama
from nemoclaw_runtime.runtimes.drivers.contract import make_request
from nemoclaw_runtime.runtimes.drivers.ollama import OllamaDriver, OllamaPlan, unload_before_stop
from tests.fake_servers.fake_ollama import FakeOllama, FakeOllamaConfig, free_port

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


@dataclass
class Svc:
    """The part of ``Services`` the driver's hooks use."""

    settings: Settings
    http: httpx.Client
    clock: SystemClock


class Events(list[Event]):
    def __call__(self, event: Event) -> None:
        self.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self if isinstance(e, kind)]


@pytest.fixture
def svc() -> Iterator[Svc]:
    settings = Settings.from_env({"HOME": "/tmp/nrt-home"}).replace(pull_stall_timeout=1.0)
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(5.0, connect=2.0)) as http:
        yield Svc(settings, http, SystemClock())


def _plan(port: int, fixture: str = "h100_x8", **request: Any) -> OllamaPlan:
    inventory = GpuInventory.from_snapshot(json.loads((GPU_FIXTURES / f"{fixture}.json").read_text()))
    return OllamaDriver().plan(make_request("ollama", port=port, **request), Settings.from_env({"HOME": "/h"}),
                               inventory)


def test_host_mode_uses_an_installed_model_without_pulling(svc: Svc) -> None:
    events = Events()
    with FakeOllama(models=["qwen3.5:9b"]) as fake:
        plan = _plan(fake.port)
        served = OllamaDriver().adopt(plan, svc, events, CancelToken())  # type: ignore[arg-type]
        assert served is not None and served.served_model_id == served.model == "qwen3.5:9b"
        assert "/api/pull" not in fake.paths("POST") and "/api/show" in fake.paths("POST")
        assert any("Ollama 0.12.6 already answers" in e.message for e in events.of(Info))
        # validation is the warm-up: keep_alive 15m on /api/generate
        assert OllamaDriver().validate(plan, served, fake.base_url, svc, events, CancelToken()) == "ollama-generate"
        generate = [r.body for r in fake.requests if r.path == "/api/generate"]
        assert generate and generate[0]["keep_alive"] == "15m" and "qwen3.5:9b" in fake.loaded


def test_nothing_installed_pulls_the_starter_with_progress(svc: Svc) -> None:
    events = Events()
    with FakeOllama() as fake:
        served = OllamaDriver().adopt(_plan(fake.port, "jetson_orin"), svc, events, CancelToken())  # type: ignore[arg-type]
        assert served is not None and served.served_model_id == "qwen3.5:9b"
        assert [r.body["model"] for r in fake.requests if r.path == "/api/pull"] == ["qwen3.5:9b"]
    progress = events.of(Progress)
    assert progress and all(p.task == "model" and p.subject == "qwen3.5:9b" for p in progress)
    assert progress[-1].done_bytes == progress[-1].total_bytes == 4200
    assert "model-pull" in [e.phase for e in events.of(PhaseChanged)]


def test_without_validation_the_model_is_warmed_up(svc: Svc) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as fake:
        plan = _plan(fake.port, validate=False)
        served = OllamaDriver().adopt(plan, svc, Events(), CancelToken())  # type: ignore[arg-type]
        assert served is not None
        assert [r.body["keep_alive"] for r in fake.requests if r.path == "/api/generate"] == ["15m"]
        assert OllamaDriver().validate(plan, served, fake.base_url, svc, Events(), CancelToken()) is None
        assert fake.generate_calls == 1  # no second request


def test_model_without_tools_is_refused_unless_allowed(svc: Svc) -> None:
    config = FakeOllamaConfig(pull_capabilities=("completion",))
    with FakeOllama(config) as fake:
        with pytest.raises(UnsupportedRuntime) as caught:
            OllamaDriver().adopt(_plan(fake.port, model="gemma:2b"), svc, Events(), CancelToken())  # type: ignore[arg-type]
        assert caught.value.exit_code == 3 and "--allow-no-tools" in str(caught.value.remedy)
        events = Events()
        served = OllamaDriver().adopt(_plan(fake.port, model="gemma:2b", allow_no_tools=True),
                                      svc, events, CancelToken())  # type: ignore[arg-type]
        assert served is not None and any("tool calling" in w.message for w in events.of(Warning))


def test_foreign_listener_is_refused_naming_it(svc: Svc) -> None:
    with FakeOllama(FakeOllamaConfig(foreign=True)) as fake:
        with pytest.raises(PortInUse) as caught:
            OllamaDriver().adopt(_plan(fake.port), svc, Events(), CancelToken())  # type: ignore[arg-type]
    assert caught.value.exit_code == 3 and "is not Ollama" in caught.value.message
    assert "It works!" in caught.value.message and caught.value.details["kind"] == "foreign"


def test_old_ollama_is_refused_with_upgrade(svc: Svc) -> None:
    with FakeOllama(FakeOllamaConfig(version="0.6.8"), models=["qwen3.5:9b"]) as fake:
        with pytest.raises(UnsupportedRuntime) as caught:
            OllamaDriver().adopt(_plan(fake.port), svc, Events(), CancelToken())  # type: ignore[arg-type]
    assert caught.value.exit_code == 3 and "upgrade" in str(caught.value.remedy).lower()


def test_nothing_answering_is_not_adopted(svc: Svc) -> None:
    assert OllamaDriver().adopt(_plan(free_port()), svc, Events(), CancelToken()) is None  # type: ignore[arg-type]


def test_after_ready_runs_the_same_steps_and_a_stall_fails(svc: Svc) -> None:
    config = FakeOllamaConfig(pull_mode="stall", stall_after_bytes=500)
    with FakeOllama(config) as fake:
        plan = _plan(fake.port, model="qwen3.5:9b")
        with pytest.raises(PullStalled) as caught:
            OllamaDriver().after_ready(plan, None, fake.base_url, svc, Events(), CancelToken())  # type: ignore[arg-type]
    assert caught.value.exit_code == 4


def test_validate_retries_once_after_a_timeout(svc: Svc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ollama, "PROBE_BUDGETS_S", (0.3, 5.0))
    events = Events()
    with FakeOllama(FakeOllamaConfig(generate_mode="slow_first", slow_s=1.5), models=["qwen3.5:9b"]) as fake:
        plan = _plan(fake.port)
        served = OllamaDriver().adopt(plan, svc, events, CancelToken())  # type: ignore[arg-type]
        assert served is not None
        assert OllamaDriver().validate(plan, served, fake.base_url, svc, events, CancelToken()) == "ollama-generate"
        assert fake.generate_calls == 2
    assert any("retrying once" in e.message for e in events.of(Info))


@pytest.mark.parametrize(("mode", "cause"), [("crash", "ollama-runner-crash"), ("empty", "ollama-probe-timeout")])
def test_validate_failures_exit_5(svc: Svc, mode: str, cause: str) -> None:
    with FakeOllama(FakeOllamaConfig(generate_mode=mode), models=["qwen3.5:9b"]) as fake:
        plan = _plan(fake.port)
        served = OllamaDriver().adopt(plan, svc, Events(), CancelToken())  # type: ignore[arg-type]
        assert served is not None
        with pytest.raises(ValidationFailed) as caught:
            OllamaDriver().validate(plan, served, fake.base_url, svc, Events(), CancelToken())
    assert caught.value.exit_code == 5 and caught.value.cause == cause


# --- unload on stop --------------------------------------------------------------------------------------------


def _info(port: int, runtime: str = "ollama", status: str = "running") -> ContainerInfo:
    return ContainerInfo(id="c0ffee", name="/nemoclaw-ollama", image="ollama/ollama",
                         labels={LABEL_RUNTIME: runtime, LABEL_PORT: str(port), LABEL_HOST: "127.0.0.1"},
                         state=ContainerState(status))


def test_unload_before_stop_unloads_loaded_models(svc: Svc) -> None:
    events = Events()
    with FakeOllama(models=["qwen3.5:9b", "llama3:8b"]) as fake:
        fake.loaded.update({"qwen3.5:9b", "llama3:8b"})
        unload_before_stop(events=events)(_info(fake.port))
        assert fake.loaded == set()
    assert any("Unloaded" in e.message and "nemoclaw-ollama" in e.message for e in events.of(Info))


def test_unload_before_stop_passes_over_other_containers(svc: Svc) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as fake:
        fake.loaded.add("qwen3.5:9b")
        hook = unload_before_stop(http=svc.http)
        hook(_info(fake.port, runtime="vllm"))
        hook(_info(fake.port, status="exited"))
        assert fake.requests == [] and fake.loaded == {"qwen3.5:9b"}
    hook(_info(free_port()))  # an Ollama that is gone: best effort, no error


def test_stop_managed_with_the_hook_unloads_then_removes(svc: Svc, tmp_path: Path) -> None:
    """The wiring ``stop`` uses: ``stop_managed(settings, names, before_stop=unload_before_stop())``."""
    from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager, stop_managed
    from tests.fakes.fake_docker import FakeDocker

    settings = Settings(state_dir_override=tmp_path / "state")
    docker = FakeDocker()
    with FakeOllama(models=["qwen3.5:9b"]) as fake:
        plan = _plan(fake.port, name="nrt-ollama-unit")
        docker.add_image(plan.spec.image, digest="sha256:" + "cd" * 32)
        DockerContainerManager(docker, settings).ensure_running(plan.spec)
        fake.loaded.add("qwen3.5:9b")
        events = Events()
        stopped = stop_managed(settings, ["nrt-ollama-unit"], docker=docker,
                               before_stop=unload_before_stop(events=events), events=events)
        assert stopped == ["nrt-ollama-unit"] and fake.loaded == set() and docker.containers == {}
    assert [r.body for r in fake.requests if r.path == "/api/generate"] == [{"model": "qwen3.5:9b", "keep_alive": 0}]
