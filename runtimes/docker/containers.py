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
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.checks import MAX_LOG_TAIL, check_container_name, check_int
from nemoclaw_runtime.kernel.clock import Clock, SystemClock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    ContainerExited,
    InvalidInput,
    NameTaken,
    NemoclawError,
    NoSuchContainer,
    NoSuitableGpu,
)
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.threads import interrupts_deferred
from nemoclaw_runtime.runtimes.docker.locks import DEFAULT_WAIT_S, name_lock
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, ContainerState, DockerPort, RunOutcome
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_GPU_MEMORY_UTILIZATION,
    LABEL_GPUS,
    LABEL_GROUP,
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
    LABEL_WEIGHTS_REVISION,
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


def _left_behind(name: str, why: str) -> Cancelled:
    """Cancelled, saying exactly what was left and how to remove it."""
    return Cancelled(f"Cancelled; the container {name} could not be removed and is still there ({why})",
                     remedy=f"remove it with `nemoclaw-runtime stop {name}` (or `docker rm -f {name}`)",
                     details={"left_behind": [name]})


# --- the GPU runtime -------------------------------------------------------------------------------------------

#: Where the NVIDIA container toolkit writes its CDI specs (``nvidia-ctk cdi generate``), unless docker info says.
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
GPU_RUNTIME_REMEDY = ("install the NVIDIA container toolkit (nvidia-container-toolkit), run `sudo nvidia-ctk runtime "
                      "configure --runtime=docker` and restart Docker (`sudo systemctl restart docker`); or pass "
                      "--gpus none to start without GPUs")


def gpu_runtime_missing(info: Mapping[str, Any], *, local_engine: bool = True) -> bool:
    """True when ``docker info`` shows an engine that cannot give containers GPUs: no ``nvidia`` runtime, no NVIDIA
    CDI device, and (for an engine on this machine) no NVIDIA CDI spec and no ``nvidia-container-runtime-hook``.
    An answer without ``Runtimes`` (an engine we cannot read) is not judged: False."""
    runtimes = info.get("Runtimes")
    if not isinstance(runtimes, Mapping):
        return False
    if any("nvidia" in str(name).lower() for name in runtimes):
        return False
    devices = info.get("DiscoveredDevices") or []
    if any("nvidia.com/gpu" in str((d or {}).get("ID", "")) for d in devices if isinstance(d, Mapping)):
        return False
    if not local_engine:  # its spec dirs and hooks are on another machine; CDISpecDirs is listed by default
        return True
    spec_dirs = info.get("CDISpecDirs") or CDI_SPEC_DIRS
    for directory in spec_dirs:
        with suppress(OSError):
            if any(p.name.startswith("nvidia") for p in Path(str(directory)).iterdir()):
                return False
    return shutil.which("nvidia-container-runtime-hook") is None


def check_gpu_runtime(docker: DockerPort, *, local_engine: bool = True) -> None:
    """Refuse (exit 3, before any pull) a GPU request on an engine without the NVIDIA container toolkit."""
    if gpu_runtime_missing(docker.engine_info(), local_engine=local_engine):
        raise NoSuitableGpu(
            "The Docker engine cannot give containers GPUs: the NVIDIA container toolkit is not installed or not "
            "configured (docker info lists no nvidia runtime and no NVIDIA CDI device)",
            remedy=GPU_RUNTIME_REMEDY, cause="gpu-runtime-missing")


def engine_is_local(docker_host: str | None) -> bool:
    """True when ``DOCKER_HOST`` names an engine on this machine (unset, a unix socket, or loopback)."""
    host = (docker_host or "").strip().lower()
    return not host or host.startswith(("unix://", "fd://", "npipe://")) or any(
        f"://{loopback}" in host for loopback in ("127.0.0.1", "localhost", "[::1]"))


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
        except BaseException as exc:  # Ctrl-C mid-create: the engine may have made it though we never got its id
            left = self._discard_created(spec.name, dict(stamped.labels).get(LABEL_SPEC_HASH))
            if left is not None and isinstance(exc, KeyboardInterrupt):
                raise _left_behind(spec.name, left) from exc
            raise
        try:
            self.docker.start_container(container_id)
            return self._inspect_started(container_id, spec.name)
        except BaseException as exc:
            left = self._discard(container_id)  # nothing half-started is left behind (Ctrl-C included)
            if left is not None and isinstance(exc, KeyboardInterrupt):
                raise _left_behind(spec.name, left) from exc
            raise

    def _discard_created(self, name: str, spec_hash: str | None) -> str | None:
        """After an interrupted or failed create: remove the container of that name when it is the one we were
        creating (ours, same spec hash). None when nothing is left, else why it could not be removed."""
        with interrupts_deferred():
            try:
                info = self._by_name(name)
            except NemoclawError as exc:
                return exc.message
            if info is None or not is_managed(info) or info.labels.get(LABEL_SPEC_HASH) != spec_hash:
                return None
        return self._discard(info.id)

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

    def _discard(self, container_id: str) -> str | None:
        """Force-remove a container we just created, a second Ctrl-C deferred until it is done. None when it is
        gone, else why it could not be removed."""
        with interrupts_deferred():
            try:
                self.docker.remove_container(container_id, force=True)
            except NoSuchContainer:
                return None
            except NemoclawError as exc:
                return exc.message
        return None

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
        """Our container called exactly ``name`` (never an id or an id prefix, which the engine would also
        resolve); ``NoSuchContainer`` when absent, foreign, or of another runtime."""
        info = self._by_name(check_container_name(name, "NAME"))
        if info is not None and not is_managed(info):
            raise no_such_container([], [name], runtime)
        if info is None or (runtime and info.labels.get(LABEL_RUNTIME) != runtime):
            raise no_such_container([name], [], runtime)
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


