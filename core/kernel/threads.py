"""Work beside the main thread: daemon threads that never hold the process (a task's outcome as a Future), an event
sink several threads may call, tasks run together that stop together, and clean-ups a second Ctrl-C cannot cut
short."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled
from nemoclaw_runtime.kernel.events import Event, EventSink, Warning

__all__ = ["Task", "in_daemon_thread", "interrupts_deferred", "run_together", "serialised"]

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


@contextmanager
def interrupts_deferred(notice: Callable[[], None] | None = None) -> Iterator[list[int]]:
    """Run the block with Ctrl-C (SIGINT) and SIGTERM held back: a signal that arrives is recorded (the yielded list)
    and ``notice`` is called, and the block — a clean-up — runs to its end. Off the main thread (where Python delivers
    signals) it does nothing. The previous handlers are restored afterwards; a SIGTERM held back is then raised again
    for the previous SIGTERM handler (the CLI's raises, so the command still ends with 143 once the clean-up is done).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def hold(signum: int, frame: object) -> None:
        received.append(signum)
        if notice is not None:
            with suppress(Exception):
                notice()

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except (ValueError, OSError):  # no signals here (an embedded interpreter): nothing to defer
        yield received
        return
    previous_term = signal.signal(signal.SIGTERM, hold)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    if signal.SIGTERM in received:
        signal.raise_signal(signal.SIGTERM)  # delivered late, to whatever handled it before (default: the process ends)


#: A task run beside others: its thread's name, and the work (its own cancel token, a thread-safe event sink).
Task = tuple[str, Callable[[CancelToken, EventSink], Any]]
#: How often the caller's cancel token is looked at while the tasks run.
POLL_S = 0.1


def run_together(tasks: Sequence[Task], cancel: CancelToken, events: EventSink, *, stop_wait_s: float = 30.0,
                 what: str = "transfers") -> list[Any]:
    """The tasks at once, in daemon threads sharing one token of their own; their results in order.

    The first failure (a real one before a cancellation, when several ended at once) cancels the others and is
    raised; the caller's ``cancel`` or Ctrl-C cancels them all. Either way the others get ``stop_wait_s`` to notice
    their token and clean up as each does alone (a second Ctrl-C cannot cut that short), then go on stopping in the
    background. Events from every task reach ``events`` one at a time.
    """
    own = CancelToken()
    sink = serialised(events)
    pending = [in_daemon_thread(name, functools.partial(work, own, sink)) for name, work in tasks]
    waiting = set(pending)
    try:
        while waiting:
            done, waiting = futures.wait(waiting, timeout=POLL_S, return_when=futures.FIRST_EXCEPTION)
            failed = [error for error in (f.exception() for f in done) if error is not None]
            if failed:
                failed.sort(key=lambda error: isinstance(error, Cancelled))
                raise failed[0]
            if cancel.cancelled:
                raise Cancelled("cancelled")
    except BaseException:
        own.cancel()
        if waiting:
            notice = functools.partial(sink, Warning(f"Still stopping the {what}; a few seconds more (this Ctrl-C "
                                                     "will not interrupt it)"))
            with interrupts_deferred(notice):
                _, still = futures.wait(waiting, timeout=stop_wait_s)
            if still:
                sink(Warning(f"The {what} did not all stop within {stop_wait_s:.0f} s of the cancel; they stop in the "
                             "background"))
        raise
    return [future.result() for future in pending]
