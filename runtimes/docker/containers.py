"""Managed containers: ownership labels, idempotent runs under a per-name lock, and the ops functions.

Ownership is decided by one label, ``io.nemoclaw.runtime.managed=true``, stamped with the others (spec hash, tool
version, image digest, host and port) when a container is created. Everything that lists, stops, removes or reads
logs selects by that label: a container we did not create is never touched — when it holds a name we need, the
answer is :class:`NameTaken` (exit 3) naming it; when an ops command names it, :class:`NoSuchContainer` (exit 6).

``DockerContainerManager`` implements the ``ContainerManager`` contract of ``runtimes/docker/port.py`` on top of a
``DockerPort``. ``list_managed`` / ``stop_managed`` / ``managed_logs`` are the library side of ``ps`` / ``stop`` /
``logs``; they work on the ``DockerPort`` they are given (``runtimes/wiring.py`` opens the engine, never this module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import Any, Literal

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.clock import Clock, SystemClock
from nemoclaw_runtime.kernel.errors import ContainerExited, InvalidInput, NameTaken, NemoclawError, NoSuchContainer
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.locks import DEFAULT_WAIT_S, name_lock
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, ContainerState, DockerPort, RunOutcome
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_HOST,
    LABEL_IMAGE,
    LABEL_IMAGE_DIGEST,
    LABEL_MANAGED,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_RUNTIME,
    LABEL_SERVED_MODEL,
    LABEL_SPEC_HASH,
    LABEL_VERSION,
    ContainerSpec,
    image_repository,
    url_host,
)

STOP_TIMEOUT_S = 10.0
#: Labels only this module may set; a driver that tries is a bug (exit 2), not something to overwrite silently.
RESERVED_LABELS = frozenset({LABEL_MANAGED, LABEL_SPEC_HASH, LABEL_VERSION})
#: States a stopped container with the right spec can simply be started from; others are replaced.
_STARTABLE = frozenset({"created", "exited"})

Action = Literal["started", "reused", "replaced", "restarted"]


def is_managed(info: ContainerInfo) -> bool:
    return info.labels.get(LABEL_MANAGED) == "true"


# --- labels ----------------------------------------------------------------------------------------------------


def managed_labels(spec: ContainerSpec, *, image_digest: str | None = None) -> tuple[tuple[str, str], ...]:
    """The driver's labels plus ours. Raises ``InvalidInput`` when the driver's labels claim a reserved key,
    contradict a stamped one, or would carry a secret env value."""
    driver = dict(spec.labels)
    claimed = sorted(RESERVED_LABELS & driver.keys())
    if claimed:
        raise InvalidInput(f"Container labels may not set {', '.join(claimed)}: nemoclaw-runtime stamps them itself",
                           remedy="remove these labels from the container spec")
    stamped = {LABEL_MANAGED: "true", LABEL_RUNTIME: spec.runtime, LABEL_IMAGE: spec.image,
               LABEL_SPEC_HASH: spec.spec_hash(), LABEL_VERSION: __version__}
    digest = spec.image_digest or image_digest
    if digest:
        stamped[LABEL_IMAGE_DIGEST] = digest
    if spec.ports:
        stamped[LABEL_HOST] = spec.ports[0].host_ip
        stamped[LABEL_PORT] = str(spec.ports[0].host_port)
    clashing = sorted(k for k in stamped if k in driver and driver[k] != stamped[k])
    if clashing:
        raise InvalidInput(f"Container labels contradict the spec: {', '.join(clashing)}",
                           remedy="let nemoclaw-runtime stamp these labels, or make them match the spec")
    labels = {**driver, **stamped}
    _refuse_secret_labels(spec, labels)
    return tuple(sorted(labels.items()))


def _refuse_secret_labels(spec: ContainerSpec, labels: dict[str, str]) -> None:
    """Labels are visible to anyone who can run ``docker inspect``: a secret value must never land in one."""
    for env_name, value in spec.env:
        if not isinstance(value, Secret) or not value.reveal():
            continue
        secret = value.reveal()
        leaking = sorted(k for k, v in labels.items() if secret in k or secret in v)
        if leaking:  # name the label and the variable, never the value
            raise InvalidInput(f"Container label {leaking[0]} would contain the value of {env_name}",
                               remedy="never put tokens in labels; pass them only as environment values")


def _digest_from_inspect(attrs: Any, image: str) -> str | None:
    """The registry digest of a local image (``RepoDigests``), preferring the spec's own repository."""
    repo_digests = [str(d) for d in (attrs or {}).get("RepoDigests") or [] if "@" in str(d)]
    preferred = [d for d in repo_digests if d.split("@", 1)[0] == image_repository(image)]
    candidates = preferred or repo_digests
    return candidates[0].split("@", 1)[1] if candidates else None


