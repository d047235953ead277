"""Typed events: how every long operation reports what it is doing.

Library code never prints. It calls an :data:`EventSink` (a plain callable) with these frozen values; the CLI is
one renderer of them (rich on a TTY, plain lines otherwise, JSON lines with ``--json``), an onboarding wizard is
another. Every event turns into JSON with :func:`event_to_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "Event", "EventSink", "Heartbeat", "Info", "LogLine", "PhaseChanged", "Progress", "Warning", "discard",
    "event_to_dict",
]


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"


@dataclass(frozen=True)
class PhaseChanged(Event):
    """A new phase began: ``preflight``, ``weights``, ``pull``, ``start``, ``wait``, ``validate``, ``ready``..."""

    kind: ClassVar[str] = "phase"
    phase: str
    message: str


@dataclass(frozen=True)
class Progress(Event):
    """Byte progress of a download. ``task`` is ``image``, ``weights`` or ``model``; totals may be unknown."""

    kind: ClassVar[str] = "progress"
    task: str
    subject: str
    done_bytes: int
    total_bytes: int | None = None
    items_done: int = 0
    items_total: int | None = None
    rate_bytes_per_s: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Heartbeat(Event):
    """Still working: how long, in which state, and the last thing the runtime said."""

    kind: ClassVar[str] = "heartbeat"
    phase: str
    elapsed_s: float
    state: str
    last_log_line: str | None = None


@dataclass(frozen=True)
class LogLine(Event):
    kind: ClassVar[str] = "log"
    source: str
    line: str


@dataclass(frozen=True)
class Info(Event):
    kind: ClassVar[str] = "info"
    message: str


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - the event's name is what callers expect to match on
    kind: ClassVar[str] = "warning"
    message: str


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """The default sink: library calls made without a callback report nothing."""


def event_to_dict(event: Event) -> dict[str, Any]:
    return {"event": event.kind, **dataclasses.asdict(event)}
