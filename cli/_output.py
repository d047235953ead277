"""One output sink for every command: human lines, or one JSON document with ``--json``.

Results go to stdout; events (progress, heartbeats, warnings) go to stderr — rendered with rich on a TTY, as
throttled plain lines otherwise, and as JSON lines with ``--json`` so a wizard calling the CLI can follow along
while stdout stays one parseable document.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import click

from nemoclaw_runtime.kernel.events import (
    Event,
    EventSink,
    Heartbeat,
    Info,
    LogLine,
    PhaseChanged,
    Progress,
    Warning,
    event_to_dict,
)
from nemoclaw_runtime.kernel.secret import redact, redact_data
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import sanitize, tidy
from nemoclaw_runtime.kernel.units import format_bytes

json_option = click.option("--json", "json_mode", is_flag=True, help="Print one JSON document instead of text.")

PLAIN_PROGRESS_EVERY_S = 5.0


class Output:
    def __init__(self, json_mode: bool, *, out: IO[str] | None = None, err: IO[str] | None = None,
                 tty: bool | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.tty = self.err.isatty() if tty is None else tty
        self._renderer: _EventRenderer | None = None

    def result(self, data: Any, human: Callable[[], Iterable[str]] | None = None) -> None:
        """Print the command's result: ``data`` as JSON, or the lines ``human()`` yields."""
        self.close_progress()
        if self.json_mode:
            self.out.write(json.dumps(redact_data(data), indent=2, default=str) + "\n")
        elif human is not None:
            for line in human():
                self.out.write(safe_line(line) + "\n")
        self.out.flush()

    def settings(self) -> Settings:
        """The settings from the process environment — the CLI edge is the one place it is read — with their
        warnings shown."""
        settings = Settings.from_env()
        for warning in settings.warnings:
            self.warn(warning)
        return settings

    def warn(self, message: str) -> None:
        self.events()(Warning(message))

    def events(self) -> EventSink:
        if self._renderer is None:
            self._renderer = _EventRenderer(self)
        return self._renderer

    def close_progress(self) -> None:
        if self._renderer is not None:
            self._renderer.close()


class _EventRenderer:
    """Events may come from several threads at once (``up vllm`` pulls the image while it downloads the weights):
    one at a time through a lock; each ``Progress`` task/subject has its own bar (rich) or lines (plain)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._lock = threading.RLock()
        self._progress: Any = None  # rich.progress.Progress, created on the first byte event on a TTY
        self._tasks: dict[tuple[str, str], Any] = {}
        self._last_plain: dict[tuple[str, str], float] = {}
        self._finished: set[tuple[str, str]] = set()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._render(event)

    def _render(self, event: Event) -> None:
        if self.output.json_mode:
            self._write(json.dumps(redact_data(event_to_dict(event)), default=str))
        elif isinstance(event, Progress):
            self._render_progress(event)
        else:
            self._write(_plain(event))

    def _write(self, line: str) -> None:
        line = safe_line(line)
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            self.output.err.write(line + "\n")
            self.output.err.flush()

    def _render_progress(self, event: Progress) -> None:
        key = (event.task, event.subject)
        if self.output.tty:
            self._render_rich(key, event)
            return
        now = time.monotonic()
        finished = event.total_bytes is not None and event.done_bytes >= event.total_bytes and (
            event.items_total is None or event.items_done >= event.items_total)
        if key in self._finished:
            return
        if finished:
            self._finished.add(key)
        if finished or now - self._last_plain.get(key, 0.0) >= PLAIN_PROGRESS_EVERY_S:
            self._last_plain[key] = now
            self._write(_plain(event))

    def _render_rich(self, key: tuple[str, str], event: Progress) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        if self._progress is None:
            self._progress = RichProgress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TextColumn("{task.fields[items]}"), TimeElapsedColumn(),
                console=Console(file=self.output.err), transient=False)
            self._progress.start()
        items = f"{event.items_done}/{event.items_total} {_unit(event)}" if event.items_total else ""
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(f"{event.task} {event.subject}", total=event.total_bytes,
                                                       items=items)
        self._progress.update(self._tasks[key], completed=event.done_bytes, total=event.total_bytes, items=items)

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
                self._tasks.clear()


def safe_line(line: str) -> str:
    """One output line made safe for a terminal: credentials redacted (``kernel/secret.py``), no escapes, control
    or bidi characters, and no line break a value from outside could slip in (``kernel/text.py``)."""
    safe = sanitize(redact(line)).replace("\n", " ")
    if "Errno" in safe or "Connection" in safe or "MaxRetry" in safe:  # a connection library's nested repr
        body = safe.lstrip(" ")
        safe = safe[:len(safe) - len(body)] + tidy(body)
    return safe


def _unit(event: Progress) -> str:
    return {"image": "layers", "weights": "files", "model": "blobs"}.get(event.task, "parts")


def _plain(event: Event) -> str:
    if isinstance(event, PhaseChanged):
        return f"==> {event.message}"
    if isinstance(event, Progress):
        pct = f" ({100 * event.done_bytes / event.total_bytes:.0f}%)" if event.total_bytes else ""
        items = f", {event.items_done}/{event.items_total} {_unit(event)}" if event.items_total else ""
        rate = f", {format_bytes(event.rate_bytes_per_s)}/s" if event.rate_bytes_per_s else ""
        return (f"    {event.task} {event.subject}: {format_bytes(event.done_bytes)} of "
                f"{format_bytes(event.total_bytes)}{pct}{items}{rate}")
    if isinstance(event, Heartbeat):
        minutes, seconds = divmod(int(event.elapsed_s), 60)
        last = f"; last log: {event.last_log_line}" if event.last_log_line else ""
        return f"    still {event.phase} ({minutes}m {seconds:02d}s elapsed; {event.state}){last}"
    if isinstance(event, LogLine):
        return f"    [{event.source}] {event.line}"
    if isinstance(event, Warning):
        return f"Warning: {event.message}"
    if isinstance(event, Info):
        return f"    {event.message}"
    return str(event)


__all__ = ["Output", "json_option", "safe_line"]