# --- the manager -----------------------------------------------------------------------------------------------


class DockerContainerManager:
    """``ContainerManager`` over a ``DockerPort``: labels, idempotence, per-name locks."""

    def __init__(self, docker: DockerPort, settings: Settings, clock: Clock | None = None, *,
                 lock_wait_s: float = DEFAULT_WAIT_S, stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        self.docker = docker
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.lock_wait_s = lock_wait_s
        self.stop_timeout_s = stop_timeout_s

    def lock(self, name: str, *, events: EventSink = discard) -> AbstractContextManager[None]:
        """The per-name inter-process lock (re-entrant in one thread); waits ``lock_wait_s`` at most."""
        return name_lock(self.settings.state_dir, name, wait_s=self.lock_wait_s, events=events, clock=self.clock)

    # --- run -------------------------------------------------------------------------------------------------------

    def ensure_running(self, spec: ContainerSpec, *, events: EventSink = discard) -> RunOutcome:
        managed_labels(spec, image_digest=None)  # refuse bad driver labels before touching anything
        events(PhaseChanged("start", f"Starting container {spec.name}"))
        with self.lock(spec.name, events=events):
            existing = self._by_name(spec.name)
            if existing is None:
                events(Info(f"Creating container {spec.name}"))
                return RunOutcome(self._create_and_start(spec), "started")
            self._refuse_foreign(existing, spec.name)
            same_spec = existing.labels.get(LABEL_SPEC_HASH) == spec.spec_hash()
            if same_spec and existing.state.running:
                events(Info(f"Reusing running container {spec.name} (same spec)"))
                return RunOutcome(existing, "reused")
            # A stopped container with secrets is recreated: the spec hash leaves secret values out, so restarting
            # it would bring back the key that made it fail (an NGC "Authentication Error", say).
            if same_spec and existing.state.status in _STARTABLE and not spec.secret_env_names():
                events(Info(f"Restarting stopped container {spec.name} (same spec)"))
                return RunOutcome(self._start_existing(existing), "restarted")
            why = "spec changed" if not same_spec else f"it is {existing.state.status}"
            events(Info(f"Replacing container {spec.name} ({why})"))
            self._stop_and_remove(existing)
            return RunOutcome(self._create_and_start(spec), "replaced")

    def _create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        digest = None if spec.image_digest else _digest_from_inspect(self.docker.image_inspect(spec.image_ref),
                                                                     spec.image)
        stamped = dataclasses.replace(spec, labels=managed_labels(spec, image_digest=digest))
        try:
            container_id = self.docker.create_container(stamped)
        except NameTaken:
            holder = self._by_name(spec.name)  # someone created it between our look and our create
            if holder is not None:
                self._refuse_foreign(holder, spec.name)
            raise
        try:
            self.docker.start_container(container_id)
            return self._inspect_started(container_id, spec.name)
        except BaseException:
            self._discard(container_id)  # nothing half-started is left behind (Ctrl-C included)
            raise

    def _by_name(self, name: str) -> ContainerInfo | None:
        """The container called exactly ``name``: the engine also resolves id prefixes, which hold no name."""
        info = self.docker.inspect_container(name)
        return info if info is not None and info.name.lstrip("/") == name else None

    def _start_existing(self, info: ContainerInfo) -> ContainerInfo:
        self.docker.start_container(info.id)
        return self._inspect_started(info.id, info.name)

    def _inspect_started(self, container_id: str, name: str) -> ContainerInfo:
        info = self.docker.inspect_container(container_id)
        if info is None:
            raise ContainerExited(f"Container {name} disappeared right after it was started",
                                  remedy="check `docker events` for who removed it, then run the command again")
        return info

    def _discard(self, container_id: str) -> None:
        with suppress(NemoclawError):
            self.docker.remove_container(container_id, force=True)

    def _stop_and_remove(self, info: ContainerInfo) -> None:
        with suppress(NoSuchContainer):  # already gone is what we wanted
            self.docker.stop_container(info.id, timeout=self.stop_timeout_s)
            self.docker.remove_container(info.id, force=True)

    @staticmethod
    def _refuse_foreign(info: ContainerInfo, name: str) -> None:
        if is_managed(info):
            return
        raise NameTaken(
            f"Container name {name} is taken by a container nemoclaw-runtime did not create "
            f"(id {info.id[:12]}, image {info.image}, {info.state.status})",
            remedy=f"check that it is not needed (docker inspect {name}), then free the name with "
                   f"`docker rm -f {name}`; or choose another name with --name",
            details={"name": name, "container_id": info.id, "image": info.image},
        )

    # --- queries and stop -----------------------------------------------------------------------------------------

    def get(self, name: str) -> ContainerInfo | None:
        info = self._by_name(name)
        if info is not None:
            self._refuse_foreign(info, name)
        return info

    def require_managed(self, name: str, *, runtime: str | None = None) -> ContainerInfo:
        """Our container ``name`` (or id); ``NoSuchContainer`` when absent, foreign, or of another runtime."""
        info = self.docker.inspect_container(name)
        if info is not None and not is_managed(info):
            raise _no_such([], [name], runtime)
        if info is None or (runtime and info.labels.get(LABEL_RUNTIME) != runtime):
            raise _no_such([name], [], runtime)
        return info

    def list_managed(self, runtime: str | None = None) -> list[ContainerInfo]:
        selector: dict[str, str | None] = {LABEL_MANAGED: "true"}
        if runtime:
            selector[LABEL_RUNTIME] = runtime
        found = [c for c in self.docker.list_containers(selector, all=True) if is_managed(c)]
        return sorted(found, key=lambda c: c.name)

    def state(self, name: str) -> ContainerState:
        return self.require_managed(name).state

    def logs(self, name: str, *, tail: int = 80) -> list[str]:
        return self.docker.container_logs(self.require_managed(name).id, tail=tail)

    def stop(self, name: str, *, remove: bool = True) -> None:
        info = self.require_managed(name)
        if remove:
            self._stop_and_remove(info)
        else:
            with suppress(NoSuchContainer):
                self.docker.stop_container(info.id, timeout=self.stop_timeout_s)


def _no_such(missing: Sequence[str], foreign: Sequence[str], runtime: str | None, *,
             suffix: str = "") -> NoSuchContainer:
    kind = f"managed {runtime} container" if runtime else "managed container"
    parts = []
    if missing:
        parts.append(f"no {kind} named {', '.join(missing)}")
    if foreign:
        verb = "was" if len(foreign) == 1 else "were"
        noun = "container" if len(foreign) == 1 else "containers"
        parts.append(f"{noun} {', '.join(foreign)} {verb} not created by nemoclaw-runtime (left untouched)")
    message = "; ".join(parts) + suffix
    return NoSuchContainer(message[0].upper() + message[1:],
                           remedy="run `nemoclaw-runtime ps` to see the containers nemoclaw-runtime manages",
                           details={"missing": list(missing), "foreign": list(foreign)})


# --- views and the ops functions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagedContainerView:
    """One managed container as ``ps`` shows it."""

    name: str
    id: str
    runtime: str | None
    model: str | None
    served_model: str | None
    state: str
    exit_code: int | None
    health: str | None
    restart_count: int
    base_url: str | None
    image: str | None
    image_digest: str | None
    created: str | None
    version: str | None

    @classmethod
    def from_info(cls, info: ContainerInfo) -> ManagedContainerView:
        labels = info.labels
        return cls(name=info.name.lstrip("/"), id=info.id, runtime=labels.get(LABEL_RUNTIME),
                   model=labels.get(LABEL_MODEL), served_model=labels.get(LABEL_SERVED_MODEL),
                   state=info.state.status, exit_code=None if info.state.running else info.state.exit_code,
                   health=info.state.health, restart_count=info.state.restart_count,
                   base_url=base_url(labels.get(LABEL_RUNTIME), labels.get(LABEL_HOST), labels.get(LABEL_PORT)),
                   image=labels.get(LABEL_IMAGE) or info.image, image_digest=labels.get(LABEL_IMAGE_DIGEST),
                   created=info.created, version=labels.get(LABEL_VERSION))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def base_url(runtime: str | None, host: str | None, port: str | None) -> str | None:
    """Where clients reach the server: the OpenAI-compatible ``/v1`` base, for every runtime (Ollama serves one
    too), the same value ``up`` returns."""
    if not port:
        return None
    return f"http://{url_host(host)}:{port}/v1"


def list_managed(settings: Settings, *, docker: DockerPort,
                 runtime: str | None = None) -> list[ManagedContainerView]:
    """Every container nemoclaw-runtime manages (optionally of one runtime), sorted by name."""
    return [ManagedContainerView.from_info(c) for c in DockerContainerManager(docker, settings).list_managed(runtime)]


def stop_managed(settings: Settings, names: Iterable[str] = (), *, docker: DockerPort, all: bool = False,
                 runtime: str | None = None, before_stop: Callable[[ContainerInfo], None] | None = None,
                 events: EventSink = discard) -> list[str]:
    """Stop and remove managed containers (images and weights stay); returns the names stopped.

    Every name is checked first: if any is unknown or not ours, ``NoSuchContainer`` names them all and nothing is
    touched. ``before_stop`` runs for each container before it stops (the Ollama driver unloads models there); its
    failure is reported as a warning and the stop goes on.
    """
    wanted = list(dict.fromkeys(names))
    if all == bool(wanted):
        raise InvalidInput("Name the containers to stop, or pass --all (not both)",
                           remedy="run `nemoclaw-runtime stop NAME…` or `nemoclaw-runtime stop --all`")
    manager = DockerContainerManager(docker, settings)
    targets = manager.list_managed(runtime) if all else _resolve_all(manager, wanted, runtime)
    stopped = []
    for info in targets:
        _run_before_stop(before_stop, info, events)
        manager._stop_and_remove(info)
        name = info.name.lstrip("/")
        events(Info(f"Stopped and removed {name}"))
        stopped.append(name)
    return stopped


def _resolve_all(manager: DockerContainerManager, names: Sequence[str], runtime: str | None) -> list[ContainerInfo]:
    found: list[ContainerInfo] = []
    missing: list[str] = []
    foreign: list[str] = []
    for name in names:
        info = manager.docker.inspect_container(name)
        if info is not None and not is_managed(info):
            foreign.append(name)
        elif info is None or (runtime and info.labels.get(LABEL_RUNTIME) != runtime):
            missing.append(name)
        else:
            found.append(info)
    if missing or foreign:
        raise _no_such(missing, foreign, runtime, suffix="; nothing was stopped" if len(names) > 1 else "")
    return found


def _run_before_stop(hook: Callable[[ContainerInfo], None] | None, info: ContainerInfo, events: EventSink) -> None:
    if hook is None:
        return
    try:
        hook(info)
    except Exception as exc:  # noqa: BLE001 - a failed courtesy step (unloading models) must not block the stop
        events(Warning(f"Before stopping {info.name}: {type(exc).__name__}: {exc}"))


def managed_logs(settings: Settings, name: str, *, docker: DockerPort, tail: int = 80,
                 follow: bool = False) -> Iterator[str]:
    """The last ``tail`` log lines (stdout and stderr) of our container ``name``; with ``follow``, then every new
    line until the container stops. Checks ownership before returning (``NoSuchContainer`` otherwise)."""
    if tail < 0:
        raise InvalidInput(f"Invalid tail {tail}: must be 0 or more", remedy="pass --tail 80, for example")
    info = DockerContainerManager(docker, settings).require_managed(name)
    return docker.follow_logs(info.id, tail=tail) if follow else iter(docker.container_logs(info.id, tail=tail))


__all__ = [
    "DockerContainerManager", "ManagedContainerView", "base_url", "is_managed", "list_managed", "managed_labels",
    "managed_logs", "stop_managed",
]
