"""Digest-pinned image pulls with progress and the phase-aware stall watchdog (``ImageStore``).

``ensure_image(ref)``:

1. credentials: the docker config as it is; for nvcr.io (always) or a registry that refuses anonymous access, the
   NGC key variables or a prompt (:mod:`runtimes.registry_auth`), checked with the engine before the pull;
2. the host platform's manifest digest from the registry's index (:mod:`runtimes.manifests`, transient failures
   retried bounded); no entry for this platform, or a registry with no index at all → pull by tag, said in one
   line; a registry still failing after the retries → DownloadFailed (the pin is never dropped silently);
3. already present with that digest → no pull; else the layer sizes are checked against the free space of the
   engine's data root (local engines; exit 3 when they do not fit), then ``pull repo@sha256:…`` watched by
   :class:`PullWatchdog`, with ``Progress`` events, then tag it back to ``ref``. A stalled pull is aborted (its
   socket shut down) and nothing is tagged. An engine that goes away mid-pull (a restart) is waited for, bounded
   (ENGINE_RETURN_WAIT_S), and the pull re-issued: the engine skips the layers it already holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import tenacity

from nemoclaw_runtime.kernel.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    DockerUnavailable,
    DownloadFailed,
    ImageNotFound,
    InsufficientResources,
    InvalidInput,
    PullStalled,
    PullTimedOut,
    RegistryAuthFailed,
)
from nemoclaw_runtime.kernel.events import EventSink, Info, Progress, Warning, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.runtimes.docker.manifests import (
    ImageRef,
    ManifestResolution,
    host_arch,
    parse_image_ref,
    resolve_platform_manifest,
)
from nemoclaw_runtime.runtimes.docker.port import DockerPort, PulledImage, PullStream
from nemoclaw_runtime.runtimes.docker.pull_errors import pull_error
from nemoclaw_runtime.runtimes.docker.registry_login import (
    LOGIN_REQUIRED,
    PromptSecret,
    RegistryCredentials,
    docker_config_credentials,
    missing_login_hint,
    obtain_credentials,
)
from nemoclaw_runtime.runtimes.transfer.watchdog import PullWatchdog, Verdict, describe_stuck

PROGRESS_EVERY_S = 0.25  # a few Progress events per second at most
MONITOR_TICK_S = 0.25  # how often the watchdog thread looks (cancellation latency, stall latency)
PULL_ATTEMPTS = 3  # transient failures before any byte arrived are retried, bounded
READ_TIMEOUT_MARGIN_S = 5.0  # the socket read timeout backstop, beyond the longest window
ENGINE_RETURN_WAIT_S = 60.0  # an engine that went away mid-pull (a restart) is waited for this long, then exit 3
ENGINE_POLL_S = 1.0  # how often it is pinged meanwhile
ENGINE_RETURNS = 3  # at most this many engine restarts are ridden out in one pull


@dataclass(frozen=True)
class PullPlan:
    """What will be pulled: the engine repository, the tag or digest, and the platform when pinned."""

    ref: ImageRef
    resolution: ManifestResolution | None
    credentials: RegistryCredentials | None

    @property
    def pinned_ref(self) -> str | None:
        return f"{self.ref.engine_repository}@{self.resolution.digest}" if self.resolution else None


class DockerImageStore:
    """:class:`~nemoclaw_runtime.runtimes.docker.port.ImageStore` over a :class:`DockerPort`."""

    def __init__(self, port: DockerPort, settings: Settings, *, clock: Clock | None = None, arch: str | None = None,
                 prompt_secret: PromptSecret | None = None, save_login: bool = False,
                 resolve: Callable[..., ManifestResolution | None] = resolve_platform_manifest) -> None:
        self.port = port
        self.settings = settings
        self.clock = clock or SystemClock()
        self.arch = host_arch(arch)
        self.prompt_secret = prompt_secret
        self.save_login = save_login
        self._resolve_manifest = resolve
        self._pull_started = False  # a pull stream was opened by the current _pull (an engine loss is then mid-pull)

    # --- ImageStore ----------------------------------------------------------------------------------------------

    def image_present(self, ref: str) -> bool:
        return self.port.image_inspect(ref) is not None

    def ensure_image(self, ref: str, *, events: EventSink = discard, cancel: CancelToken | None = None) -> PulledImage:
        cancel = cancel or CancelToken()
        parsed = _parse(ref)
        plan = self.plan(parsed, events)
        cancel.raise_if_cancelled()
        if plan.resolution is None:
            events(Info(f"No platform manifest resolved; pulling {ref} by tag."))
            self._pull(plan, parsed.reference, None, events, cancel)
            return self._outcome(plan, pulled=True)
        digest = plan.resolution.digest
        if self._has_digest(plan):
            self._tag_back(plan)
            events(Info(f"Image {ref} is present with the pinned digest {digest[:19]}…; no pull needed."))
            return self._outcome(plan, pulled=False)
        self.check_disk(plan, events)
        events(Info(f"Pulling {ref} pinned to {plan.resolution.platform or 'its'} manifest {digest[:19]}…"))
        self._pull(plan, digest, plan.resolution.platform, events, cancel)
        self._tag_back(plan)
        return self._outcome(plan, pulled=True)

    def resolve_digest(self, ref: str, *, events: EventSink = discard) -> str | None:
        """This platform's manifest digest behind ``ref`` through the registry's manifest API, without pulling
        (None: the registry has no index for it, so only a tag pull would be possible)."""
        resolution = self.plan(_parse(ref), events).resolution
        return resolution.digest if resolution else None

    # --- planning: credentials and the platform digest ---------------------------------------------------------

    def plan(self, parsed: ImageRef, events: EventSink = discard) -> PullPlan:
        stored = self.port.stored_credentials(parsed.registry)
        credentials = docker_config_credentials(parsed.registry, stored)
        logged_in = stored is not None  # perhaps a login only the engine can use (an identity token, a store)
        if not logged_in and parsed.registry in LOGIN_REQUIRED:
            credentials = self._obtain(parsed, events)
        try:
            return PullPlan(parsed, self._resolve(parsed, credentials, events), credentials)
        except RegistryAuthFailed as exc:
            if credentials is not None or not exc.details.get("anonymous", True):
                raise _refused(parsed, credentials) from None
        if logged_in:  # a login we cannot read (e.g. an identity token): the engine pulls with it, by tag
            events(Warning(f"The docker login for {parsed.registry} could not be used to read the manifest list."))
            return PullPlan(parsed, None, None)
        credentials = self._obtain(parsed, events)  # the registry wants a login we do not have yet
        try:
            return PullPlan(parsed, self._resolve(parsed, credentials, events), credentials)
        except RegistryAuthFailed:
            raise _refused(parsed, credentials) from None

    def _obtain(self, parsed: ImageRef, events: EventSink) -> RegistryCredentials:
        return obtain_credentials(parsed.registry, self.settings, port=self.port, prompt_secret=self.prompt_secret,
                                  events=events, save_login=self.save_login)

    def _resolve(self, parsed: ImageRef, credentials: RegistryCredentials | None,
                 events: EventSink) -> ManifestResolution | None:
        if parsed.is_digest:  # already pinned by the caller
            return ManifestResolution(parsed.reference, None, from_index=False)
        proxy = self.settings.environ.get("HTTPS_PROXY") or self.settings.environ.get("https_proxy")
        try:
            return self._resolve_manifest(parsed, arch=self.arch, clock=self.clock, proxy=proxy,
                                          credentials=credentials.basic() if credentials else None)
        except (RegistryAuthFailed, ImageNotFound):
            raise
        except DownloadFailed as exc:
            if not exc.details.get("no_index"):
                raise  # a failing registry (after the bounded retries) is no reason to drop the digest pin
            # the registry has no index for it: only a tag pull is possible, and that is said plainly
            events(Warning(f"{exc.message}; pulling {parsed.original} by tag, without a pinned digest."))
            return None

    # --- the engine's disk -----------------------------------------------------------------------------------------

    def check_disk(self, plan: PullPlan, events: EventSink = discard) -> None:
        """Refuse (InsufficientResources, exit 3) when the image's layers exceed the free space of the engine's data
        root. Only for a local engine (a unix socket): a remote engine's disk is not ours to read (said so)."""
        needed = plan.resolution.size_bytes if plan.resolution else None
        if needed is None:
            return
        host = (self.settings.docker_host or "").strip().lower()
        if host and not host.startswith("unix://"):
            events(Info(f"Not checking free disk space for {plan.ref.original}: the engine (DOCKER_HOST) is remote"))
            return
        root = str(self.port.engine_info().get("DockerRootDir") or "")
        free = data_root_free_bytes(root) if root else None
        if free is None:
            events(Info(f"Not checking free disk space for {plan.ref.original}: the engine's data root "
                        f"{root or '(unknown)'} cannot be read here"))
            return
        if needed > free:
            raise InsufficientResources(
                f"Not enough disk space to pull {plan.ref.original}: its layers take {format_bytes(needed)}, the "
                f"engine's data root {root} has {format_bytes(free)} free",
                remedy="free disk space (docker image prune, docker system prune) or move the engine's data-root",
                details={"image": plan.ref.original, "needed_bytes": needed, "free_bytes": free, "data_root": root})

    # --- local state ---------------------------------------------------------------------------------------------

    def _has_digest(self, plan: PullPlan) -> bool:
        assert plan.resolution is not None and plan.pinned_ref is not None
        found = self.port.image_inspect(plan.pinned_ref)
        if not found:
            return False
        wanted = plan.resolution.digest
        return any(str(entry).endswith("@" + wanted) for entry in found.get("RepoDigests") or [])

    def _tag_back(self, plan: PullPlan) -> None:
        if plan.pinned_ref is None or plan.ref.is_digest:
            return
        pinned = self.port.image_inspect(plan.pinned_ref)
        current = self.port.image_inspect(plan.ref.original)
        if pinned and current and pinned.get("Id") == current.get("Id"):
            return
        self.port.tag_image(plan.pinned_ref, plan.ref.original)

    def _outcome(self, plan: PullPlan, *, pulled: bool) -> PulledImage:
        local = self.port.image_inspect(plan.pinned_ref or plan.ref.original) or {}
        resolution = plan.resolution
        prompted = plan.credentials.password if plan.credentials and plan.credentials.source == "prompt" else None
        return PulledImage(ref=plan.ref.original, digest=resolution.digest if resolution else None,
                           platform=(resolution.platform if resolution else None) or _platform_of(local),
                           pulled=pulled, image_id=local.get("Id"), prompted_key=prompted)

    # --- the pull ------------------------------------------------------------------------------------------------

    def _pull(self, plan: PullPlan, reference: str, platform: str | None, events: EventSink,
              cancel: CancelToken) -> None:
        auth = plan.credentials.auth_config() if plan.credentials and plan.credentials.source != "docker-config" \
            else None
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(PULL_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=1, max=8),
            retry=tenacity.retry_if_exception(_is_transient),
            sleep=lambda seconds: cancel.wait(seconds, self.clock),
            reraise=True,
        )
        self._pull_started = False
        try:
            for returned in range(ENGINE_RETURNS + 1):  # bounded: each round is one engine restart ridden out
                try:
                    retrying(self._pull_once, plan, reference, platform, auth, events, cancel)
                    break
                except DockerUnavailable:
                    if not self._pull_started or returned == ENGINE_RETURNS:
                        raise  # an engine that was never there is preflight's business: exit 3 at once
                    self._await_engine(plan.ref.original, events, cancel)
        except RegistryAuthFailed as exc:
            if plan.credentials is None:
                raise RegistryAuthFailed(f"{exc.message}", remedy=missing_login_hint(plan.ref.registry),
                                         details=exc.details) from None
            raise

    def _pull_once(self, plan: PullPlan, reference: str, platform: str | None, auth: Mapping[str, str] | None,
                   events: EventSink, cancel: CancelToken) -> None:
        stream = self.port.pull_stream(plan.ref.engine_repository, reference, auth=auth, platform=platform)
        self._pull_started = True
        watchdog = PullWatchdog(self.clock, stall_timeout=self.settings.pull_stall_timeout,
                                quiet_timeout=self.settings.pull_quiet_timeout,
                                max_timeout=self.settings.pull_max_timeout)
        try:
            WatchedPull(stream, watchdog, plan.ref.original, events, cancel, self.clock).run()
        except DownloadFailed as exc:
            if exc.details.get("transient") and not self._engine_answers():
                raise self._engine_gone(plan.ref.original) from None  # the stream broke because the engine went
            raise
        pulled = f"{plan.ref.engine_repository}@{reference}" if reference.startswith("sha256:") \
            else f"{plan.ref.engine_repository}:{reference}"
        if self.port.image_inspect(pulled) is None:  # DockerUnavailable here: the engine went as the stream ended
            raise DownloadFailed(f"The pull of {plan.ref.original} ended before the image was complete",
                                 remedy="run the command again: the engine keeps finished layers",
                                 details={"image": plan.ref.original, "transient": True})

    def _engine_answers(self) -> bool:
        try:
            self.port.ping()
        except DockerUnavailable:
            return False
        return True

    @staticmethod
    def _engine_gone(subject: str) -> DockerUnavailable:
        return DockerUnavailable(f"The Docker engine went away while pulling {subject}",
                                 details={"image": subject, "mid_pull": True})

    def _await_engine(self, subject: str, events: EventSink, cancel: CancelToken) -> None:
        """Wait (bounded: ENGINE_RETURN_WAIT_S) for an engine that went away mid-pull; the pull is then re-issued
        and the engine skips the layers it already holds. Still gone → DockerUnavailable (exit 3)."""
        events(Warning(f"The Docker engine stopped answering while pulling {subject}; waiting up to "
                       f"{ENGINE_RETURN_WAIT_S:.0f} s for it to come back (finished layers are kept)."))
        deadline = self.clock.monotonic() + ENGINE_RETURN_WAIT_S
        for _ in range(int(ENGINE_RETURN_WAIT_S / ENGINE_POLL_S) + 1):  # bounded in count and in time
            cancel.raise_if_cancelled()
            if self._engine_answers():
                events(Info(f"The Docker engine is back; resuming the pull of {subject}."))
                return
            left = deadline - self.clock.monotonic()
            if left <= 0:
                break
            cancel.wait(min(ENGINE_POLL_S, left), self.clock)
        cancel.raise_if_cancelled()
        raise DockerUnavailable(f"The Docker engine went away while pulling {subject} and did not come back within "
                                f"{ENGINE_RETURN_WAIT_S:.0f} s; nothing was tagged",
                                details={"image": subject, "waited_s": ENGINE_RETURN_WAIT_S})


