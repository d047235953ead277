"""The small contract every runtime driver (vLLM, NIM, Ollama) meets, and the values ``up`` works with.

A driver is pure planning: from an :class:`UpRequest`, the settings, the GPU inventory and the registry it builds a
:class:`Plan` — the exact ``ContainerSpec`` plus what readiness must see — without touching Docker or the network.
The pipeline (``runtimes/pipeline.py``) owns every side effect: weights, pull, container, readiness, validation;
it hands each driver hook the :class:`Services` (engine, images, containers, HTTP client, clock) it opened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.events import EventSink
from nemoclaw_runtime.kernel.secret import redact_argv, redact_data
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry.entries import RUNTIMES
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.registry import Registry
    from nemoclaw_runtime.runtimes.docker.port import ContainerManager, DockerPort, ImageStore, PulledImage
    from nemoclaw_runtime.runtimes.fit import FitResult, ModelSource
    from nemoclaw_runtime.runtimes.server.probes import HttpProbe
    from nemoclaw_runtime.runtimes.server.readiness import ReadyResult

__all__ = [
    "MAX_CONTEXT", "MAX_SHARED_UTILIZATION", "Check", "DriverBase", "GpuPlacement", "Plan", "RuntimeDriver", "Served",
    "Services", "UpRequest", "UpResult", "make_request", "parse_max_model_len",
]

#: Two managed servers share a GPU only while their ``--gpu-memory-utilization`` sum stays at or below this.
MAX_SHARED_UTILIZATION = 0.95


@dataclass(frozen=True)
class GpuPlacement:
    """What our managed containers hold, read from their labels before ``up`` places a new one.

    ``held`` maps a GPU index to ``(container name, gpu-memory-utilization)`` of every *other* managed container
    on it; ``own`` are the GPUs our container of the requested name holds now (``up`` replaces or reuses it, so its
    memory counts as free and its GPUs are preferred) with its utilisation ``own_utilization``."""

    held: Mapping[int, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    own: tuple[int, ...] = ()
    own_utilization: float | None = None

    def used(self, index: int) -> float:
        return sum(share for _, share in self.held.get(index, ()))

    def holders(self, index: int) -> str:
        return ", ".join(f"{name} ({share:g})" for name, share in self.held.get(index, ()))



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
    max_model_len: int | None = None  # vLLM: serve at this context instead of the registry's
    auto_context: bool = False  # vLLM: serve at the largest context that fits (``--max-model-len auto``)
    fit_check: bool = True  # vLLM: refuse (exit 3) before any download when the model cannot fit


def make_request(runtime: str, *, model: str | None = None, port: int | None = None, gpus: str | GpuRequest = "all",
                 image: str | None = None, name: str | None = None, host: str = "127.0.0.1", prefetch: bool = True,
                 timeout_s: float | None = None, validate: bool = True, allow_no_tools: bool = False,
                 max_model_len: int | str | None = None, fit_check: bool = True) -> UpRequest:
    """Validate the caller's options into an :class:`UpRequest` (bad values → ``InvalidInput``, exit 2).

    ``max_model_len`` is a token count or ``"auto"`` (vLLM only)."""
    if runtime not in RUNTIMES:
        raise InvalidInput(f"Unknown runtime {runtime!r}", remedy=f"use one of: {', '.join(RUNTIMES)}")
    # Every option is checked here, at the library's edge, before any engine, network or disk (kernel/checks.py).
    model = checks.check_plain_text(model, "--model") if model is not None else None
    port = checks.check_port(port) if port is not None else None
    timeout_s = checks.check_seconds(timeout_s) if timeout_s is not None else None
    name = checks.check_container_name(name) if name is not None else None
    image = checks.check_image_reference(image) if image is not None else None
    host = checks.check_host_address(host)
    for flag, value in (("--no-prefetch", prefetch), ("--no-validate", validate),
                        ("--allow-no-tools", allow_no_tools), ("fit_check", fit_check)):
        if not isinstance(value, bool):
            raise InvalidInput(f"Invalid {flag} value {value!r}: must be true or false", remedy="pass a bool")
    if not isinstance(gpus, (str, GpuRequest)):
        raise InvalidInput(f"Invalid --gpus {gpus!r}: expected all, none, or GPU indices such as 0,1",
                           remedy="pass --gpus all, --gpus none, or indices from `nemoclaw-runtime gpus`")
    gpu_request = gpus if isinstance(gpus, GpuRequest) else GpuRequest.parse(gpus)
    context, auto = parse_max_model_len(max_model_len)
    if (context is not None or auto) and runtime != "vllm":
        raise InvalidInput(f"--max-model-len is for vLLM only, not {runtime}",
                           remedy="drop --max-model-len (NIM and Ollama choose their own context)")
    return UpRequest(runtime=runtime, model=model, port=port, gpus=gpu_request, image=image, name=name, host=host,
                     prefetch=prefetch, timeout_s=timeout_s, validate=validate, allow_no_tools=allow_no_tools,
                     max_model_len=context, auto_context=auto, fit_check=fit_check)


#: The longest context a request may name: the kernel's one constant (vLLM's own ceiling is far below).
MAX_CONTEXT = checks.MAX_CONTEXT_LENGTH


def parse_max_model_len(value: int | str | None, *, source: str = "--max-model-len") -> tuple[int | None, bool]:
    """``(tokens, auto)`` from ``auto``, a token count as vLLM reads it (``32768``, ``"32k"`` = 32000,
    ``"32K"`` = 32768; :func:`~nemoclaw_runtime.kernel.checks.check_context_length`) or ``None``; else exit 2."""
    if value is None:
        return None, False
    tokens = checks.check_context_length(value, source, allow_auto=True)
    return tokens, tokens is None


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
            try:
                self.http.close()
            finally:  # an HTTP client that fails to close must not leave the engine connection open
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
    fit: FitResult | None = None  # vLLM: will it fit, and where (None: not judged, e.g. --gpus none)

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
            # The display form: the value after a secret-like flag (--api-key in extra args) and URL user
            # information (HF_ENDPOINT) are ***, as secret env values already are.
            "argv": redact_argv(self.spec.command),
            "container": redact_data(self.spec.to_dict()),
            "ready_timeout_s": self.ready_timeout_s,
            "gated": self.gated,
            "token_variable": self.token_variable,
            "prefetch": self.prefetch,
            "validate": self.validate,
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "fit": self.fit.to_dict() if self.fit is not None else None,
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
    #: ``up --nodes``: every node (index, engine address, role) and its containers; empty on one host
    nodes: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"nodes": [dict(node) for node in self.nodes]} if self.nodes else {}),
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

    def fit(self, plan: Plan, request: UpRequest, settings: Settings, inventory: GpuInventory, *,
            source: ModelSource, events: EventSink, placement: GpuPlacement | None = None) -> Plan:
        """Judge whether the plan's model fits (and apply what the judgement implies); runtimes whose memory
        nemoclaw-runtime does not model return the plan as it is."""
        return plan

    def fetches_weights(self, plan: Plan) -> bool:
        """Whether ``fetch_weights`` downloads anything for this plan (runtimes that fetch no weights: never)."""
        return False

    def fetch_weights(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        """Download the model's weights (run concurrently with the image pull); returns the revision, if any."""
        return None


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

    def fit(self, plan: Plan, request: UpRequest, settings: Settings, inventory: GpuInventory, *,
            source: ModelSource, events: EventSink, placement: GpuPlacement | None = None) -> Plan:
        """Before any download: will the model fit, and where? Returns the plan the judgement implies (context,
        tensor parallelism, GPUs) or raises the refusal (exit 3). ``source`` tells the model's facts (the only
        I/O); ``placement`` is what our other managed containers hold (``up`` only)."""
        ...

    def adopt(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> Served | None:
        """The port is held by something that is not our container: adopt it (return what it serves) or raise
        ``PortInUse`` naming it."""
        ...

    def prepare(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        """Before any download: access checks, disk, cache folders. Returns a weights revision already known, if
        any (the download itself is ``fetch_weights``)."""
        ...

    def fetches_weights(self, plan: Plan) -> bool:
        """Whether ``fetch_weights`` downloads anything for this plan."""
        ...

    def fetch_weights(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        """After ``prepare``, at the same time as the image pull (another thread, the same ``events`` sink, a
        ``cancel`` that a failed pull also sets): the weights into the host's cache. Returns the revision."""
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
