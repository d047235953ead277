"""Per-name locks: bounded waits, contention between threads, release on errors and Ctrl-C, re-entrancy."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.clock import SystemClock
from nemoclaw_runtime.kernel.errors import InvalidInput, PreflightRefused
from nemoclaw_runtime.kernel.events import Event, Info
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.locks import lock_path, name_lock
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec
from tests.fakes.clock import FakeClock
from tests.fakes.fake_docker import FakeDocker


def hold_in_thread(state_dir: Path, name: str) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """Start a thread that takes the lock and keeps it until ``release`` is set."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with name_lock(state_dir, name):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(5)
    return held, release, thread


def test_lock_directory_is_private(tmp_path: Path) -> None:
    with name_lock(tmp_path, "nemoclaw-vllm"):
        pass
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o700
    assert lock_path(tmp_path, "nemoclaw-vllm") == tmp_path / "locks" / "nemoclaw-vllm.lock"


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "-x", "with space"])
def test_names_docker_would_reject_are_invalid(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidInput):
        lock_path(tmp_path, bad)


def test_contention_waits_a_bounded_time_then_refuses(tmp_path: Path) -> None:
    _, release, thread = hold_in_thread(tmp_path, "busy")
    events: list[Event] = []
    clock = FakeClock(0.0)
    try:
        with pytest.raises(PreflightRefused) as caught, \
                name_lock(tmp_path, "busy", wait_s=10, events=events.append, clock=clock):
            pytest.fail("the lock was held by another thread")
    finally:
        release.set()
        thread.join(5)
    assert caught.value.exit_code == 3 and "Another nemoclaw-runtime run" in caught.value.message
    assert [e.message for e in events if isinstance(e, Info)] == [
        "waiting for another nemoclaw-runtime on busy (up to 10 s)"]
    assert 9.9 <= clock.now <= 10.1 and len(clock.sleeps) <= 102


def test_a_waiter_gets_the_lock_once_the_holder_leaves(tmp_path: Path) -> None:
    _, release, thread = hold_in_thread(tmp_path, "busy")
    events: list[Event] = []
    timer = threading.Timer(0.3, release.set)
    timer.start()
    with name_lock(tmp_path, "busy", wait_s=10, events=events.append, clock=SystemClock()):
        assert not thread.is_alive() or release.is_set()
    thread.join(5)
    assert any(isinstance(e, Info) for e in events)


def test_lock_is_released_after_an_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), name_lock(tmp_path, "nn"):
        raise RuntimeError("boom")
    _assert_free_from_another_thread(tmp_path, "nn")


def test_lock_is_released_after_keyboard_interrupt(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), name_lock(tmp_path, "nn"):
        raise KeyboardInterrupt
    _assert_free_from_another_thread(tmp_path, "nn")


def _assert_free_from_another_thread(state_dir: Path, name: str) -> None:
    acquired: list[bool] = []

    def taker() -> None:
        try:
            with name_lock(state_dir, name, wait_s=0.2, clock=SystemClock()):
                acquired.append(True)
        except PreflightRefused:
            acquired.append(False)

    thread = threading.Thread(target=taker)
    thread.start()
    thread.join(5)
    assert acquired == [True]


def test_the_same_thread_may_reenter(tmp_path: Path) -> None:
    with name_lock(tmp_path, "nn"):
        with name_lock(tmp_path, "nn", wait_s=0.1):
            pass
        # still held by this thread after the inner block
        acquired: list[bool] = []
        thread = threading.Thread(target=lambda: acquired.append(_try(tmp_path, "nn")))
        thread.start()
        thread.join(5)
        assert acquired == [False]
    _assert_free_from_another_thread(tmp_path, "nn")


def _try(state_dir: Path, name: str) -> bool:
    try:
        with name_lock(state_dir, name, wait_s=0.1, clock=SystemClock()):
            return True
    except PreflightRefused:
        return False


def test_different_names_do_not_block_each_other(tmp_path: Path) -> None:
    _, release, thread = hold_in_thread(tmp_path, "one")
    try:
        assert _try(tmp_path, "two")
    finally:
        release.set()
        thread.join(5)


def test_two_threads_running_the_same_spec_make_exactly_one_container(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.add_image("busybox:latest")
    settings = Settings(state_dir_override=tmp_path)
    spec = ContainerSpec(name="same", runtime="vllm", image="busybox:latest", command=("sleep", "60"))
    barrier = threading.Barrier(2)
    actions: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        manager = DockerContainerManager(fake, settings, lock_wait_s=10)
        barrier.wait(5)
        try:
            actions.append(manager.ensure_running(spec, events=lambda e: None).action)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert sorted(actions) == ["reused", "started"]
    assert len(fake.containers) == 1
    assert [c[0] for c in fake.write_calls] == ["create_container", "start_container"]


def test_manager_lock_is_reentrant_around_ensure_running(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.add_image("busybox:latest")
    manager = DockerContainerManager(fake, Settings(state_dir_override=tmp_path), lock_wait_s=0.2)
    spec = ContainerSpec(name="held", runtime="vllm", image="busybox:latest", command=("sleep", "60"))
    with manager.lock("held"):
        assert manager.ensure_running(spec, events=lambda e: None).action == "started"


def test_another_process_is_excluded_and_sigint_releases(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    program = ("import sys, time; from pathlib import Path\n"
               "from nemoclaw_runtime.runtimes.docker.locks import name_lock\n"
               "with name_lock(Path(sys.argv[1]), 'shared'):\n"
               "    print('held', flush=True)\n"
               "    time.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", program, str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert not _try(tmp_path, "shared")
        child.send_signal(signal.SIGINT)
        child.wait(10)
        assert "KeyboardInterrupt" in (child.stderr.read() if child.stderr else "")
        assert _try(tmp_path, "shared")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