def no_such_container(missing: Sequence[str], foreign: Sequence[str], runtime: str | None, *,
                      suffix: str = "", untouched: bool = True) -> NoSuchContainer:
    """The one ``NoSuchContainer`` for names that are absent (``missing``) or not ours (``foreign``); ``untouched``
    says a foreign one was left alone (stop, logs), not only looked at (status)."""
    kind = f"managed {runtime} container" if runtime else "managed container"
    parts = []
    if missing:
        parts.append(f"no {kind} named {', '.join(missing)}")
    if foreign:
        verb = "was" if len(foreign) == 1 else "were"
        noun = "container" if len(foreign) == 1 else "containers"
        parts.append(f"{noun} {', '.join(foreign)} {verb} not created by nemoclaw-runtime"
                     + (" (left untouched)" if untouched else ""))
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
    gpus: tuple[int, ...] | None = None  # the GPU indices it computes on; None when its labels do not say
    gpu_memory_utilization: float | None = None
    weights_revision: str | None = None  # the pinned Hugging Face commit (vLLM), when one is pinned
    group: str | None = None  # the deployment over several nodes it belongs to (``up --nodes``)
    nodes: tuple[Mapping[str, Any], ...] | None = None  # a deployment's entry: every node and its state

    @classmethod
    def from_info(cls, info: ContainerInfo) -> ManagedContainerView:
        labels = info.labels
        return cls(name=info.name.lstrip("/"), id=info.id, runtime=labels.get(LABEL_RUNTIME),
                   model=labels.get(LABEL_MODEL), served_model=labels.get(LABEL_SERVED_MODEL),
                   state=info.state.status, exit_code=None if info.state.running else info.state.exit_code,
                   health=info.state.health, restart_count=info.state.restart_count,
                   base_url=base_url(labels.get(LABEL_RUNTIME), labels.get(LABEL_HOST), labels.get(LABEL_PORT)),
                   image=labels.get(LABEL_IMAGE) or info.image, image_digest=labels.get(LABEL_IMAGE_DIGEST),
                   created=info.created, version=labels.get(LABEL_VERSION), gpus=gpu_indices_label(labels),
                   gpu_memory_utilization=utilization_label(labels),
                   weights_revision=labels.get(LABEL_WEIGHTS_REVISION), group=labels.get(LABEL_GROUP))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["nodes"] = [dict(node) for node in self.nodes] if self.nodes is not None else None
        return data


def gpu_indices_label(labels: Mapping[str, str]) -> tuple[int, ...] | None:
    """The GPU indices ``LABEL_GPUS`` records (``"0,3"``; ``""`` for none); ``None`` when absent or unreadable."""
    raw = labels.get(LABEL_GPUS)
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not all(p.isdigit() and len(p) <= 4 for p in parts):
        return None
    return tuple(sorted({int(p) for p in parts}))


def utilization_label(labels: Mapping[str, str]) -> float | None:
    """``LABEL_GPU_MEMORY_UTILIZATION`` as a fraction in (0, 1], or ``None`` when absent or unreadable."""
    try:
        value = float(labels.get(LABEL_GPU_MEMORY_UTILIZATION, ""))
    except ValueError:
        return None
    return value if 0 < value <= 1 else None


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
        info = manager._by_name(check_container_name(name, "NAME"))  # exact names only: never an id prefix
        if info is not None and not is_managed(info):
            foreign.append(name)
        elif info is None or (runtime and info.labels.get(LABEL_RUNTIME) != runtime):
            missing.append(name)
        else:
            found.append(info)
    if missing or foreign:
        raise no_such_container(missing, foreign, runtime, suffix="; nothing was stopped" if len(names) > 1 else "")
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
    tail = check_int(tail, "--tail", low=0, high=MAX_LOG_TAIL, remedy="pass --tail 80, for example")
    info = DockerContainerManager(docker, settings).require_managed(name)
    return docker.follow_logs(info.id, tail=tail) if follow else iter(docker.container_logs(info.id, tail=tail))


__all__ = [
    "DockerContainerManager", "ManagedContainerView", "base_url", "check_gpu_runtime", "engine_is_local",
    "gpu_indices_label", "gpu_runtime_missing", "is_managed", "list_managed",
    "managed_labels", "managed_logs", "no_such_container", "stop_managed", "utilization_label",
]
