"""The small contract every runtime driver (vLLM, NIM, Ollama) meets, and the values ``up`` works with.

A driver is pure planning: from an :class:`UpRequest`, the settings, the GPU inventory and the registry it builds a
:class:`Plan` — the exact ``ContainerSpec`` plus what readiness must see — without touching Docker or the network.
The pipeline (``runtimes/pipeline.py``) owns every side effect: weights, pull, container, readiness, validation;
it hands each driver hook the :class:`Services` (engine, images, containers, HTTP client, clock) it opened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.events import EventSink
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry.entries import RUNTIMES
from nemoclaw_runtime.runtimes.docker.spec import CONTAINER_NAME_RE, ContainerSpec, GpuRequest

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.registry import Registry
    from nemoclaw_runtime.runtimes.docker.port import ContainerManager, DockerPort, ImageStore, PulledImage
    from nemoclaw_runtime.runtimes.server.probes import HttpProbe
    from nemoclaw_runtime.runtimes.server.readiness import ReadyResult

__all__ = [
    "Check", "DriverBase", "Plan", "RuntimeDriver", "Served", "Services", "UpRequest", "UpResult", "make_request",
]



@dataclass(frozen=True)
class UpRequest:
    """What the caller asked for; ``None`` means "the default from settings / registry / profile"."""

    runtime: str
    model: str | None = None
    port: int | None = None
    gpus: GpuRequest = field(default_factory=GpuRequest)
    image: str | None = None
    name: str | None = None
    host: str = "127.0.0.1"
    prefetch: bool = True
    timeout_s: float | None = None
    validate: bool = True
    allow_no_tools: bool = False


def make_request(runtime: str, *, model: str | None = None, port: int | None = None, gpus: str | GpuRequest = "all",
                 image: str | None = None, name: str | None = None, host: str = "127.0.0.1", prefetch: bool = True,
                 timeout_s: float | None = None, validate: bool = True, allow_no_tools: bool = False) -> UpRequest:
    """Validate the caller's options into an :class:`UpRequest` (bad values → ``InvalidInput``, exit 2)."""
    if runtime not in RUNTIMES:
        raise InvalidInput(f"Unknown runtime {runtime!r}", remedy=f"use one of: {', '.join(RUNTIMES)}")
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInput(f"Invalid --port {port}: must be between 1 and 65535", remedy="pass a port such as 8000")
    if timeout_s is not None and timeout_s <= 0:
        raise InvalidInput(f"Invalid --timeout {timeout_s:g}: must be positive", remedy="pass seconds, e.g. 1800")
    if name is not None and not CONTAINER_NAME_RE.match(name):
        raise InvalidInput(f"Invalid --name {name!r}: two or more letters, digits, '.', '_' or '-' (a letter or "
                           "digit first)", remedy="pass a name such as my-vllm")
    gpu_request = gpus if isinstance(gpus, GpuRequest) else GpuRequest.parse(gpus)
    return UpRequest(runtime=runtime, model=model, port=port, gpus=gpu_request, image=image, name=name, host=host,
                     prefetch=prefetch, timeout_s=timeout_s, validate=validate, allow_no_tools=allow_no_tools)


@dataclass
class Services:
    """The side-effecting collaborators, created once at the edge and handed to the pipeline and driver hooks."""

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


