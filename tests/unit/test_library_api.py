"""What a wizard relies on: typed results and errors that turn into JSON, typed events through one callback, and a
CancelToken set from another thread that stops ``up`` promptly and cleans up like Ctrl-C.

``up`` runs the real pipeline over fake Services: FakeDocker, a fake ImageStore, the real container manager on
FakeDocker, and an httpx.MockTransport that never answers (the server "is still loading").
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel import errors
from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.events import (
    Event,
    Heartbeat,
    Info,
    LogLine,
    PhaseChanged,
    Progress,
    Warning,
    event_to_dict,
)
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager, ManagedContainerView
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.docker.spec import LABEL_RUNTIME
from nemoclaw_runtime.runtimes.drivers.contract import UpResult
from nemoclaw_runtime.runtimes.onboarding.options import local_options
from nemoclaw_runtime.runtimes.onboarding.selection import select_option
from nemoclaw_runtime.runtimes.server.validate import ValidationResult, validate_endpoint
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

SNAPSHOT = Path(__file__).resolve().parents[2] / "fixtures" / "gpu" / "h100_x8.json"
DIGEST = "sha256:" + "cd" * 32
CANCEL_AFTER_S = 0.3
PROMPT_S = 10.0  # generous: "promptly" means well inside the 600 s readiness budget, on a noisy machine
TOKEN = "hf_wizardsecret1234567890"


def inventory() -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads(SNAPSHOT.read_text()))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                              "NEMOCLAW_VLLM_IMAGE": "127.0.0.1:5000/test/vllm:1", "HF_TOKEN": TOKEN})


class FakeImageStore:
    """``ensure_image`` adds the image to FakeDocker; ``block`` makes it a pull that only a cancel ends."""

    def __init__(self, docker: FakeDocker, *, block: bool = False, interrupt: bool = False) -> None:
        self.docker, self.block, self.interrupt = docker, block, interrupt
        self.started = threading.Event()

    def image_present(self, ref: str) -> bool:
        return self.docker.image_inspect(ref) is not None

    def ensure_image(self, ref: str, *, events: Callable[[Event], None], cancel: CancelToken) -> PulledImage:
        self.started.set()
        if self.interrupt:
            raise KeyboardInterrupt
        for _ in range(6000):  # bounded: 600 s at most
            if not self.block:
                break
            events(Progress("image", ref, done_bytes=1, total_bytes=100))
            cancel.wait(0.1)
        self.docker.add_image(ref, digest=DIGEST)
        return PulledImage(ref, DIGEST, "linux/amd64", pulled=True)


def never_answers(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def services(settings: Settings) -> Iterator[pipeline.Services]:
    docker = FakeDocker()
    http = httpx.Client(transport=httpx.MockTransport(never_answers))
    clock = SystemClock()
    svc = pipeline.Services(settings, docker, FakeImageStore(docker), DockerContainerManager(docker, settings, clock,
                            lock_wait_s=1.0), http, clock, owned=False)
    yield svc
    http.close()


def request(**changes: Any) -> Any:
    return pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=free_port(), gpus="none", prefetch=False,
                                 validate=False, timeout_s=600, **changes)


def up_in_thread(svc: pipeline.Services, settings: Settings, cancel: CancelToken,
                 events: list[Event]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = pipeline.up(request(), settings=settings, inventory=inventory(),
                                            events=events.append, cancel=cancel, services=svc)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="wizard-up", daemon=True)
    return thread, outcome


# --- cancellation ------------------------------------------------------------------------------------------------


def test_cancel_during_readiness_stops_promptly_and_leaves_nothing(services: pipeline.Services,
                                                                   settings: Settings) -> None:
    cancel, events = CancelToken(), list[Event]()
    thread, outcome = up_in_thread(services, settings, cancel, events)
    thread.start()
    _wait_for(lambda: any(isinstance(e, PhaseChanged) and e.phase == "wait" for e in events))
    time.sleep(CANCEL_AFTER_S)
    cancelled_at = time.monotonic()
    cancel.cancel()
    thread.join(PROMPT_S)
    assert not thread.is_alive(), "up did not stop after cancel"
    assert time.monotonic() - cancelled_at < PROMPT_S
    error = outcome.get("error")
    assert isinstance(error, errors.Cancelled) and error.exit_code == 130
    docker = services.docker
    assert isinstance(docker, FakeDocker)
    assert [c for c in docker.calls if c[0] == "create_container"]  # it had started one ...
    assert [c for c in docker.calls if c[0] == "stop_container"]  # ... and stopped it
    assert [c for c in docker.calls if c[0] == "remove_container"]  # ... and removed it
    assert not any(c.status == "running" for c in docker.containers.values())
    with services.containers.lock("nemoclaw-vllm"):  # the lock was released
        pass


def test_cancel_during_a_long_pull_starts_no_container(settings: Settings, services: pipeline.Services) -> None:
    store = FakeImageStore(services.docker, block=True)  # type: ignore[arg-type]
    svc = dataclasses.replace(services, images=store)
    cancel, events = CancelToken(), list[Event]()
    thread, outcome = up_in_thread(svc, settings, cancel, events)
    thread.start()
    assert store.started.wait(PROMPT_S)
    time.sleep(CANCEL_AFTER_S)
    cancel.cancel()
    thread.join(PROMPT_S)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), errors.Cancelled)
    assert [c for c in services.docker.calls if c[0] == "create_container"] == []  # type: ignore[attr-defined]
    assert any(isinstance(e, Progress) for e in events)


def test_ctrl_c_is_the_same_cancellation(settings: Settings, services: pipeline.Services) -> None:
    svc = dataclasses.replace(services, images=FakeImageStore(services.docker, interrupt=True))  # type: ignore[arg-type]
    with pytest.raises(errors.Cancelled) as caught:
        pipeline.up(request(), settings=settings, inventory=inventory(), services=svc)
    assert caught.value.exit_code == 130
    assert caught.value.remedy


def test_cancel_before_start_raises_at_once(settings: Settings, services: pipeline.Services) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(errors.Cancelled):
        pipeline.up(request(), settings=settings, inventory=inventory(), cancel=cancel, services=services)
    assert [c for c in services.docker.calls if c[0] == "create_container"] == []  # type: ignore[attr-defined]


def test_cancel_during_validation_retries(settings: Settings) -> None:
    from tests.fake_servers.fake_openai import FakeOpenAI

    events: list[Event] = []
    cancel = CancelToken()
    with FakeOpenAI("overloaded", fail_times=1_000) as server:
        timer = threading.Timer(CANCEL_AFTER_S, cancel.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.Cancelled):
            validate_endpoint(server.base_url, "fake/model", settings=settings, events=events.append, cancel=cancel)
        timer.join()
    assert time.monotonic() - started < PROMPT_S
    assert len(server.posts()) >= 1
    for event in events:
        json.dumps(event_to_dict(event))


def _wait_for(condition: Callable[[], bool], timeout_s: float = PROMPT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- events --------------------------------------------------------------------------------------------------------


def test_up_reports_typed_events_through_one_callback(services: pipeline.Services, settings: Settings) -> None:
    cancel, events = CancelToken(), list[Event]()
    thread, _ = up_in_thread(services, settings, cancel, events)
    thread.start()
    _wait_for(lambda: any(isinstance(e, PhaseChanged) and e.phase == "wait" for e in events))
    cancel.cancel()
    thread.join(PROMPT_S)
    phases = [e.phase for e in events if isinstance(e, PhaseChanged)]
    assert phases[:1] == ["preflight"]
    assert {"pull", "start", "wait"} <= set(phases)
    for event in events:
        json.dumps(event_to_dict(event))


@pytest.mark.parametrize("event", [
    PhaseChanged("pull", "Pulling"), Progress("image", "img", 1, 2, 1, 3, 1.5, "layer"),
    Heartbeat("wait", 30.0, "port-open", "INFO loading"), LogLine("vllm", "line"), Info("i"), Warning("w"),
])
def test_every_event_kind_serialises(event: Event) -> None:
    data = json.loads(json.dumps(event_to_dict(event)))
    assert data["event"] == event.kind


# --- typed results and errors ----------------------------------------------------------------------------------------


ERROR_CLASSES = [getattr(errors, name) for name in dir(errors)
                 if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), errors.NemoclawError)]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_serialises(cls: type[errors.NemoclawError]) -> None:
    exc = cls("something failed", remedy="do this", cause="cuda-oom", log_tail=["a", "b"],
              details={"port": 8000, "variables": ["HF_TOKEN"]})
    data = json.loads(json.dumps(exc.to_dict()))
    assert data["error"] == cls.__name__
    assert data["exit_code"] == cls.exit_code
    assert (data["message"], data["remedy"], data["log_tail"]) == ("something failed", "do this", ["a", "b"])


def test_plan_serialises_without_the_token(settings: Settings) -> None:
    the_plan = pipeline.plan(pipeline.make_request("vllm", gpus="none", prefetch=False), settings=settings,
                             inventory=inventory())
    text = json.dumps(the_plan.to_dict())
    assert TOKEN not in text
    assert json.loads(text)["token_variable"] == "HF_TOKEN"


def test_results_serialise(settings: Settings) -> None:
    result = UpResult(runtime="vllm", name="nemoclaw-vllm", model="nemotron-3-nano-4b",
                      served_model_id="nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8", base_url="http://127.0.0.1:8000/v1",
                      image="img", digest=DIGEST, context_window=262144, elapsed_s=1.23456)
    validation = ValidationResult(base_url="http://127.0.0.1:8000/v1", model="m", api="openai-completions",
                                  latency_ms=12.5, reply_excerpt="ok", tools_supported=True, tool_called=False,
                                  requested_api="openai-completions")
    docker = FakeDocker()
    docker.add_foreign_container("nemoclaw-vllm", labels={LABEL_RUNTIME: "vllm"})
    view = ManagedContainerView.from_info(docker.list_containers({})[0])
    for value in (result, validation, PulledImage("img", DIGEST, "linux/amd64", True), view, inventory()):
        json.dumps(value.to_dict())
    assert json.loads(json.dumps(result.to_dict()))["elapsed_s"] == 1.235


def test_options_and_selection_serialise(settings: Settings) -> None:
    experimental = settings.replace(experimental=True, vllm_port=free_port(), ollama_port=free_port())
    with httpx.Client(trust_env=False) as http:
        menu = local_options(experimental, inventory=inventory(), http=http, docker=None, which=lambda n: None)
    choice = select_option(menu, experimental)
    assert json.loads(json.dumps(menu.to_dict()))["suggested"] == "install-vllm"
    assert json.loads(json.dumps(choice.to_dict()))["model"] == "nemotron-3-nano-4b"
    assert TOKEN not in json.dumps(menu.to_dict())


# --- one front door: api.* with injected collaborators ------------------------------------------------------------


class UnreachableDocker(FakeDocker):
    """An engine that refuses the first call ``up`` makes after the plan: whatever follows the plan never runs."""

    def ping(self) -> None:
        super().ping()
        raise errors.DockerUnavailable("engine down (test)", remedy="start it")


@pytest.fixture
def no_engine_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt by the library to open a real engine fails the test."""
    from nemoclaw_runtime.runtimes import wiring

    def refuse(settings: Settings) -> FakeDocker:
        raise AssertionError("the library opened an engine of its own")

    monkeypatch.setattr(wiring, "open_docker", refuse)


