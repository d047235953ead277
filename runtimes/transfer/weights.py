"""Model weights on the host: Hugging Face gating, the disk estimate, and the prefetch into the HF cache.

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

import errno
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.kernel.errors import (
    AccessDenied,
    Cancelled,
    DownloadFailed,
    InvalidInput,
    MissingToken,
    NemoclawError,
)
from nemoclaw_runtime.kernel.events import EventSink, Progress, Warning
from nemoclaw_runtime.kernel.names import HF_TOKEN_VARIABLES
from nemoclaw_runtime.kernel.secret import Secret, redact, redact_url
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import plain_reason
from nemoclaw_runtime.kernel.translation import Context, Rule, Translation, translate

DEFAULT_ENDPOINT = "https://huggingface.co"
METADATA_TIMEOUT_S = 15.0  # model_info and the access probe: the hub answers these in well under a second
PROGRESS_EVERY_S = 0.25  # at most this often a Progress event (plus one per finished file and a final one)
DOWNLOAD_ATTEMPTS = 4  # the prefetch is run at most this often after a 5xx or a dropped connection
RETRY_WAIT_S = (2.0, 4.0, 8.0)  # the pause before the 2nd, 3rd, 4th attempt
_LIBRARY = "nemoclaw-runtime"
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class AccessResult:
    """The hub let us read ``model_id`` (anonymously when ``token_used`` is False)."""

    model_id: str
    endpoint: str
    token_used: bool
    licence_url: str


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


def endpoint_of(settings: Settings) -> str:
    return (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")


def shown_endpoint(settings: Settings) -> str:
    """The endpoint as messages show it: ``user:password@`` in HF_ENDPOINT is ``***@``."""
    return redact_url(endpoint_of(settings))


def licence_url(model_id: str, settings: Settings) -> str:
    """Where to read the model card and accept its licence (a display value: URL user information redacted)."""
    return f"{shown_endpoint(settings)}/{model_id}"


def cache_dir(settings: Settings) -> Path:
    """The hub cache the vLLM container mounts (``$HF_HOME/hub``)."""
    return settings.hf_home / "hub"


# --- access --------------------------------------------------------------------------------------------------------


def check_access(model_id: str, token: Secret | None, settings: Settings, *, gated: bool = True) -> AccessResult:
    """Refuse early (exit 3) when the weights cannot be read with ``token``.

    ``gated`` is what the registry says: a gated entry without a token is refused without asking the hub. With a
    token (or for an ungated entry) the hub is asked for the model's ``config.json`` metadata, the first file a
    runtime reads — the same check a download would fail on, bounded by :data:`METADATA_TIMEOUT_S`.

    Raises:
        MissingToken: gated and no token (names both variables and the licence page).
        AccessDenied: the hub refused (gated without licence acceptance, bad token, repository not found).
        DownloadFailed: the hub could not be reached.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    if gated and not token:
        raise missing_token(model_id, settings)
    endpoint = endpoint_of(settings)
    url = hf_hub_url(model_id, "config.json", endpoint=endpoint)
    with _hf_errors(model_id, token, settings, "checking access to"):
        try:
            get_hf_file_metadata(url, token=_token_arg(token), timeout=METADATA_TIMEOUT_S, endpoint=endpoint,
                                 library_name=_LIBRARY, library_version=__version__)
        except EntryNotFoundError:
            pass  # no config.json (e.g. a GGUF-only repo), but the repository itself answered: access is fine
    return AccessResult(model_id, redact_url(endpoint), bool(token), licence_url(model_id, settings))


def missing_token(model_id: str, settings: Settings) -> MissingToken:
    url = licence_url(model_id, settings)
    return MissingToken(
        f"Model '{model_id}' is gated on Hugging Face and no token is set: one of "
        f"{', '.join(HF_TOKEN_VARIABLES)} is required",
        remedy=f"accept the licence at {url}, then export HF_TOKEN=<your token> (or HUGGING_FACE_HUB_TOKEN)",
        cause="hf-gated",
        details={"model": model_id, "licence_url": url, "variables": list(HF_TOKEN_VARIABLES)},
    )


