"""``up vllm``: the image pull and the weights download run at the same time, under one cancel.

The real pipeline and the real vLLM driver over fakes: FakeDocker, a fake image store, and the weights module's
hub calls replaced by a fake download. Each fake waits on a barrier the other must reach, so a sequential pipeline
would fail (BrokenBarrierError after BARRIER_S) instead of hanging; every wait is bounded.
"""

from __future__ import annotations

import _thread
import dataclasses
import io
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
from nemoclaw_runtime.kernel.events import Event, PhaseChanged, Progress
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.transfer import weights
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

SNAPSHOT = Path(__file__).resolve().parents[2] / "fixtures" / "gpu" / "h100_x8.json"
IMAGE = "127.0.0.1:5000/test/vllm:1"
DIGEST = "sha256:" + "ef" * 32
REVISION = "c0ffee" * 6 + "abcd"
SERVED = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
BARRIER_S = 10.0  # both downloads must be under way together within this
STOP_S = 10.0  # a cancel must end both within this


class Download:
    """One fake download: reports progress, meets the other at the barrier, then finishes, fails, or runs until
    its cancel token is set (``forever``)."""

    def __init__(self, task: str, barrier: threading.Barrier, *, fail: BaseException | None = None,
                 forever: bool = False) -> None:
        self.task, self.barrier, self.fail, self.forever = task, barrier, fail, forever
        self.started, self.stopped, self.saw_cancel = threading.Event(), threading.Event(), threading.Event()

    def run(self, subject: str, events: Callable[[Event], None], cancel: CancelToken) -> None:
        self.started.set()
        try:
            events(Progress(self.task, subject, done_bytes=1, total_bytes=2))
            self.barrier.wait(BARRIER_S)
            if self.fail is not None:
                raise self.fail
            for _ in range(int(STOP_S / 0.02)):
                if not self.forever:
                    break
                try:
                    cancel.wait(0.02)
                except errors.Cancelled:
                    self.saw_cancel.set()
                    raise
            events(Progress(self.task, subject, done_bytes=2, total_bytes=2))
        finally:
            self.stopped.set()


class FakeImageStore:
    def __init__(self, docker: FakeDocker, download: Download) -> None:
        self.docker, self.download = docker, download

    def image_present(self, ref: str) -> bool:
        return self.docker.image_inspect(ref) is not None

    def ensure_image(self, ref: str, *, events: Callable[[Event], None], cancel: CancelToken) -> PulledImage:
        self.download.run(ref, events, cancel)
        self.docker.add_image(ref, digest=DIGEST)
        return PulledImage(ref, DIGEST, "linux/amd64", pulled=True)


@dataclasses.dataclass
class World:
    settings: Settings
    docker: FakeDocker
    svc: pipeline.Services
    pull: Download
    fetch: Download


def never_answers(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def serving(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": SERVED, "max_model_len": 4096}]})


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., World]]:
    clients: list[httpx.Client] = []

    def make(*, pull: dict[str, Any] | None = None, fetch: dict[str, Any] | None = None,
             answers: bool = False) -> World:
        barrier = threading.Barrier(2)
        the_pull, the_fetch = Download("image", barrier, **(pull or {})), Download("weights", barrier, **(fetch or {}))

        def fake_prefetch(model_id: str, *, events: Callable[[Event], None], cancel: CancelToken,
                          **_: Any) -> Any:
            the_fetch.run(model_id, events, cancel)
            return weights.PrefetchResult(model_id, REVISION, tmp_path, 1, 2, 2)

        monkeypatch.setattr(weights, "prefetch", fake_prefetch)
        monkeypatch.setattr(weights, "estimate_repo_bytes", lambda *a, **k: 0)
        settings = Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                                      "NEMOCLAW_VLLM_IMAGE": IMAGE, "HF_HOME": str(tmp_path / "hf")})
        docker = FakeDocker()
        clock = SystemClock()
        http = httpx.Client(transport=httpx.MockTransport(serving if answers else never_answers))
        clients.append(http)
        svc = pipeline.Services(settings, docker, FakeImageStore(docker, the_pull),
                                DockerContainerManager(docker, settings, clock, lock_wait_s=1.0), http, clock,
                                owned=False)
        return World(settings, docker, svc, the_pull, the_fetch)

    yield make
    for client in clients:
        client.close()