def test_list_managed_uses_the_given_engine_and_leaves_it_open(settings: Settings, no_engine_of_its_own: None) -> None:
    from nemoclaw_runtime import api

    docker = FakeDocker()
    docker.add_foreign_container("theirs")
    assert api.list_managed(settings=settings, docker=docker) == []
    assert [c[0] for c in docker.calls] == ["list_containers"]  # it asked the fake, not a real engine
    assert not docker.closed


def test_stop_unloads_the_models_of_a_managed_ollama_first(settings: Settings, no_engine_of_its_own: None) -> None:
    """The library's ``stop`` does what ``nemoclaw-runtime stop`` does: Ollama hands its GPU memory back first."""
    from nemoclaw_runtime import api
    from nemoclaw_runtime.runtimes.drivers.contract import make_request
    from nemoclaw_runtime.runtimes.drivers.ollama import OllamaDriver
    from tests.fake_servers.fake_ollama import FakeOllama

    docker = FakeDocker()
    events: list[Event] = []
    with FakeOllama(models=["qwen3.5:9b"]) as ollama, httpx.Client(trust_env=False) as http:
        the_plan = OllamaDriver().plan(make_request("ollama", port=ollama.port), settings, inventory())
        docker.add_image(the_plan.spec.image, digest=DIGEST)
        DockerContainerManager(docker, settings).ensure_running(the_plan.spec)
        ollama.loaded.add("qwen3.5:9b")
        stopped = api.stop([the_plan.spec.name], settings=settings, events=events.append, docker=docker, http=http)
        assert stopped == [the_plan.spec.name] and ollama.loaded == set() and docker.containers == {}
        assert not http.is_closed  # given, so left open
    assert [r.body for r in ollama.requests if r.path == "/api/generate"] == [{"model": "qwen3.5:9b", "keep_alive": 0}]
    assert any(isinstance(e, Info) and e.message.startswith("Unloaded qwen3.5:9b") for e in events)
    assert not docker.closed


