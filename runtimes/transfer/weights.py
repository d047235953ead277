"""Model weights on the host: Hugging Face gating, the disk estimate, and the prefetch into the HF cache.

The module callers import (and tests patch): the prefetch with its retries lives here; the rest is re-exported
from the modules that hold it —

* :mod:`runtimes.transfer.hf_access`: the endpoint, the cache folder, the token rule, the access check
  (:func:`check_access`, :func:`missing_token`) and the one translation of huggingface_hub errors
  (:func:`translate_hf_error`);
* :mod:`runtimes.transfer.hf_repo`: the repository's files at a revision (:func:`resolve_revision`) and the bytes
  the cache still lacks (:func:`estimate_repo_bytes`);
* :mod:`runtimes.transfer.hf_download`: one ``snapshot_download`` with byte progress and the stall watchdog.

Everything goes through huggingface_hub with the endpoint, cache directory and token passed explicitly — never
read from the environment (``Settings`` is the only source; a token absent there is ``token=False``, so no token
file or variable is picked up behind the user's back). huggingface_hub errors are translated in exactly one place,
:func:`translate_hf_error`, and no message ever carries the token.

Resuming: huggingface_hub (2.x) resumes a dropped connection in place with a ``Range`` request, and a file that
finished downloading stays in the cache, so running ``prefetch`` again after an interrupt (Ctrl-C, a crash, a lost
link) fetches only what is still missing. A partial file of an interrupted process is discarded (huggingface_hub
writes process-unique temporary files since 2.0), so the unit of cross-process resume is the file.

Faults: huggingface_hub itself resumes a body cut mid-file a few times; beyond that, a 5xx answer or a dropped
connection makes the whole prefetch run again (:data:`DOWNLOAD_ATTEMPTS` in all, backing off, through tenacity),
which fetches only what is still missing. A 429 is not retried: anonymous downloads are rate-limited and the
remedy is a token. A download that moves no byte for ``NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT`` seconds while bytes
are due is cancelled (exit 4 naming the file and the bytes it had) — the download runs in a worker thread that
the calling thread watches, since a stalled socket read reports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity

from nemoclaw_runtime.kernel.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.kernel.errors import DownloadFailed, NemoclawError
from nemoclaw_runtime.kernel.events import EventSink, Warning
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.transfer.hf_access import (
    DEFAULT_ENDPOINT,
    METADATA_TIMEOUT_S,
    AccessResult,
    cache_dir,
    check_access,
    endpoint_of,
    hf_errors,
    licence_url,
    missing_token,
    shown_endpoint,
    translate_hf_error,
)
from nemoclaw_runtime.runtimes.transfer.hf_download import PROGRESS_EVERY_S, DownloadTracker, download
from nemoclaw_runtime.runtimes.transfer.hf_repo import cached_files, estimate_repo_bytes, repo_files, resolve_revision

DOWNLOAD_ATTEMPTS = 4  # the prefetch is run at most this often after a 5xx or a dropped connection
RETRY_WAIT_S = (2.0, 4.0, 8.0)  # the pause before the 2nd, 3rd, 4th attempt


@dataclass(frozen=True)
class PrefetchResult:
    model_id: str
    revision: str  # the commit sha whose snapshot is in the cache
    path: Path  # the snapshot folder
    files: int
    total_bytes: int | None  # the repo's size at that revision, None when the hub gave no sizes
    downloaded_bytes: int  # fetched by this call (0 when everything was already cached)
    from_cache_only: bool = False  # the hub was unreachable and a complete cached snapshot was used

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_id, "revision": self.revision, "path": str(self.path), "files": self.files,
                "total_bytes": self.total_bytes, "downloaded_bytes": self.downloaded_bytes,
                "from_cache_only": self.from_cache_only}


# --- the prefetch --------------------------------------------------------------------------------------------------


def prefetch(
    model_id: str,
    *,
    token: Secret | None,
    settings: Settings,
    events: EventSink,
    cancel: CancelToken,
    revision: str | None = None,
    clock: Clock | None = None,
    max_workers: int = 8,
) -> PrefetchResult:
    """Download the snapshot of ``model_id`` into ``$HF_HOME/hub`` with byte progress; resumable, cancellable.

    Raises:
        MissingToken / AccessDenied: the hub refused (exit 3).
        DownloadFailed: network, hub or disk failure (exit 4).
        Cancelled: ``cancel`` was set (files already complete stay in the cache).
    """
    cancel.raise_if_cancelled()
    clock = clock or SystemClock()
    downloaded = 0

    def pause(seconds: float) -> None:
        cancel.wait(seconds, clock)

    def announce(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        events(Warning(f"{error.message if isinstance(error, NemoclawError) else error}; trying again "
                       f"(attempt {state.attempt_number + 1} of {DOWNLOAD_ATTEMPTS}); finished files are kept"))

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(DOWNLOAD_ATTEMPTS), retry=tenacity.retry_if_exception(_retryable),
        wait=lambda state: RETRY_WAIT_S[min(state.attempt_number, len(RETRY_WAIT_S)) - 1],
        sleep=pause, before_sleep=announce, reraise=True)
    for attempt in retrying:
        with attempt:
            try:
                files = repo_files(model_id, token, settings, revision)
            except DownloadFailed as exc:
                if exc.cause != "network":
                    raise
                return _from_cache_only(model_id, settings, events, revision, exc)
            cached = cached_files(model_id, files, settings)
            tracker = DownloadTracker(model_id, files, cached, events, cancel, clock, already=downloaded)
            try:
                folder = download(model_id, token, settings, revision, tracker, max_workers)
            finally:
                downloaded = tracker.downloaded_bytes
    tracker.finish()
    path = Path(folder)
    return PrefetchResult(model_id, path.name, path, len(files.sizes), files.total, downloaded)


def _retryable(error: BaseException) -> bool:
    """A 5xx from the hub or a connection lost mid-download: run the prefetch again (a 429 is not retried)."""
    if not isinstance(error, DownloadFailed):
        return False
    status = error.details.get("status")
    return error.cause == "network" or (error.cause == "hub-error" and isinstance(status, int) and status >= 500)


def _from_cache_only(model_id: str, settings: Settings, events: EventSink, revision: str | None,
                     original: DownloadFailed) -> PrefetchResult:
    """The hub is unreachable: a complete cached snapshot still lets the runtime start (offline)."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(model_id, revision=revision, cache_dir=cache_dir(settings),
                                   local_files_only=True)
    except Exception:  # noqa: BLE001 - any cache miss means "no usable snapshot": report the network failure
        raise original from None
    path = Path(folder)
    events(Warning(f"{shown_endpoint(settings)} is unreachable; using the cached snapshot {path.name[:12]} of "
                   f"{model_id}"))
    count = sum(1 for p in path.rglob("*") if p.is_file())
    return PrefetchResult(model_id, path.name, path, count, None, 0, from_cache_only=True)


__all__ = ["DEFAULT_ENDPOINT", "DOWNLOAD_ATTEMPTS", "METADATA_TIMEOUT_S", "PROGRESS_EVERY_S", "RETRY_WAIT_S",
           "AccessResult", "PrefetchResult", "cache_dir", "check_access", "endpoint_of", "estimate_repo_bytes",
           "hf_errors", "licence_url", "missing_token", "prefetch", "resolve_revision", "shown_endpoint",
           "translate_hf_error"]