def _token_arg(token: Secret | None) -> str | bool:
    """What huggingface_hub gets: the value, or False so it never looks for a token of its own."""
    return token.reveal() if token else False


# --- the disk estimate ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RepoFiles:
    sha: str
    sizes: dict[str, int | None]  # path -> bytes
    etags: dict[str, str] = field(default_factory=dict)  # blob id (LFS sha256 or git oid) -> path

    @property
    def total(self) -> int | None:
        sizes = list(self.sizes.values())
        return sum(s for s in sizes if s is not None) if sizes and None not in sizes else None


def _repo_files(model_id: str, token: Secret | None, settings: Settings, revision: str | None) -> _RepoFiles:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint_of(settings), token=_token_arg(token), library_name=_LIBRARY,
                library_version=__version__)
    with _hf_errors(model_id, token, settings, "reading the file list of"):
        info = api.model_info(model_id, revision=revision, files_metadata=True, timeout=METADATA_TIMEOUT_S)
    sizes = {s.rfilename: s.size for s in info.siblings or ()}
    etags: dict[str, str] = {}
    for sibling in info.siblings or ():
        lfs_sha = getattr(sibling.lfs, "sha256", None) if sibling.lfs else None
        for etag in (lfs_sha, sibling.blob_id):
            if etag:
                etags[str(etag)] = sibling.rfilename
    return _RepoFiles(str(info.sha), sizes, etags)


def resolve_revision(model_id: str, token: Secret | None, settings: Settings, revision: str | None = None) -> str:
    """The commit sha ``revision`` (default the hub's main) of ``model_id`` names now (``model_info(...).sha``),
    without downloading anything."""
    return _repo_files(model_id, token, settings, revision).sha


def _cached_files(model_id: str, files: _RepoFiles, settings: Settings) -> set[str]:
    """The files of that revision already complete in the cache."""
    from huggingface_hub import try_to_load_from_cache

    cached = set()
    for path in files.sizes:
        found = try_to_load_from_cache(model_id, path, cache_dir=cache_dir(settings), revision=files.sha)
        if isinstance(found, str):
            cached.add(path)
    return cached


def estimate_repo_bytes(model_id: str, token: Secret | None, settings: Settings, *,
                        revision: str | None = None) -> int | None:
    """Bytes the download still needs (the repo's size minus what the cache already holds), for the disk
    preflight. None when the hub gives no sizes or cannot be asked — the download itself will then say why."""
    try:
        files = _repo_files(model_id, token, settings, revision)
    except NemoclawError:
        return None
    if files.total is None:
        return None
    cached = _cached_files(model_id, files, settings)
    return sum(size or 0 for path, size in files.sizes.items() if path not in cached)


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
                files = _repo_files(model_id, token, settings, revision)
            except DownloadFailed as exc:
                if exc.cause != "network":
                    raise
                return _from_cache_only(model_id, settings, events, revision, exc)
            cached = _cached_files(model_id, files, settings)
            tracker = _Tracker(model_id, files, cached, events, cancel, clock, already=downloaded)
            try:
                folder = _download(model_id, token, settings, revision, tracker, max_workers)
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


def _download(model_id: str, token: Secret | None, settings: Settings, revision: str | None, tracker: _Tracker,
              max_workers: int) -> str:
    """snapshot_download in a worker thread, watched from here for a stall and for cancellation."""
    from huggingface_hub import snapshot_download

    def download() -> str:
        return str(snapshot_download(
            model_id, revision=revision, cache_dir=cache_dir(settings), endpoint=endpoint_of(settings),
            token=_token_arg(token), tqdm_class=tracker.bar_class(), max_workers=max_workers,
            library_name=_LIBRARY, library_version=__version__,
        ))

    with _hf_errors(model_id, token, settings, "downloading"), _hub_logs_as_events(events=tracker.events,
                                                                                    lock=tracker.lock, token=token):
        return _watched(download, tracker, settings)