@pytest.mark.parametrize("call", [
    lambda api, s: api.list_managed(runtime="bogus", settings=s, docker=FakeDocker()),
    lambda api, s: api.stop(all=True, runtime="bogus", settings=s, docker=FakeDocker()),
    lambda api, s: api.plan("bogus", settings=s, inventory=inventory()),
    lambda api, s: api.up("bogus", settings=s, inventory=inventory(), docker=FakeDocker()),
    lambda api, s: api.pull("bogus", settings=s, inventory=inventory(), docker=FakeDocker()),
    lambda api, s: api.models("bogus", settings=s, inventory=inventory()),
    lambda api, s: api.status(runtime="bogus", settings=s, docker=FakeDocker()),
    lambda api, s: api.watch_status(runtime="bogus", settings=s, docker=FakeDocker()),
], ids=["list_managed", "stop", "plan", "up", "pull", "models", "status", "watch_status"])
def test_an_unknown_runtime_is_invalid_input(settings: Settings, no_engine_of_its_own: None,
                                             call: Callable[[Any, Settings], Any]) -> None:
    from nemoclaw_runtime import api

    with pytest.raises(errors.InvalidInput) as caught:
        call(api, settings)
    assert caught.value.exit_code == 2
    assert caught.value.message == "Unknown runtime 'bogus'" and caught.value.remedy == "use one of: vllm, nim, ollama"


