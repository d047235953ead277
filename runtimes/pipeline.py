"""``plan`` and ``up``: one pipeline, three drivers.

preflight (driver plan: slug, extra args, GPU, token) → engine reachable → port (free / ours / adopt / refuse) →
lock → reuse fast path → hub access check → disk → weights → digest-pinned image → container → readiness →
validation. Every side effect lives here; drivers only plan. Ctrl-C or a ``CancelToken`` at any point leaves no
half-started container and releases the lock; a container that fails readiness is stopped but kept for ``logs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.errors import (
    Cancelled,
    InsufficientResources,
    InvalidInput,
    PortInUse,
    RuntimeNotReady,
)
from nemoclaw_runtime.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.runtimes.driver import MAX_CONTEXT_WINDOW, Plan, RuntimeDriver, UpRequest, UpResult
from nemoclaw_runtime.runtimes.spec import LABEL_IMAGE_DIGEST, LABEL_PORT, LABEL_SPEC_HASH, GpuRequest
from nemoclaw_runtime.settings import Settings

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.runtimes.engine import ContainerInfo, ContainerManager, DockerPort, ImageStore

DISK_HEADROOM = 1.05  # weights estimate x this must fit on the cache's filesystem


@dataclasses.dataclass
class Services:
    """The side-effecting collaborators, created once at the edge and handed to the pipeline."""

    settings: Settings
    docker: DockerPort
    images: ImageStore
    containers: ContainerManager
    http: httpx.Client
    clock: Clock
    owned: bool = True

    def close(self) -> None:
        if self.owned:
            self.http.close()
            self.docker.close()


def open_services(settings: Settings, *, clock: Clock | None = None, arch: str | None = None) -> Services:
    import httpx

    from nemoclaw_runtime.runtimes.containers import DockerContainerManager
    from nemoclaw_runtime.runtimes.docker_engine import connect
    from nemoclaw_runtime.runtimes.images import DockerImageStore

    clock = clock or SystemClock()
    docker = connect(settings)
    images = DockerImageStore(docker, settings, clock=clock, arch=arch)
    containers = DockerContainerManager(docker, settings, clock)
    http = httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False)
    return Services(settings, docker, images, containers, http, clock)


def driver_for(runtime: str) -> RuntimeDriver:
    if runtime == "vllm":
        from nemoclaw_runtime.runtimes.vllm import VllmDriver

        return VllmDriver()
    raise InvalidInput(f"Unknown runtime {runtime!r}", remedy="use one of: vllm")


def make_request(runtime: str, *, model: str | None = None, port: int | None = None, gpus: str | GpuRequest = "all",
                 image: str | None = None, name: str | None = None, host: str = "127.0.0.1", prefetch: bool = True,
                 timeout_s: float | None = None, validate: bool = True) -> UpRequest:
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInput(f"Invalid --port {port}: must be between 1 and 65535", remedy="pass a port such as 8000")
    if timeout_s is not None and timeout_s <= 0:
        raise InvalidInput(f"Invalid --timeout {timeout_s}: must be positive", remedy="pass seconds, e.g. 1800")
    gpu_request = gpus if isinstance(gpus, GpuRequest) else GpuRequest.parse(gpus)
    return UpRequest(runtime=runtime, model=model, port=port, gpus=gpu_request, image=image, name=name, host=host,
                     prefetch=prefetch, timeout_s=timeout_s, validate=validate)


# --- plan ----------------------------------------------------------------------------------------------------------


def plan(request: UpRequest, *, settings: Settings | None = None, inventory: GpuInventory | None = None,
         events: EventSink = discard) -> Plan:
    """Everything ``up`` would do, with the preflight checks that need no network and no download."""
    settings = settings if settings is not None else Settings.from_env()
    _warn_settings(settings, events)
    inventory = inventory if inventory is not None else _detect(settings)
    return driver_for(request.runtime).plan(request, settings, inventory)


# --- up ------------------------------------------------------------------------------------------------------------


def up(request: UpRequest, *, settings: Settings | None = None, inventory: GpuInventory | None = None,
       events: EventSink = discard, cancel: CancelToken | None = None, services: Services | None = None) -> UpResult:
    """Bring the requested runtime up and return once it answers (and, unless disabled, passed validation)."""
    settings = settings if settings is not None else Settings.from_env()
    cancel = cancel or CancelToken()
    events(PhaseChanged("preflight", "Checking the request, the GPUs and the engine"))
    the_plan = plan(request, settings=settings, inventory=inventory, events=events)
    svc = services or open_services(settings, arch=_arch(inventory, settings))
    try:
        started = svc.clock.monotonic()
        svc.docker.ping()
        adopted = _check_port(the_plan, svc, events)
        if adopted is not None:
            return adopted
        with svc.containers.lock(the_plan.spec.name):
            result = _up_locked(the_plan, svc, events, cancel)
        return dataclasses.replace(result, elapsed_s=svc.clock.monotonic() - started)
    except KeyboardInterrupt as exc:
        raise Cancelled("Cancelled by Ctrl-C; nothing half-started was left behind") from exc
    finally:
        if services is None:
            svc.close()


def _up_locked(the_plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> UpResult:
    reused = _reuse_if_same(the_plan, svc, events, cancel)
    if reused is not None:
        return reused
    revision = _weights(the_plan, svc, events, cancel)
    cancel.raise_if_cancelled()
    events(PhaseChanged("pull", f"Pulling {the_plan.spec.image} (pinned to this platform's digest)"))
    pulled = svc.images.ensure_image(the_plan.spec.image, events=events, cancel=cancel)
    spec = dataclasses.replace(the_plan.spec, image_digest=pulled.digest)
    cancel.raise_if_cancelled()
    events(PhaseChanged("start", f"Starting container {spec.name}"))
    outcome = svc.containers.ensure_running(spec, events=events)
    try:
        ready = _wait(the_plan, svc, events, cancel)
        validated = _validate(the_plan, svc, events, cancel)
    except RuntimeNotReady:
        _stop_quietly(svc, spec.name, remove=False)  # keep it so `logs` can show what happened
        raise
    except BaseException:
        if outcome.action != "reused":
            _stop_quietly(svc, spec.name, remove=True)  # Ctrl-C / cancel: leave nothing half-started
        raise
    return UpResult(
        runtime=the_plan.runtime, name=spec.name, model=the_plan.model, served_model_id=the_plan.served_model_id,
        base_url=the_plan.base_url, image=spec.image, digest=pulled.digest,
        context_window=_context_window(svc.settings, ready, events), reused=outcome.action == "reused",
        container_id=outcome.container.id, weights_revision=revision, validated_api=validated)


# --- steps ---------------------------------------------------------------------------------------------------------


def _check_port(the_plan: Plan, svc: Services, events: EventSink) -> UpResult | None:
    """Free, or held by our container of this name → go on. A vLLM already serving the model → adopt it.
    Anything else → PortInUse naming what holds the port."""
    if not _port_listening(the_plan.port):
        return None
    for info in svc.containers.list_managed():
        if info.labels.get(LABEL_PORT) == str(the_plan.port):
            if info.name == the_plan.spec.name:
                return None
            raise PortInUse(
                f"Port {the_plan.port} is held by our container {info.name}",
                remedy=f"stop it with `nemoclaw-runtime stop {info.name}`, or pass --port")
    if the_plan.runtime != "vllm":
        raise PortInUse(f"Port {the_plan.port} is in use by {_port_owner(the_plan.port)}",
                        remedy="free the port or pass --port")
    from nemoclaw_runtime.runtimes.readiness import probe_existing_vllm

    existing = probe_existing_vllm(svc.http, the_plan.port)
    if existing is not None and existing.is_vllm and the_plan.served_model_id in existing.model_ids:
        events(Info(f"A vLLM already serving {the_plan.served_model_id} answers on port {the_plan.port}: "
                    "adopting it, starting nothing"))
        window = existing.max_model_len.get(the_plan.served_model_id) if existing.max_model_len else None
        return UpResult(runtime=the_plan.runtime, name=None, model=the_plan.model,
                        served_model_id=the_plan.served_model_id, base_url=the_plan.base_url, image=None,
                        digest=None, context_window=window, adopted=True)
    if existing is not None and existing.is_vllm:
        holder = f"a vLLM serving {', '.join(existing.model_ids) or 'no model'} (not managed by nemoclaw-runtime)"
    else:
        holder = _port_owner(the_plan.port)
    raise PortInUse(f"Port {the_plan.port} is in use by {holder}",
                    remedy="stop that server, or pass --port / set NEMOCLAW_VLLM_PORT to a free port")


def _reuse_if_same(the_plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> UpResult | None:
    """The fast path: our container with this name runs exactly this spec (same pinned digest) → reuse it."""
    existing = svc.containers.get(the_plan.spec.name)
    if existing is None or not existing.state.running:
        return None
    digest = existing.labels.get(LABEL_IMAGE_DIGEST) or None
    candidate = dataclasses.replace(the_plan.spec, image_digest=digest)
    if existing.labels.get(LABEL_SPEC_HASH) != candidate.spec_hash():
        return None
    events(Info(f"{existing.name} already runs this exact spec: reusing it"))
    ready = _wait(the_plan, svc, events, cancel)
    return UpResult(
        runtime=the_plan.runtime, name=existing.name, model=the_plan.model,
        served_model_id=the_plan.served_model_id, base_url=the_plan.base_url, image=the_plan.spec.image,
        digest=digest, context_window=_context_window(svc.settings, ready, events), reused=True,
        container_id=existing.id)


def _weights(the_plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
    if the_plan.runtime != "vllm":
        return None
    from nemoclaw_runtime.runtimes import weights

    token = svc.settings.hf_token_value()
    secret = token[1] if token else None
    if the_plan.gated:
        events(PhaseChanged("access", f"Checking access to {the_plan.model_id} on the hub"))
        weights.check_access(the_plan.model_id, secret, svc.settings)
    if not the_plan.prefetch:
        return None
    _check_disk(the_plan, svc, secret, events)
    events(PhaseChanged("weights", f"Downloading {the_plan.model_id} into {svc.settings.hf_home}"))
    result = weights.prefetch(the_plan.model_id, token=secret, settings=svc.settings, events=events, cancel=cancel)
    return result.revision


def _check_disk(the_plan: Plan, svc: Services, token: Any, events: EventSink) -> None:
    import psutil

    from nemoclaw_runtime.runtimes import weights

    needed = weights.estimate_repo_bytes(the_plan.model_id, token, svc.settings)
    if not needed:
        return
    path = svc.settings.hf_home
    while not path.exists() and path != path.parent:
        path = path.parent
    free = psutil.disk_usage(str(path)).free
    if free < needed * DISK_HEADROOM:
        raise InsufficientResources(
            f"Not enough disk for {the_plan.model_id}: needs about {needed / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free under {path}",
            remedy="free disk space or point HF_HOME at a larger disk")


def _wait(the_plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> Any:
    from nemoclaw_runtime.runtimes.readiness import VllmModelsProbe, wait_ready

    events(PhaseChanged("wait", f"Waiting for {the_plan.served_model_id} on {the_plan.base_url}"))
    target = _ContainerTarget(svc.containers, the_plan.spec.name, "127.0.0.1", the_plan.port)
    return wait_ready(target, VllmModelsProbe(the_plan.served_model_id), timeout_s=the_plan.ready_timeout_s,
                      clock=svc.clock, cancel=cancel, events=events, http=svc.http)


def _validate(the_plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
    if not the_plan.validate:
        return None
    from nemoclaw_runtime.runtimes.validate import validate_endpoint

    events(PhaseChanged("validate", f"Sending a real request to {the_plan.base_url}"))
    result = validate_endpoint(the_plan.base_url, the_plan.served_model_id, settings=svc.settings, http=svc.http,
                               clock=svc.clock, events=events, cancel=cancel)
    return str(result.api)


def _context_window(settings: Settings, ready: Any, events: EventSink) -> int | None:
    if settings.context_window:
        raw = settings.context_window.strip()
        if raw.isdigit() and 0 < int(raw) <= MAX_CONTEXT_WINDOW:
            events(Info(f"Keeping configured context window {raw} (NEMOCLAW_CONTEXT_WINDOW)"))
            return int(raw)
        events(Warning(f"Ignoring NEMOCLAW_CONTEXT_WINDOW={raw!r}: not an integer in 1..{MAX_CONTEXT_WINDOW}"))
    value = getattr(ready, "max_model_len", None)
    return int(value) if isinstance(value, int) else None


def _stop_quietly(svc: Services, name: str, *, remove: bool) -> None:
    try:
        svc.containers.stop(name, remove=remove)
    except Exception:  # noqa: BLE001 - cleanup must not mask the error being raised
        pass


class _ContainerTarget:
    """Adapts the container manager to what readiness polls: state, log tail, address."""

    def __init__(self, containers: ContainerManager, name: str, host: str, port: int) -> None:
        self._containers = containers
        self.name = name
        self.host = host
        self.port = port

    def state(self) -> Any:
        return self._containers.state(self.name)

    def log_tail(self, n: int) -> list[str]:
        return self._containers.logs(self.name, tail=n)


# --- small helpers -------------------------------------------------------------------------------------------------


def _detect(settings: Settings) -> GpuInventory:
    from nemoclaw_runtime.gpu import detect_gpus

    return detect_gpus(settings)


def _arch(inventory: GpuInventory | None, settings: Settings) -> str | None:
    return inventory.machine.arch if inventory is not None else None


def _warn_settings(settings: Settings, events: EventSink) -> None:
    for message in settings.warnings:
        events(Warning(message))


def _port_listening(port: int) -> bool:
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):  # some platforms need privileges; fall back to a connect
        return _connectable(port)
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def _connectable(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port_owner(port: int) -> str:
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f"process {psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except (psutil.Error, PermissionError):
        pass
    return "another program"


ContainerFilter = Callable[["ContainerInfo"], bool]