@dataclass(frozen=True)
class Check:
    """One preflight check as shown in a plan: what was checked, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Plan:
    """Everything ``up`` would do, computed without side effects (``--dry-run`` prints it)."""

    runtime: str
    profile: str
    profile_name: str | None
    model: str  # registry slug / catalog name / Ollama tag
    model_id: str  # what the server is asked to load (HF id for vLLM)
    served_model_id: str  # what /v1/models must list
    spec: ContainerSpec
    port: int
    host: str
    ready_timeout_s: float
    base_url: str
    gated: bool = False
    token_variable: str | None = None  # the env variable the token came from (never the value)
    prefetch: bool = True
    validate: bool = True
    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "profile": self.profile,
            "profile_name": self.profile_name,
            "model": self.model,
            "model_id": self.model_id,
            "served_model_id": self.served_model_id,
            "base_url": self.base_url,
            "image": self.spec.image,
            "argv": list(self.spec.command),
            "container": self.spec.to_dict(),
            "ready_timeout_s": self.ready_timeout_s,
            "gated": self.gated,
            "token_variable": self.token_variable,
            "prefetch": self.prefetch,
            "validate": self.validate,
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class UpResult:
    """What ``up`` brought up (or found already serving)."""

    runtime: str
    name: str | None
    model: str
    served_model_id: str
    base_url: str
    image: str | None
    digest: str | None
    context_window: int | None
    reused: bool = False
    adopted: bool = False
    container_id: str | None = None
    weights_revision: str | None = None
    validated_api: str | None = None
    elapsed_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "name": self.name,
            "model": self.model,
            "served_model_id": self.served_model_id,
            "base_url": self.base_url,
            "image": self.image,
            "digest": self.digest,
            "context_window": self.context_window,
            "reused": self.reused,
            "adopted": self.adopted,
            "container_id": self.container_id,
            "weights_revision": self.weights_revision,
            "validated_api": self.validated_api,
            "elapsed_s": round(self.elapsed_s, 3) if self.elapsed_s is not None else None,
        }


@dataclass(frozen=True)
class Served:
    """What answers once a runtime is up: the id clients must send, and the context window when known."""

    served_model_id: str
    context_window: int | None = None
    model: str | None = None  # set when the driver chose the model only after start (Ollama)


class DriverBase:
    """What every driver shares: the model registry (the packaged one unless a test hands one in), and how a
    planned spec is bound to the image that was actually pulled."""

    def __init__(self, registry: Registry | None = None) -> None:
        if registry is None:
            from nemoclaw_runtime.registry import load_registry

            registry = load_registry()
        self.registry = registry

    def bind_image(self, plan: Plan, pulled: PulledImage) -> ContainerSpec:
        """The spec to run: the plan's, pinned to the digest that was pulled."""
        return dataclasses.replace(plan.spec, image_digest=pulled.digest)


class RuntimeDriver(Protocol):
    """One per runtime. A driver never creates a Docker client, an HTTP client or a clock: the pipeline hands it
    ``svc`` (:class:`Services`), and all its waiting goes through ``svc.clock`` and ``cancel``."""

    name: str

    def plan(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> Plan:
        """Pure: the exact spec and checks, no Docker, no network. Bad input → exit 2, refusals → exit 3."""
        ...

    def image_for(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> str:
        """The image ``up`` would run for ``request`` (``plan`` and ``pull`` both ask here)."""
        ...

    def bind_image(self, plan: Plan, pulled: PulledImage) -> ContainerSpec:
        """The spec to run once the image is pulled (pinned to its digest)."""
        ...

    def adopt(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> Served | None:
        """The port is held by something that is not our container: adopt it (return what it serves) or raise
        ``PortInUse`` naming it."""
        ...

    def prepare(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        """Before the image pull: access checks, weights, cache folders. Returns the weights revision, if any."""
        ...

    def readiness_probe(self, plan: Plan) -> HttpProbe:
        """The HTTP probe readiness polls (``server/readiness.py``)."""
        ...

    def after_ready(self, plan: Plan, ready: ReadyResult, base: str, svc: Services, events: EventSink,
                    cancel: CancelToken) -> Served:
        """Once the server answers at ``base`` (``http://host:port``): adopt ids, pull models, warm up."""
        ...

    def validate(self, plan: Plan, served: Served, base: str, svc: Services, events: EventSink,
                 cancel: CancelToken) -> str | None:
        """Prove the endpoint with a real request; returns the API path clients should use."""
        ...