def _watched(download: Callable[[], str], tracker: _Tracker, settings: Settings) -> str:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["folder"] = download()
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


def _stalled(tracker: _Tracker, settings: Settings, window: float) -> DownloadFailed:
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


class _Tracker:
    """Turns huggingface_hub's progress-bar calls into Progress events, and checks for cancellation there.

    snapshot_download creates bars from ``tqdm_class`` for bytes (its aggregate bars, updated from the download
    threads) and for finished files. Byte bars all count the same bytes (network vs. written), so the largest
    count is taken; files already cached before the call are counted as done from the start.
    """

    def __init__(self, model_id: str, files: _RepoFiles, cached: set[str], events: EventSink, cancel: CancelToken,
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
            message = _clean(record.getMessage(), self.token)
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

    tracker: _Tracker

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


# --- the one translation of huggingface_hub errors ------------------------------------------------------------------


@contextmanager
def _hf_errors(model_id: str, token: Secret | None, settings: Settings, action: str) -> Iterator[None]:
    try:
        yield
    except NemoclawError:
        raise  # ours already (Cancelled from the progress hook)
    except Exception as exc:  # noqa: BLE001 - every foreign error is translated right here
        raise translate_hf_error(exc, model_id=model_id, token=token, settings=settings, action=action) from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP stack this huggingface_hub uses (httpx2 in 2.x, requests in 0.x)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx2

        found.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import requests

        found.extend([requests.ConnectionError, requests.Timeout])
    except ImportError:
        pass
    return tuple(found)


_REFUSED = Translation(
    AccessDenied, "Hugging Face refused the token for '{model}' (HTTP {refused_status}) while {action} it",
    "accept the licence at {url} with the account that owns the token, or check that HF_TOKEN is a valid read token",
    cause="hf-gated")
_NOT_FOUND_ANONYMOUS = Translation(
    AccessDenied, "Model '{model}' was not found on {endpoint}, or you have no access to it",
    "check the id, or set HF_TOKEN if it is a private repository ({url})", cause="hf-not-found")
_NOT_FOUND_WITH_TOKEN = Translation(
    AccessDenied, "Model '{model}' was not found on {endpoint}, or you have no access to it",
    "check the id, that HF_TOKEN is a valid token, and that its account can see the repository ({url})",
    cause="hf-not-found")
_NO_REVISION = Translation(InvalidInput, "Revision not found for '{model}': {text}", "pick a revision listed at {url}")
_INVALID_ID = Translation(InvalidInput, "Invalid Hugging Face model id '{model}': {text}",
                          "use an id of the form org/name")
_DISK_FULL = Translation(DownloadFailed, "The disk filled up while {action} '{model}'",
                         "free disk space under {hf_home} or point HF_HOME at a larger disk", cause="disk-full")
_CACHE_PERMISSION = Translation(DownloadFailed, "Cannot write the Hugging Face cache while {action} '{model}': {text}",
                                "make {cache} writable by this user (or set HF_HOME)", cause="cache-permission")
_HUB_ERROR = Translation(DownloadFailed, "The hub failed while {action} '{model}' (HTTP {status}): {text}",
                         "try again later; the files already downloaded are kept", cause="hub-error")
_RATE_LIMITED_ANONYMOUS = Translation(
    DownloadFailed, "{endpoint} rate-limited the download of '{model}' (HTTP 429): anonymous downloads are "
    "rate-limited", "set HF_TOKEN to a Hugging Face read token (authenticated downloads get a far higher limit), "
    "then run the command again; finished files are kept", cause="hf-rate-limited")
_RATE_LIMITED_WITH_TOKEN = Translation(
    DownloadFailed, "{endpoint} rate-limited the download of '{model}' (HTTP 429) with the token set",
    "wait a few minutes, then run the command again; finished files are kept", cause="hf-rate-limited")
_UNREACHABLE = Translation(DownloadFailed, "Could not reach {endpoint} while {action} '{model}': {text}",
                           "check the network / proxy (or HF_ENDPOINT), then run the command again; finished files "
                           "are kept", cause="network")
_FAILED = Translation(DownloadFailed, "Failed while {action} '{model}': {type}: {text}",
                      "run the command again; finished files are kept")


def _refused(exc: BaseException, context: Context) -> Translation | NemoclawError:
    """The hub said 401/403 (or gated): without a token, that is the missing token."""
    return _REFUSED if context["token"] else missing_token(context["model"], context["settings"])


def _repository_not_found(exc: BaseException, context: Context) -> Translation:
    return _NOT_FOUND_WITH_TOKEN if context["token"] else _NOT_FOUND_ANONYMOUS


def _http_error(exc: BaseException, context: Context) -> Translation | NemoclawError:
    if context["status"] == 429:
        return _RATE_LIMITED_WITH_TOKEN if context["token"] else _RATE_LIMITED_ANONYMOUS
    return _refused(exc, context) if context["status"] in (401, 403) else _HUB_ERROR


def _os_error(exc: BaseException, context: Context) -> Translation:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return _DISK_FULL
    return _CACHE_PERMISSION if isinstance(exc, PermissionError) else _FAILED


@functools.cache
def hf_errors() -> Mapping[type[BaseException], Rule]:
    """huggingface_hub / HTTP / OS exception type → our error; the most specific type of an exception picks its row.
    Built on first use: huggingface_hub is imported only when weights are touched."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    table: dict[type[BaseException], Rule] = {error: _UNREACHABLE for error in _network_errors()}
    table.update({
        GatedRepoError: _refused,
        RepositoryNotFoundError: _repository_not_found,
        RevisionNotFoundError: _NO_REVISION,
        HfHubHTTPError: _http_error,  # 401/403 → refused, else the hub failed
        HFValidationError: _INVALID_ID,
        LocalEntryNotFoundError: _UNREACHABLE,
        OfflineModeIsEnabled: _UNREACHABLE,
        OSError: _os_error,  # ENOSPC → disk full, PermissionError → the cache is not writable
    })
    return table


def translate_hf_error(exc: BaseException, *, model_id: str, token: Secret | None, settings: Settings,
                        action: str) -> NemoclawError:
    """Map a huggingface_hub / HTTP / OS error to our tree by :func:`hf_errors`. The only place that knows their
    types; the message is redacted (``_clean``) before it reaches any template."""
    url = licence_url(model_id, settings)
    endpoint = shown_endpoint(settings)  # never user:password@ in a message or in --json
    status = getattr(getattr(exc, "response", None), "status_code", None)
    details: dict[str, Any] = {"model": model_id, "endpoint": endpoint, "licence_url": url}
    if status is not None:
        details["status"] = status
    text = plain_reason(_clean(str(exc), token))  # "connection refused", not a connection pool's nested repr
    context = {"model": model_id, "action": action, "endpoint": endpoint, "url": url, "text": text,
               "status": status, "refused_status": status or 403, "token": bool(token), "type": type(exc).__name__,
               "hf_home": settings.hf_home, "cache": cache_dir(settings), "settings": settings}
    error = translate(hf_errors(), exc, context, default=_FAILED, extra_details=details)
    assert error is not None  # a default is given
    return error


def _clean(text: str, token: Secret | None) -> str:
    """A foreign message made safe to show: the token never, other credentials masked, one bounded line."""
    if token:
        text = text.replace(token.reveal(), "***")
    one_line = " ".join(text.split())
    return redact(one_line)[:_MESSAGE_CHARS]


__all__ = ["cache_dir", "check_access", "endpoint_of", "estimate_repo_bytes", "missing_token", "prefetch",
           "resolve_revision",
           "shown_endpoint", "translate_hf_error"]
