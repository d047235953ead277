"""One snapshot download, watched: huggingface_hub's ``snapshot_download`` in a worker thread, its progress bars
turned into Progress events, its log warnings into Warning events, and a stall or a cancel noticed from outside.

A stalled socket read reports nothing, so the download runs in a worker thread that the calling thread watches: no
byte for ``NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT`` seconds while bytes are due cancels it (exit 4 naming the file and
the bytes it had, read from huggingface_hub's temporary files). Retrying is the caller's business
(:func:`runtimes.transfer.weights.prefetch`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import Cancelled, DownloadFailed
from nemoclaw_runtime.kernel.events import EventSink, Progress, Warning
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.transfer.hf_access import (
    LIBRARY,
    cache_dir,
    clean_message,
    endpoint_of,
    shown_endpoint,
    token_arg,
    translated_errors,
)
from nemoclaw_runtime.runtimes.transfer.hf_repo import RepoFiles

PROGRESS_EVERY_S = 0.25  # at most this often a Progress event (plus one per finished file and a final one)


def download(model_id: str, token: Secret | None, settings: Settings, revision: str | None,
             tracker: DownloadTracker, max_workers: int) -> str:
    """snapshot_download in a worker thread, watched from here for a stall and for cancellation; the snapshot
    folder. huggingface_hub's errors come out translated (:func:`~runtimes.transfer.hf_access.translated_errors`)."""
    from huggingface_hub import snapshot_download

    def fetch() -> str:
        return str(snapshot_download(
            model_id, revision=revision, cache_dir=cache_dir(settings), endpoint=endpoint_of(settings),
            token=token_arg(token), tqdm_class=tracker.bar_class(), max_workers=max_workers,
            library_name=LIBRARY, library_version=__version__,
        ))

    with translated_errors(model_id, token, settings, "downloading"), _hub_logs_as_events(events=tracker.events,
                                                                                          lock=tracker.lock,
                                                                                          token=token):
        return _watched(fetch, tracker, settings)


def _watched(fetch: Callable[[], str], tracker: DownloadTracker, settings: Settings) -> str:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["folder"] = fetch()
        except BaseException as exc:  # noqa: BLE001 - handed to the watching thread, which raises it
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"hf-prefetch-{tracker.model_id}", daemon=True)
    window = settings.hf_download_stall_timeout
    poll = min(1.0, max(window / 20, 0.02))
    worker.start()
    try:
        while worker.is_alive():
            worker.join(poll)
            if not worker.is_alive():
                break
            if tracker.cancel.cancelled:
                tracker.abort()
                worker.join(5.0)  # let huggingface_hub remove its temporary file
                tracker.cancel.raise_if_cancelled()
            if tracker.quiet_for() >= window:
                tracker.abort()
                raise _stalled(tracker, settings, window)
    except BaseException:
        tracker.abort()  # Ctrl-C or a stall: the worker stops at its next byte
        raise
    if "error" in outcome:
        raise outcome["error"]
    return str(outcome["folder"])


def _stalled(tracker: DownloadTracker, settings: Settings, window: float) -> DownloadFailed:
    """Name the file(s) being downloaded and the bytes each had, from huggingface_hub's temporary files."""
    partial: dict[str, int] = {}
    repo_dir = cache_dir(settings) / ("models--" + tracker.model_id.replace("/", "--")) / "blobs"
    for temp in sorted(repo_dir.glob("*.incomplete")) if repo_dir.is_dir() else ():
        path = tracker.etags.get(temp.name.split(".", 1)[0], temp.name)
        try:
            partial[path] = max(partial.get(path, 0), temp.stat().st_size)
        except OSError:
            continue
    named = ", ".join(f"{path} (had {size} of {tracker.sizes.get(path) or '?'} bytes)"
                      for path, size in partial.items()) or "the next file (no byte of it yet)"
    return DownloadFailed(
        f"The download of '{tracker.model_id}' stalled: no byte for {window:g} s while downloading {named}",
        remedy="check the network / proxy (or HF_ENDPOINT), then run the command again: finished files are kept "
               "(NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT sets the window)",
        cause="hf-stall",
        details={"model": tracker.model_id, "stall_timeout_s": window, "files": partial,
                 "endpoint": shown_endpoint(settings)})


