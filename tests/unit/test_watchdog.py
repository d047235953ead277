"""The phase-aware pull watchdog, driven by a fake clock and pull-stream events recorded from the real engine
(docker 20.10, a 3 MB layer at full speed and a 200 KB layer trickled at 10 KB/s)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from nemoclaw_runtime.runtimes.transfer.watchdog import PullWatchdog, describe_stuck
from tests.fakes.clock import FakeClock

LAYER = "05882c33acff"


def ev(status: str, layer: str | None = LAYER, current: int | None = None, total: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"status": status}
    if layer is not None:
        event["id"] = layer
    if current is not None:
        event["progressDetail"] = {"current": current, "total": total}
    return event


# A real pull (two base layers already present, one 3 MB layer), timestamps in seconds from the start.
RECORDED_FAST: list[tuple[float, dict[str, Any]]] = [
    (0.018, ev("Pulling from team/rec", "1.0")),
    (0.018, ev("Already exists", "f2b883447812")),
    (0.023, ev("Already exists", "c232c3d40970")),
    (0.023, ev("Pulling fs layer")),
    (0.037, ev("Downloading", current=36445, total=3146830)),
    (0.047, ev("Verifying Checksum")),
    (0.047, ev("Download complete")),
    (0.049, ev("Extracting", current=32768, total=3146830)),
    (0.131, ev("Extracting", current=3146830, total=3146830)),
    (0.139, ev("Pull complete")),
    (0.143, ev("Digest: sha256:b582ced329bf557e0f6cbb0476627cf416d5355558e2fde8e6c1edab3688c655", None)),
    (0.145, ev("Status: Downloaded newer image for 127.0.0.1:33181/team/rec:1.0", None)),
]


def watchdog(clock: FakeClock, stall: float = 120, quiet: float = 900, cap: float = 43200) -> PullWatchdog:
    return PullWatchdog(clock, stall_timeout=stall, quiet_timeout=quiet, max_timeout=cap)


def replay(dog: PullWatchdog, clock: FakeClock, events: Iterable[tuple[float, Mapping[str, Any]]]) -> list[Any]:
    """Feed timed events; return every verdict seen right after each event."""
    start = clock.now
    verdicts = []
    for at, event in events:
        clock.now = start + at
        verdicts.append(dog.verdict())
        dog.observe(event)
    return verdicts


def test_recorded_fast_pull_never_stalls_and_counts_layers() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=1, quiet=2)

    verdicts = replay(dog, clock, RECORDED_FAST)
    snap = dog.progress()

    assert verdicts == [None] * len(RECORDED_FAST)
    assert (snap.layers_done, snap.layers_total, snap.done_bytes, snap.total_bytes) == (3, 3, 3146830, 3146830)


def test_trickle_at_10_kb_per_s_with_sparse_events_is_never_a_stall() -> None:
    # recorded: the engine reported ~3 KB every 0.3 s; on a slower link with a big layer the gaps grow to
    # 512 KB / 10 KB/s ≈ 51 s — still inside a 120 s window, and every event moves the counter.
    clock = FakeClock()
    dog = watchdog(clock)
    dog.observe(ev("Pulling fs layer"))
    total = 300 * 1024 * 1024
    for step in range(1, 40):
        clock.sleep(51.2)
        assert dog.verdict() is None
        assert dog.observe(ev("Downloading", current=step * 512 * 1024, total=total)) is True
    assert dog.expecting_bytes()


def test_no_bytes_for_the_stall_window_while_downloading_is_a_stall_naming_the_layer() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=3, quiet=60)
    dog.observe(ev("Pulling fs layer"))
    dog.observe(ev("Downloading", current=65536, total=1048576))

    clock.sleep(2.9)
    early = dog.verdict()
    clock.sleep(0.1)
    verdict = dog.verdict()

    assert early is None and verdict is not None
    assert (verdict.kind, verdict.phase, verdict.window_s) == ("stalled", "bytes", 3)
    assert verdict.layers == ({"id": LAYER, "status": "Downloading", "current": 65536, "total": 1048576},)
    assert "layer 05882c33acff Downloading at 64.0 KiB of 1.0 MiB" in describe_stuck(verdict.layers)


def test_the_same_event_repeated_is_not_progress() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=5)
    dog.observe(ev("Downloading", current=100, total=1000))
    for _ in range(10):
        clock.sleep(1)
        assert dog.observe(ev("Downloading", current=100, total=1000)) is False
    assert dog.verdict() is not None


def test_one_byte_and_a_new_status_both_count_as_progress() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=5)
    dog.observe(ev("Downloading", current=100, total=1000))
    clock.sleep(4.9)
    assert dog.observe(ev("Downloading", current=101, total=1000)) is True
    clock.sleep(4.9)
    assert dog.observe(ev("Pulling fs layer", "another")) is True
    clock.sleep(4.9)
    assert dog.verdict() is None


def test_silent_extraction_tail_longer_than_the_stall_window_is_not_a_stall() -> None:
    # NemoClaw #6399: all bytes in, the engine extracts a 20 GB layer and says nothing for minutes.
    clock = FakeClock()
    dog = watchdog(clock, stall=120, quiet=900)
    big = 20 * 1024**3
    for event in (ev("Pulling fs layer"), ev("Downloading", current=big // 2, total=big),
                  ev("Downloading", current=big, total=big), ev("Verifying Checksum"), ev("Download complete"),
                  ev("Extracting", current=32768, total=big)):
        dog.observe(event)

    clock.sleep(600)  # five stall windows of silence
    quiet_ok = dog.verdict()
    clock.sleep(300)  # now past the quiet window
    verdict = dog.verdict()

    assert quiet_ok is None and not dog.expecting_bytes()
    assert verdict is not None and (verdict.phase, verdict.window_s) == ("quiet", 900)


def test_a_layer_still_downloading_keeps_the_short_window_even_while_another_extracts() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=10, quiet=900)
    dog.observe(ev("Extracting", "a", current=1, total=100))
    dog.observe(ev("Downloading", "b", current=5, total=100))

    clock.sleep(10)

    verdict = dog.verdict()
    assert verdict is not None and verdict.phase == "bytes"
    assert [layer["id"] for layer in verdict.layers] == ["b", "a"]  # the one expecting bytes first


def test_waiting_for_the_first_layer_uses_the_stall_window() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=10, quiet=900)
    clock.sleep(10)
    verdict = dog.verdict()
    assert verdict is not None and verdict.phase == "bytes" and describe_stuck(verdict.layers) == \
        "no layer had started"


def test_overall_cap_is_a_timeout_even_while_moving() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=10, quiet=20, cap=100)
    for step in range(1, 12):
        clock.sleep(9.5)
        dog.observe(ev("Downloading", current=step, total=1000))
    verdict = dog.verdict()
    assert verdict is not None and verdict.kind == "timed-out" and verdict.window_s == 100


def test_seconds_left_tracks_the_nearest_deadline() -> None:
    clock = FakeClock()
    dog = watchdog(clock, stall=10, quiet=50, cap=1000)
    dog.observe(ev("Downloading", current=1, total=10))
    clock.sleep(4)
    assert dog.seconds_left() == pytest.approx(6)
    dog.observe(ev("Downloading", current=10, total=10))  # all bytes in: the quiet window now
    assert dog.seconds_left() == pytest.approx(50)


def test_rate_is_measured_over_recent_samples() -> None:
    clock = FakeClock()
    dog = watchdog(clock)
    for step in range(1, 6):
        clock.sleep(1)
        dog.observe(ev("Downloading", current=step * 10_000, total=1_000_000))
    snap = dog.progress()
    assert snap.rate_bytes_per_s == pytest.approx(10_000)
    assert (snap.done_bytes, snap.total_bytes, snap.layers_done) == (50_000, 1_000_000, 0)


def test_quiet_window_is_never_shorter_than_the_stall_window() -> None:
    dog = watchdog(FakeClock(), stall=300, quiet=60)
    assert dog.quiet_timeout == 300