def _nim_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state")})


def test_up_asks_the_prompt_callback_for_a_missing_nim_key(tmp_path: Path, no_engine_of_its_own: None) -> None:
    from nemoclaw_runtime import api

    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return " nvapi-typed-at-the-prompt "

    docker = UnreachableDocker()
    with httpx.Client(transport=httpx.MockTransport(never_answers)) as http, \
            pytest.raises(errors.DockerUnavailable):  # the plan accepted the key; the (fake) engine is down
        api.up("nim", settings=_nim_settings(tmp_path), inventory=inventory(), prompt_secret=prompt, docker=docker,
               http=http, clock=SystemClock())
    assert asked == ["  NGC API Key: "]
    assert ("ping", "") in docker.calls and not docker.closed


def test_up_never_prompts_by_itself(tmp_path: Path, no_engine_of_its_own: None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nemoclaw_runtime import api

    monkeypatch.setattr("sys.stdin", None)  # reading stdin would fail loudly
    docker = UnreachableDocker()
    with pytest.raises(errors.MissingToken):
        api.up("nim", settings=_nim_settings(tmp_path), inventory=inventory(), docker=docker)
    assert docker.calls == []  # refused at the plan, before the engine


def test_up_does_not_ask_when_the_settings_hold_a_key(tmp_path: Path, no_engine_of_its_own: None) -> None:
    from nemoclaw_runtime import api

    def prompt(label: str) -> str:
        raise AssertionError("asked although a key was set")

    settings = Settings.from_env({"HOME": str(tmp_path), "NGC_API_KEY": "nvapi-from-env"})
    with pytest.raises(errors.DockerUnavailable):
        api.up("nim", settings=settings, inventory=inventory(), prompt_secret=prompt, docker=UnreachableDocker())