class WatchedPull:
    """One pull stream, consumed in this thread and watched by a second one that aborts it on a verdict."""

    def __init__(self, stream: PullStream, watchdog: PullWatchdog, subject: str, events: EventSink,
                 cancel: CancelToken, clock: Clock) -> None:
        self.stream = stream
        self.watchdog = watchdog
        self.subject = subject
        self.events = events
        self.cancel = cancel
        self.clock = clock
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._verdict: Verdict | None = None
        self._cancelled = False
        self._last_emit = float("-inf")

    def run(self) -> None:
        backstop = max(self.watchdog.stall_timeout, self.watchdog.quiet_timeout) + READ_TIMEOUT_MARGIN_S
        self.stream.set_read_timeout(backstop)  # if the watch thread ever failed, a silent socket still ends
        monitor = threading.Thread(target=self._monitor, name="nemoclaw-pull-watchdog", daemon=True)
        monitor.start()
        try:
            self._consume()
        except DownloadFailed as exc:
            if self._verdict is None and not self._cancelled:
                raise _with_layers(exc, self.watchdog) from None
        finally:
            self._finished.set()
            monitor.join(timeout=2 * MONITOR_TICK_S + 1)
            close = getattr(self.stream, "close", None)
            if callable(close):
                close()
        self._raise_outcome()

    def _consume(self) -> None:
        for event in self._events():
            with self._lock:
                self.watchdog.observe(event)
                verdict = self.watchdog.verdict()
            if verdict is not None:
                self._stop(verdict)
                return
            if self.cancel.cancelled:
                self._stop(None, cancelled=True)
                return
            self._maybe_emit()
        if self._verdict is None and not self._cancelled:  # an aborted pull reports its verdict, not a last bar
            self._emit()

    def _events(self) -> Iterator[Mapping[str, Any]]:
        for event in self.stream:
            if event.get("error") or event.get("errorDetail"):  # errors arrive as events, not exceptions
                detail = event.get("errorDetail") or {}
                text = str(event.get("error") or detail.get("message") or "unknown error")
                raise pull_error(self.subject, text, status=detail.get("code"))
            yield event

    def _monitor(self) -> None:
        limit = int((self.watchdog.max_timeout + self.watchdog.quiet_timeout) / MONITOR_TICK_S) + 10
        for _ in range(limit):  # bounded: the overall cap ends every pull long before
            with self._lock:
                wait = min(MONITOR_TICK_S, max(0.01, self.watchdog.seconds_left()))
            if self._finished.wait(wait):
                return
            if self.cancel.cancelled:
                self._stop(None, cancelled=True)
                return
            with self._lock:
                verdict = self.watchdog.verdict()
            if verdict is not None:
                self._stop(verdict)
                return

    def _stop(self, verdict: Verdict | None, *, cancelled: bool = False) -> None:
        with self._lock:
            if self._verdict is None and not self._cancelled:
                self._verdict, self._cancelled = verdict, cancelled
        self.stream.abort()

    def _raise_outcome(self) -> None:
        if self._cancelled:
            raise Cancelled(f"Pulling {self.subject} was cancelled; nothing was tagged")
        verdict = self._verdict
        if verdict is None and getattr(self.stream, "timed_out", False):
            verdict = self.watchdog.verdict() or Verdict("stalled", self.watchdog.window(), 0.0, "bytes",
                                                         self.watchdog.stuck_layers())
        if verdict is not None:
            raise _verdict_error(self.subject, verdict)

    def _maybe_emit(self) -> None:
        now = self.clock.monotonic()
        if now - self._last_emit >= PROGRESS_EVERY_S:
            self._last_emit = now
            self._emit()

    def _emit(self) -> None:
        with self._lock:
            snap = self.watchdog.progress()
        if snap.layers_total == 0:
            return
        self.events(Progress(task="image", subject=self.subject, done_bytes=snap.done_bytes,
                             total_bytes=snap.total_bytes, items_done=snap.layers_done,
                             items_total=snap.layers_total, rate_bytes_per_s=snap.rate_bytes_per_s))


