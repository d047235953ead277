"""Time and cancellation, injected: the watchdog, pollers and heartbeats take a ``Clock`` and a ``CancelToken``.

Tests pass a fake clock whose ``sleep`` advances instantly; nothing patches ``time.sleep`` and nothing uses wall
time for durations.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from nemoclaw_runtime.kernel.errors import Cancelled

__all__ = ["CancelToken", "Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class CancelToken:
    """Set from any thread (a wizard's Cancel button, a signal handler) to stop a long operation.

    Long operations call :meth:`raise_if_cancelled` between steps and :meth:`wait` instead of sleeping, so a
    cancellation is noticed at once and cleanup runs exactly as for Ctrl-C.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")

    def wait(self, seconds: float, clock: Clock | None = None) -> None:
        """Sleep up to ``seconds`` (through ``clock`` when it is a fake), waking early when cancelled."""
        if clock is not None and not isinstance(clock, SystemClock):
            clock.sleep(seconds)
        elif seconds > 0:
            self._event.wait(seconds)
        self.raise_if_cancelled()
