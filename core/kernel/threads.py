"""Work in threads that never hold the process: a daemon thread per task, its outcome as a Future, and an event
sink that several threads may call (one event at a time)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

from nemoclaw_runtime.kernel.events import Event, EventSink

__all__ = ["in_daemon_thread", "serialised"]

_T = TypeVar("_T")


def in_daemon_thread(name: str, work: Callable[[], _T]) -> futures.Future[_T]:
    """``work()`` in a daemon thread (a stuck download or copy never holds the process at exit), as a Future."""
    future: futures.Future[_T] = futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def serialised(events: EventSink) -> EventSink:
    """``events`` called from several threads, one event at a time (sinks need not be thread-safe)."""
    lock = threading.Lock()

    def sink(event: Event) -> None:
        with lock:
            events(event)

    return sink