# --- errors ---------------------------------------------------------------------------------------------------------


def _verdict_error(subject: str, verdict: Verdict) -> DownloadFailed:
    details = {"image": subject, "window_s": verdict.window_s, "idle_s": round(verdict.idle_s, 1),
               "phase": verdict.phase, "layers": list(verdict.layers)}
    stuck = describe_stuck(verdict.layers)
    if verdict.kind == "timed-out":
        return PullTimedOut(
            f"Pulling {subject} exceeded the {verdict.window_s:.0f} s safety budget ({stuck}); nothing was tagged",
            remedy="raise NEMOCLAW_PULL_MAX_TIMEOUT for very slow links, or pre-pull with `nemoclaw-runtime pull`",
            details=details)
    if verdict.phase == "quiet":
        return PullStalled(
            f"Pulling {subject} stalled: nothing moved for {verdict.window_s:.0f} s after the download "
            f"({stuck}); nothing was tagged",
            remedy="check the engine (`docker info`, disk space), or raise NEMOCLAW_PULL_QUIET_TIMEOUT; "
                   "run again: the engine keeps finished layers",
            details=details)
    return PullStalled(
        f"Pulling {subject} stalled: no bytes for {verdict.window_s:.0f} s ({stuck}); nothing was tagged",
        remedy="check the network and the registry, or raise NEMOCLAW_PULL_STALL_TIMEOUT for a slow link; "
               "run again: the engine keeps finished layers",
        details=details)


