"""Pulling an Ollama model through ``/api/pull``: progress events and the same phase-aware stall watchdog as image
pulls (``runtimes/transfer/watchdog.py``), under the ``NEMOCLAW_OLLAMA_PULL_TIMEOUT`` cap.

Ollama repeats identical progress lines every ~60 ms, so only new bytes, a new blob or a new status count as
progress; lines are read on a helper thread so the watchdog can decide while a read blocks, and the socket is shut
down on a stall, a cancel or the end (closing alone does not wake a blocked read).
"""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

import httpx

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    DownloadFailed,
    ImageNotFound,
    PullStalled,
    PullTimedOut,
)
from nemoclaw_runtime.kernel.events import EventSink, Progress, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.runtimes.server.ollama_api import json_or_none, response_error_text
from nemoclaw_runtime.runtimes.transfer.watchdog import PullWatchdog, Verdict

_MANIFEST = "<ollama-manifest>"  # pseudo-layer: bytes are expected until Ollama says it is verifying
_AFTER_DOWNLOAD = ("verifying sha256 digest", "writing manifest", "removing any unused layers",
                   "removing unused layers", "success")
_READ_TIMEOUT_MARGIN_S = 30.0
MAX_PULL_LINES = 1_000_000
PROGRESS_EVERY_S = 0.25  # Ollama ticks every ~60 ms; a few Progress events per second are plenty


def pull_model(http: httpx.Client, base_url: str, tag: str, *, settings: Settings, clock: Clock,
               events: EventSink = discard, cancel: CancelToken | None = None,
               poll_interval_s: float = 0.25) -> None:
    """Pull ``tag`` through ``POST /api/pull`` (streamed NDJSON), reporting ``Progress(task="model")`` events.

    The phase-aware stall watchdog (``runtimes/transfer/watchdog.py``, shared with image pulls) raises
    :class:`PullStalled` when no byte moves for ``settings.pull_stall_timeout`` while bytes are expected, or for
    ``settings.pull_quiet_timeout`` while Ollama verifies and writes; :class:`PullTimedOut` after
    ``settings.ollama_pull_timeout`` overall. An ``{"error": ...}`` line raises :class:`DownloadFailed`
    (:class:`ImageNotFound` for a tag the library does not have). Lines are read on a helper thread so the
    watchdog decides every ``poll_interval_s`` even while a read blocks; the read timeout is bounded a little
    above the longest window as a backstop. Ollama keeps a partial download and resumes it on the next pull.
    """
    cancel = cancel or CancelToken()
    cancel.raise_if_cancelled()
    read_timeout = max(settings.pull_stall_timeout, settings.pull_quiet_timeout) + _READ_TIMEOUT_MARGIN_S
    request = http.build_request("POST", f"{base_url}/api/pull", json={"model": tag, "stream": True},
                                 timeout=httpx.Timeout(10.0, read=read_timeout))
    try:
        response = http.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"Could not start pulling '{tag}': Ollama at {base_url} did not answer "
                             f"({type(exc).__name__})", remedy="check that Ollama is running, then run again",
                             details={"tag": tag, "base_url": base_url}) from None
    try:
        if response.status_code != 200:
            response.read()
            raise pull_error(tag, response_error_text(response))
        _PullFollower(tag, settings, clock, events).follow(response, cancel, poll_interval_s)
    finally:
        response.close()


def pull_error(tag: str, message: str) -> DownloadFailed:
    """The error for an ``{"error": ...}`` answer to a pull."""
    details = {"tag": tag, "ollama_error": message}
    if "file does not exist" in message.lower() or "not found" in message.lower():
        return ImageNotFound(f"Ollama's library has no model '{tag}': {message}",
                             remedy="check the tag at https://ollama.com/library (name:size, e.g. qwen3.5:9b)",
                             details=details)
    return DownloadFailed(f"Ollama could not pull '{tag}': {message}",
                          remedy="check the network from the Ollama server and run again; Ollama resumes the "
                                 "partial download", details=details)