def up(w: World, events: list[Event], cancel: CancelToken | None = None) -> Any:
    request = pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=free_port(), gpus="none",
                                    prefetch=True, validate=False, timeout_s=600)
    inventory = GpuInventory.from_snapshot(json.loads(SNAPSHOT.read_text()))
    return pipeline.up(request, settings=w.settings, inventory=inventory, events=events.append, cancel=cancel,
                       services=w.svc)


def created(w: World) -> list[Any]:
    return [c for c in w.docker.calls if c[0] == "create_container"]


def assert_nothing_left(w: World) -> None:
    assert w.pull.stopped.is_set() and w.fetch.stopped.is_set()  # both threads ended before up returned
    assert created(w) == []
    with w.svc.containers.lock("nemoclaw-vllm"):  # the lock was released
        pass


def test_the_pull_and_the_weights_run_at_the_same_time(world: Callable[..., World]) -> None:
    w = world(answers=True)
    events: list[Event] = []
    result = up(w, events)  # sequential downloads would break the barrier: BrokenBarrierError, not a hang
    assert result.weights_revision == REVISION and result.digest == DIGEST and created(w)
    keys = {(e.task, e.subject) for e in events if isinstance(e, Progress)}
    assert keys == {("image", IMAGE), ("weights", SERVED)}  # a bar each
    phases = [e.phase for e in events if isinstance(e, PhaseChanged)]
    assert {"pull", "weights"} <= set(phases) and phases.index("start" if "start" in phases else "wait") > max(
        phases.index("pull"), phases.index("weights"))


@pytest.mark.parametrize("failing", ["pull", "fetch"])
def test_a_failure_of_one_cancels_the_other_and_is_the_error(world: Callable[..., World], failing: str) -> None:
    boom = errors.DownloadFailed(f"the {failing} failed")
    w = world(**{failing: {"fail": boom}, ("fetch" if failing == "pull" else "pull"): {"forever": True}})
    other = w.fetch if failing == "pull" else w.pull
    started = time.monotonic()
    with pytest.raises(errors.DownloadFailed) as caught:
        up(w, [])
    assert caught.value is boom  # the first failure, not the other's cancellation
    assert time.monotonic() - started < STOP_S
    assert other.saw_cancel.is_set()
    assert_nothing_left(w)


def test_a_cancel_stops_both_and_leaves_nothing(world: Callable[..., World]) -> None:
    w = world(pull={"forever": True}, fetch={"forever": True})
    cancel = CancelToken()

    def cancel_once_both_run() -> None:
        if w.pull.started.wait(STOP_S) and w.fetch.started.wait(STOP_S):
            time.sleep(0.2)
            cancel.cancel()

    threading.Thread(target=cancel_once_both_run, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(errors.Cancelled) as caught:
        up(w, [], cancel)
    assert caught.value.exit_code == 130 and time.monotonic() - started < STOP_S + 1
    assert w.pull.saw_cancel.is_set() and w.fetch.saw_cancel.is_set()
    assert_nothing_left(w)


def test_ctrl_c_stops_both_and_leaves_nothing(world: Callable[..., World]) -> None:
    w = world(pull={"forever": True}, fetch={"forever": True})

    def ctrl_c_once_both_run() -> None:
        if w.pull.started.wait(STOP_S) and w.fetch.started.wait(STOP_S):
            time.sleep(0.2)
            _thread.interrupt_main()  # as if SIGINT reached the main thread, which waits on both downloads

    threading.Thread(target=ctrl_c_once_both_run, daemon=True).start()
    with pytest.raises(errors.Cancelled) as caught:
        up(w, [])
    assert caught.value.exit_code == 130
    assert w.pull.saw_cancel.is_set() and w.fetch.saw_cancel.is_set()
    assert_nothing_left(w)


def test_the_cli_sink_takes_events_from_two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from nemoclaw_runtime.cli._output import Output

    err = io.StringIO()
    sink = Output(True, err=err, out=io.StringIO(), tty=False).events()

    def send(task: str) -> None:
        for n in range(300):
            sink(Progress(task, f"{task}-subject", done_bytes=n, total_bytes=300))

    threads = [threading.Thread(target=send, args=(task,)) for task in ("image", "weights")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STOP_S)
    lines = err.getvalue().splitlines()
    assert len(lines) == 600
    assert {json.loads(line)["task"] for line in lines} == {"image", "weights"}  # each line whole, task named