def _with_layers(exc: DownloadFailed, watchdog: PullWatchdog) -> DownloadFailed:
    if not watchdog.layers or "layers" in exc.details:
        return exc
    exc.details["layers"] = list(watchdog.stuck_layers())
    return exc


def _refused(parsed: ImageRef, credentials: RegistryCredentials | None) -> RegistryAuthFailed:
    source = credentials.source if credentials else "no credentials"
    remedy = (f"log in again: docker login {parsed.registry}" if source == "docker-config"
              else missing_login_hint(parsed.registry))
    return RegistryAuthFailed(f"The registry {parsed.registry} refused access to {parsed.original} "
                              f"(credentials from {source})", remedy=remedy,
                              details={"registry": parsed.registry, "source": source})


def data_root_free_bytes(path: str) -> int | None:
    """Free bytes on the file system holding ``path`` (the engine's data root); None when it cannot be read here."""
    import psutil

    try:
        return int(psutil.disk_usage(path).free)
    except OSError:
        return None


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DownloadFailed) and bool(exc.details.get("transient")) \
        and not isinstance(exc, (PullStalled, PullTimedOut))


def _parse(ref: str) -> ImageRef:
    if not ref or not ref.strip() or any(ch.isspace() for ch in ref.strip()):
        raise InvalidInput(f"Invalid image reference {ref!r}", remedy="pass an image such as nvcr.io/nvidia/vllm:TAG")
    return parse_image_ref(ref)


def _platform_of(inspected: Mapping[str, Any]) -> str | None:
    os_name, arch = inspected.get("Os"), inspected.get("Architecture")
    return f"{os_name}/{arch}" if os_name and arch else None


# --- the library entry points the CLI uses --------------------------------------------------------------------------


def pull_image(ref: str, settings: Settings, *, port: DockerPort, events: EventSink = discard,
               cancel: CancelToken | None = None, arch: str | None = None, prompt_secret: PromptSecret | None = None,
               save_login: bool = False, clock: Clock | None = None) -> PulledImage:
    """Pull ``ref`` through ``port`` pinned to this host's platform (the caller opens and closes the engine)."""
    store = DockerImageStore(port, settings, clock=clock, arch=arch, prompt_secret=prompt_secret,
                             save_login=save_login)
    return store.ensure_image(ref, events=events, cancel=cancel)


__all__ = ["DockerImageStore", "PullPlan", "WatchedPull", "data_root_free_bytes", "pull_image"]