class _LinePump:
    """Reads the response's lines on a daemon thread, so a blocking read never keeps the watchdog waiting."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="ollama-pull-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for line in self.response.iter_lines():
                self.items.put(("line", line))
            self.items.put(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which translates it
            self.items.put(("error", exc))

    def next(self, timeout_s: float) -> tuple[str, Any]:
        try:
            return self.items.get(timeout=timeout_s)
        except queue.Empty:
            return "idle", None

    def finish(self) -> None:
        """Unblock the reader (shut the socket down: closing alone does not wake a blocked recv) and join it."""
        if self.thread.is_alive():
            stream = self.response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.thread.join(timeout=5.0)


class _PullFollower:
    """Maps Ollama's pull lines onto the shared :class:`PullWatchdog` (digests as layers) and reports progress."""

    def __init__(self, tag: str, settings: Settings, clock: Clock, events: EventSink) -> None:
        self.tag = tag
        self.settings = settings
        self.events = events
        self.status = ""
        self.clock = clock
        self._last_emit = float("-inf")
        self.watchdog = PullWatchdog(clock, stall_timeout=settings.pull_stall_timeout,
                                     quiet_timeout=settings.pull_quiet_timeout,
                                     max_timeout=settings.ollama_pull_timeout)
        self.watchdog.observe({"id": _MANIFEST, "status": "Waiting"})

    def follow(self, response: httpx.Response, cancel: CancelToken, poll_interval_s: float) -> None:
        pump = _LinePump(response)
        watchdog = self.watchdog
        # Bounded in count as well as in clock time: every idle poll waits poll_interval_s for real, and the
        # overall cap ends a healthy pull long before MAX_PULL_LINES lines (Ollama sends ~16 a second).
        limit = int((watchdog.max_timeout + watchdog.quiet_timeout) / max(poll_interval_s, 1e-3)) + MAX_PULL_LINES
        try:
            for _ in range(limit):
                kind, value = pump.next(poll_interval_s)
                if cancel.cancelled:
                    raise Cancelled(f"Pulling '{self.tag}' was cancelled; Ollama resumes it on the next pull")
                if kind == "line" and self.feed(value):
                    return
                verdict = self.watchdog.verdict()
                if verdict is not None:
                    raise self.verdict_error(verdict)
                if kind == "end":
                    raise DownloadFailed(f"Ollama's pull stream for '{self.tag}' ended before success",
                                         remedy="run the command again; Ollama resumes the partial download",
                                         details={"tag": self.tag, "last_status": self.status})
                if kind == "error":
                    raise self.stream_error(value)
            raise self.verdict_error(Verdict("timed-out", watchdog.max_timeout, 0.0, "bytes", ()))
        finally:
            pump.finish()

    def feed(self, line: str) -> bool:
        """Record one NDJSON line; True on ``success``. An ``error`` line raises at once, whatever came before."""
        payload = json_or_none(line)
        if not isinstance(payload, dict):
            return False
        if payload.get("error"):
            raise pull_error(self.tag, str(payload["error"]))
        status = str(payload.get("status") or "")
        digest = payload.get("digest")
        moved = False
        if digest:
            moved = self._feed_blob(str(digest), _int_or_zero(payload.get("total")),
                                    _int_or_zero(payload.get("completed")))
        elif status:
            if status in _AFTER_DOWNLOAD:
                moved |= self.watchdog.observe({"id": _MANIFEST, "status": "Pull complete"})
            moved |= self.watchdog.observe({"status": status})
        changed = bool(status) and status != self.status
        self.status = status or self.status
        now = self.clock.monotonic() if moved else self._last_emit
        if moved and (changed or now - self._last_emit >= PROGRESS_EVERY_S):
            self._last_emit = now
            self.events(self.progress())
        return status == "success"

    def _feed_blob(self, digest: str, total: int, completed: int) -> bool:
        # Ollama repeats the same line on a timer: only a new blob or more bytes move the watchdog.
        layer = self.watchdog.layers.get(digest)
        moved = False
        if layer is None or layer.status == "Downloading":
            moved = self.watchdog.observe({"id": digest, "status": "Downloading",
                                           "progressDetail": {"current": completed, "total": total}})
        if total > 0 and completed >= total:  # Ollama has no extraction step: a blob fully in is done
            moved |= self.watchdog.observe({"id": digest, "status": "Pull complete"})
        return moved

    def progress(self) -> Progress:
        snapshot = self.watchdog.progress()
        blobs = [layer for layer in self.watchdog.layers.values() if layer.id != _MANIFEST]
        return Progress(task="model", subject=self.tag, done_bytes=snapshot.done_bytes,
                        total_bytes=snapshot.total_bytes, items_done=sum(1 for b in blobs if b.complete),
                        items_total=len(blobs), rate_bytes_per_s=snapshot.rate_bytes_per_s,
                        detail=self.status or None)

    def verdict_error(self, verdict: Verdict) -> DownloadFailed:
        details: dict[str, Any] = {"tag": self.tag, "phase": verdict.phase, "window_s": verdict.window_s,
                                   "idle_s": round(verdict.idle_s, 1), "last_status": self.status}
        if verdict.kind == "timed-out":
            limit = self.settings.ollama_pull_timeout
            return PullTimedOut(f"Model pull timed out after {_minutes(limit)} minutes.",
                                remedy=f"raise NEMOCLAW_OLLAMA_PULL_TIMEOUT (now {limit:g} s) or use a faster "
                                       "network, then run again; Ollama resumes the partial download",
                                details=details)
        stuck = [layer for layer in verdict.layers if layer["id"] != _MANIFEST]
        if verdict.phase == "quiet":
            where = f"after every byte arrived (last status: {self.status or 'none'})"
            variable = "NEMOCLAW_PULL_QUIET_TIMEOUT"
        elif stuck:
            blob = stuck[0]
            details.update(digest=blob["id"], completed_bytes=blob["current"], total_bytes=blob["total"])
            where = f"blob {blob['id']} stuck at {format_bytes(blob['current'])} of {format_bytes(blob['total'])}"
            variable = "NEMOCLAW_PULL_STALL_TIMEOUT"
        else:
            where = f"before any blob started (last status: {self.status or 'none'})"
            variable = "NEMOCLAW_PULL_STALL_TIMEOUT"
        return PullStalled(f"Pulling '{self.tag}' stalled: no progress for {verdict.window_s:g} s, {where}",
                           remedy="check the network between Ollama and its registry and run again (Ollama "
                                  f"resumes the partial download); on a slow link raise {variable}",
                           details=details)

    def stream_error(self, exc: BaseException) -> DownloadFailed:
        if isinstance(exc, httpx.TimeoutException):  # the backstop read timeout: nothing at all arrived
            return PullStalled(f"Pulling '{self.tag}' stalled: Ollama sent nothing for "
                               f"{max(self.settings.pull_stall_timeout, self.settings.pull_quiet_timeout):g} s",
                               remedy="check the Ollama server and its network, then run again",
                               details={"tag": self.tag, "last_status": self.status})
        return DownloadFailed(f"Ollama's pull stream for '{self.tag}' broke: {type(exc).__name__}",
                              remedy="run the command again; Ollama resumes the partial download",
                              details={"tag": self.tag, "last_status": self.status})


def _int_or_zero(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60, 1)
    return f"{minutes:g}" if minutes > 0 else f"{seconds / 60:.2g}"


__all__ = ["MAX_PULL_LINES", "pull_error", "pull_model"]