class DownloadTracker:
    """Turns huggingface_hub's progress-bar calls into Progress events, and checks for cancellation there.

    snapshot_download creates bars from ``tqdm_class`` for bytes (its aggregate bars, updated from the download
    threads) and for finished files. Byte bars all count the same bytes (network vs. written), so the largest
    count is taken; files already cached before the call are counted as done from the start.
    """

    def __init__(self, model_id: str, files: RepoFiles, cached: set[str], events: EventSink, cancel: CancelToken,
                 clock: Clock, already: int = 0) -> None:
        self.model_id = model_id
        self.sizes = files.sizes
        self.etags = files.etags
        self.already = already  # bytes fetched by earlier attempts of this prefetch
        self.aborted = threading.Event()
        self.events = events
        self.cancel = cancel
        self.clock = clock
        self.total_bytes = files.total
        self.total_files = len(files.sizes)
        self.cached_bytes = sum(files.sizes.get(p) or 0 for p in cached)
        self.cached_files = len(cached)
        self.byte_bars: list[_EventBar] = []
        self.files_done = 0
        self.lock = threading.Lock()
        self.started = clock.monotonic()
        self.last_emit: float | None = None
        self.last_byte = self.started

    @property
    def downloaded_bytes(self) -> int:
        return self.already + max((int(bar.n) for bar in self.byte_bars), default=0)

    def quiet_for(self) -> float:
        """Seconds since the last byte (or the start), read by the watching thread."""
        with self.lock:
            return self.clock.monotonic() - self.last_byte

    def abort(self) -> None:
        """The watcher gave up (stall, cancel): the download threads stop at their next byte."""
        self.aborted.set()

    def bar_class(self) -> type[_EventBar]:
        return type("_BoundEventBar", (_EventBar,), {"tracker": self})

    def on_update(self, bar: _EventBar) -> None:
        """Called from any download thread after a bar moved: cancel there, report at most every 0.25 s."""
        self.cancel.raise_if_cancelled()
        if self.aborted.is_set():
            raise Cancelled("download abandoned")
        with self.lock:
            if not bar.is_files_bar:
                self.last_byte = self.clock.monotonic()
            if bar.is_files_bar:
                self.files_done = max(self.files_done, int(bar.n))
            now = self.clock.monotonic()
            if bar.is_files_bar or self.last_emit is None or now - self.last_emit >= PROGRESS_EVERY_S:
                self.last_emit = now
                self._emit()

    def finish(self) -> None:
        with self.lock:
            self.files_done = self.total_files
            self._emit(final=True)

    def _emit(self, final: bool = False) -> None:
        done = self.cached_bytes + self.downloaded_bytes
        if self.total_bytes is not None:
            done = self.total_bytes if final else min(done, self.total_bytes)
        elapsed = self.clock.monotonic() - self.started
        rate = self.downloaded_bytes / elapsed if elapsed > 0 and self.downloaded_bytes else None
        self.events(Progress(task="weights", subject=self.model_id, done_bytes=done, total_bytes=self.total_bytes,
                             items_done=max(self.files_done, self.cached_files), items_total=self.total_files,
                             rate_bytes_per_s=rate))


class _WarningEvents(logging.Handler):
    """huggingface_hub's warnings ("Trying to resume download...") as Warning events instead of stderr lines."""

    def __init__(self, events: EventSink, lock: threading.Lock, token: Secret | None) -> None:
        super().__init__(level=logging.WARNING)
        self.events = events
        self.shared_lock = lock
        self.token = token

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = clean_message(record.getMessage(), self.token)
        except Exception:  # noqa: BLE001 - a malformed log record must not break the download
            return
        with self.shared_lock:
            self.events(Warning(f"huggingface_hub: {message}"))


@contextmanager
def _hub_logs_as_events(events: EventSink, lock: threading.Lock, token: Secret | None) -> Iterator[None]:
    """While downloading, huggingface_hub's logger reports through the sink: it installs its own stderr handler,
    and library code never prints (a stray line would also break ``--json`` event streams)."""
    logger = logging.getLogger("huggingface_hub")
    saved_handlers, saved_propagate = list(logger.handlers), logger.propagate
    logger.handlers = [_WarningEvents(events, lock, token)]
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers = saved_handlers
        logger.propagate = saved_propagate


class _EventBar:
    """Just enough of tqdm's interface for huggingface_hub; it draws nothing (library code never prints)."""

    tracker: DownloadTracker

    def __init__(self, *args: Any, total: float | None = None, initial: float = 0, unit: str = "it",
                 desc: str | None = None, **kwargs: Any) -> None:
        self.n = initial
        self.total = total
        self.unit = unit
        self.desc = desc or ""
        self.is_files_bar = unit != "B"
        if not self.is_files_bar:
            self.tracker.byte_bars.append(self)

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0
        self.tracker.on_update(self)

    @property
    def format_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total, "rate": None, "unit": self.unit}

    def __enter__(self) -> _EventBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def close(self) -> None:
        pass

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        pass

    def clear(self, *args: Any, **kwargs: Any) -> None:
        pass

    def reset(self, total: float | None = None) -> None:
        self.n = 0
        self.total = total

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass


__all__ = ["PROGRESS_EVERY_S", "DownloadTracker", "download"]
