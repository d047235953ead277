"""Per-name inter-process locks, so two concurrent ``up`` runs on one container name never race.

One lock file per container name under ``settings.state_dir / "locks"`` (the directory is created 0700), held with
``filelock`` (``flock`` on Unix). The operating system drops the lock when the process dies, and the context
manager releases it on any exit — an exception, ``KeyboardInterrupt`` from Ctrl-C, or ``Cancelled``.

Lock objects are shared per path inside one process and ``filelock`` keeps their state per thread, which gives two
properties the container manager relies on: the same thread may re-enter a lock it holds (the orchestrator may
hold ``manager.lock(name)`` around ``ensure_running``, which takes it too), while two threads of one process
exclude each other exactly as two processes do.

A second run waits a bounded time (polling through the injected clock), says once that it is waiting, then gives
up with :class:`PreflightRefused` (exit 3) naming the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from nemoclaw_runtime.kernel.clock import Clock, SystemClock
from nemoclaw_runtime.kernel.errors import InvalidInput, PreflightRefused
from nemoclaw_runtime.kernel.events import EventSink, Info, discard
from nemoclaw_runtime.runtimes.docker.spec import CONTAINER_NAME_RE

__all__ = ["DEFAULT_WAIT_S", "lock_path", "name_lock"]

DEFAULT_WAIT_S = 10.0
POLL_INTERVAL_S = 0.1
LOCK_DIR_MODE = 0o700
LOCK_FILE_MODE = 0o600


_registry_guard = threading.Lock()
_registry: dict[Path, FileLock] = {}


def locks_dir(state_dir: Path) -> Path:
    return state_dir / "locks"


def lock_path(state_dir: Path, name: str) -> Path:
    """The lock file of container ``name``; rejects names Docker would reject (exit 2)."""
    if not CONTAINER_NAME_RE.match(name):
        raise InvalidInput(
            f"Invalid container name {name!r}: use letters, digits, '_', '.' or '-', starting with a letter or digit",
            remedy="pick a name such as nemoclaw-vllm with --name",
        )
    return locks_dir(state_dir) / f"{name}.lock"


def _ensure_dir(directory: Path) -> None:
    existed = directory.exists()
    directory.mkdir(mode=LOCK_DIR_MODE, parents=True, exist_ok=True)
    if not existed:  # mkdir honours the umask; make the mode exact for a directory we created
        directory.chmod(LOCK_DIR_MODE)


def _shared_lock(path: Path) -> FileLock:
    """One ``FileLock`` per path per process: re-entrant in a thread, exclusive across threads and processes."""
    with _registry_guard:
        lock = _registry.get(path)
        if lock is None:
            lock = FileLock(str(path), mode=LOCK_FILE_MODE, thread_local=True)
            _registry[path] = lock
        return lock


@contextmanager
def name_lock(
    state_dir: Path,
    name: str,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    events: EventSink = discard,
    clock: Clock | None = None,
) -> Iterator[None]:
    """Hold the lock of container ``name`` for the ``with`` block.

    Waits at most ``wait_s`` for another holder (emitting one ``Info`` event), then raises ``PreflightRefused``.
    """
    path = lock_path(state_dir, name)
    _ensure_dir(path.parent)
    lock = _shared_lock(path)
    _acquire(lock, name, path, wait_s=wait_s, events=events, clock=clock or SystemClock())
    try:
        yield
    finally:
        lock.release()


def _try_acquire(lock: FileLock) -> bool:
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False
    return True


def _acquire(lock: FileLock, name: str, path: Path, *, wait_s: float, events: EventSink, clock: Clock) -> None:
    if _try_acquire(lock):
        return
    events(Info(f"waiting for another nemoclaw-runtime on {name} (up to {wait_s:g} s)"))
    deadline = clock.monotonic() + wait_s
    max_polls = int(wait_s / POLL_INTERVAL_S) + 2  # a second bound, in case the clock does not advance
    for _ in range(max_polls):
        if clock.monotonic() >= deadline:
            break
        clock.sleep(min(POLL_INTERVAL_S, max(deadline - clock.monotonic(), 0.0)))
        if _try_acquire(lock):
            return
    raise PreflightRefused(
        f"Another nemoclaw-runtime run is working on container {name}; gave up after {wait_s:g} s",
        remedy=f"wait for the other run to finish (or stop it with Ctrl-C), then retry; lock file: {path}",
        details={"name": name, "lock": str(path)},
    )
