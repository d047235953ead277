"""``pull_model`` against the fake Ollama's streamed ``/api/pull``: progress, errors at any point, the
phase-aware stall watchdog (fake clock for minute-long windows, ~1-3 s real windows for a few), the overall
cap, cancellation and the bounded read timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    DownloadFailed,
    ImageNotFound,
    PullStalled,
    PullTimedOut,
)
from nemoclaw_runtime.kernel.events import Event, Progress
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.server.ollama_api import detect_ollama
from nemoclaw_runtime.runtimes.transfer.ollama_pull import pull_model
from tests.fake_servers.fake_ollama import FakeOllama, StepClock, fake_digest, free_port

TAG = "nemotron-3-nano:30b"
FAST = 0.01  # the client's poll interval in these tests


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def _pull(http: httpx.Client, fake: FakeOllama, *, settings: Settings | None = None, clock: object = None,
          events: list[Event] | None = None, cancel: CancelToken | None = None) -> None:
    sink = events.append if events is not None else (lambda event: None)
    pull_model(http, fake.base_url, TAG, settings=settings or Settings(), clock=clock or SystemClock(),  # type: ignore[arg-type]
               events=sink, cancel=cancel, poll_interval_s=FAST)


def _progress(events: list[Event]) -> list[Progress]:
    return [e for e in events if isinstance(e, Progress)]


def test_normal_pull_reports_summed_progress_and_installs_the_model(http: httpx.Client, fake: FakeOllama) -> None:
    events: list[Event] = []
    _pull(http, fake, events=events)
    progress = _progress(events)
    assert progress and all(p.task == "model" and p.subject == TAG for p in progress)
    done = [p.done_bytes for p in progress]
    assert done == sorted(done)  # byte progress never goes backwards
    last = progress[-1]
    assert last.done_bytes == last.total_bytes == sum(fake.config.layer_sizes)
    assert (last.items_done, last.items_total) == (3, 3)
    assert last.detail == "success"
    assert any(p.detail == "verifying sha256 digest" for p in progress)
    assert fake.requests[0].path == "/api/pull" and fake.requests[0].body == {"model": TAG, "stream": True}
    server = detect_ollama(http, port=fake.port)
    assert server is not None and not isinstance(server, Exception) and server.has_model(TAG)  # type: ignore[union-attr]


def test_an_error_line_mid_stream_fails_the_pull(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "error"
    with pytest.raises(DownloadFailed) as caught:
        _pull(http, fake)
    assert caught.value.exit_code == 4 and not isinstance(caught.value, ImageNotFound)
    assert "connection reset by peer" in caught.value.message
    assert caught.value.details["ollama_error"] == fake.config.pull_error


def test_an_unknown_tag_is_image_not_found(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.unknown_tags = frozenset({TAG})
    with pytest.raises(ImageNotFound, match="file does not exist") as caught:
        _pull(http, fake)
    assert caught.value.remedy is not None and "ollama.com/library" in caught.value.remedy


def test_a_stall_with_repeated_lines_is_detected_on_the_fake_clock(http: httpx.Client, fake: FakeOllama) -> None:
    """Ollama repeats the same progress line while stuck: lines arriving are not progress, bytes are."""
    fake.config.pull_mode = "stall"
    fake.config.stall_after_bytes = 1_500
    clock = StepClock(step=2.0)  # the default 120 s window passes in ~60 polls
    with pytest.raises(PullStalled) as caught:
        _pull(http, fake, clock=clock)
    error = caught.value
    stuck = fake_digest(f"layer-0-{fake.config.layer_sizes[0]}")
    assert error.details["digest"] == stuck and stuck in error.message
    assert error.details["completed_bytes"] == 1_500 and error.details["total_bytes"] == 3_000
    assert error.details["window_s"] == 120.0 and error.details["phase"] == "bytes"
    assert "1.5 KiB of 2.9 KiB" in error.message and "NEMOCLAW_PULL_STALL_TIMEOUT" in (error.remedy or "")


def test_a_silent_stall_is_detected_in_real_time(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "stall"
    fake.config.stall_silent = True
    started = time.monotonic()
    with pytest.raises(PullStalled):
        _pull(http, fake, settings=Settings(pull_stall_timeout=1.0, pull_quiet_timeout=5.0))
    assert time.monotonic() - started < 15  # generous: the window is 1 s; the read timeout would be 35 s


def test_a_one_byte_trickle_is_progress(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "trickle"
    fake.config.layer_sizes = (8,)
    fake.config.trickle_s = 0.25  # 2 s in all, each step well inside the 1 s window
    events: list[Event] = []
    _pull(http, fake, settings=Settings(pull_stall_timeout=1.0, pull_quiet_timeout=5.0), events=events)
    progress = _progress(events)
    assert progress[-1].detail == "success" and progress[-1].done_bytes == 8


def test_a_silent_verifying_phase_gets_the_longer_quiet_window(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "quiet"
    fake.config.quiet_s = 1.5  # longer than the stall window, shorter than the quiet window
    events: list[Event] = []
    _pull(http, fake, settings=Settings(pull_stall_timeout=0.5, pull_quiet_timeout=6.0), events=events)
    assert _progress(events)[-1].detail == "success"


def test_a_quiet_phase_longer_than_the_quiet_window_stalls(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "quiet"
    fake.config.quiet_s = 600.0  # the server's stop event ends it at teardown
    with pytest.raises(PullStalled) as caught:
        _pull(http, fake, settings=Settings(pull_stall_timeout=300.0, pull_quiet_timeout=900.0),
              clock=StepClock(step=10.0))
    assert caught.value.details["phase"] == "quiet" and caught.value.details["window_s"] == 900.0
    assert "verifying sha256 digest" in caught.value.message
    assert "NEMOCLAW_PULL_QUIET_TIMEOUT" in (caught.value.remedy or "")


def test_the_overall_cap_times_out_with_nemoclaws_message(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "trickle"
    fake.config.layer_sizes = (100_000,)
    fake.config.trickle_s = 0.02
    clock = StepClock(step=1.0)
    with pytest.raises(PullTimedOut) as caught:
        _pull(http, fake, settings=Settings(ollama_pull_timeout=120.0), clock=clock)
    assert caught.value.message == "Model pull timed out after 2 minutes."
    assert caught.value.exit_code == 4 and "NEMOCLAW_OLLAMA_PULL_TIMEOUT" in (caught.value.remedy or "")


def test_default_cap_message_says_30_minutes(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "trickle"
    fake.config.layer_sizes = (100_000,)
    fake.config.trickle_s = 0.005
    with pytest.raises(PullTimedOut, match=r"^Model pull timed out after 30 minutes\.$"):
        _pull(http, fake, settings=Settings(), clock=StepClock(step=5.0))


def test_cancellation_closes_the_stream_promptly(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.pull_mode = "stall"
    fake.config.stall_silent = True
    cancel = CancelToken()
    timer = threading.Timer(0.3, cancel.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            _pull(http, fake, cancel=cancel)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10


def test_the_read_timeout_is_bounded_a_little_above_the_longest_window() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, content=b'{"status":"pulling manifest"}\n{"status":"success"}\n')

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        pull_model(client, "http://o", TAG, settings=Settings(pull_stall_timeout=120.0, pull_quiet_timeout=900.0),
                   clock=SystemClock(), poll_interval_s=FAST)
    assert seen[0]["read"] is not None and 900.0 < seen[0]["read"] <= 960.0


def test_a_stream_that_ends_without_success_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"status":"pulling manifest"}\nnot json\n')

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DownloadFailed, match="ended before success") as caught:
            pull_model(client, "http://o", TAG, settings=Settings(), clock=SystemClock(), poll_interval_s=FAST)
    assert caught.value.details["last_status"] == "pulling manifest"


def test_a_non_200_answer_fails_with_its_error_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "disk full"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DownloadFailed, match="disk full"):
            pull_model(client, "http://o", TAG, settings=Settings(), clock=SystemClock(), poll_interval_s=FAST)


def test_pulling_from_nothing_fails_clearly(http: httpx.Client) -> None:
    with pytest.raises(DownloadFailed, match="did not answer"):
        pull_model(http, f"http://127.0.0.1:{free_port()}", TAG, settings=Settings(), clock=SystemClock())


def test_progress_is_throttled_but_every_phase_change_is_reported(http: httpx.Client, fake: FakeOllama) -> None:
    events: list[Event] = []
    _pull(http, fake, clock=StepClock(step=0.0), events=events)  # frozen time: only phase changes get through
    details = [p.detail for p in _progress(events)]
    assert details[0] == "pulling manifest" and details[-3:] == ["verifying sha256 digest", "writing manifest",
                                                                  "success"]
    assert len(details) == 1 + len(fake.config.layer_sizes) + 3


def test_a_frozen_clock_cannot_make_the_pull_loop_forever(http: httpx.Client, fake: FakeOllama,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from nemoclaw_runtime.runtimes.transfer import ollama_pull

    monkeypatch.setattr(ollama_pull, "MAX_PULL_LINES", 0)
    fake.config.pull_mode = "stall"
    fake.config.stall_silent = True
    with pytest.raises(PullTimedOut):
        _pull(http, fake, settings=Settings(ollama_pull_timeout=0.05, pull_stall_timeout=0.05,
                                            pull_quiet_timeout=0.05), clock=StepClock(step=0.0))
