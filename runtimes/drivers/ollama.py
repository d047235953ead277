"""The Ollama driver: use the Ollama already answering on the port, or run a managed ``ollama/ollama`` container.

Two modes, one set of model steps:

- **host mode** — an Ollama (≥ 0.7.0) already answers ``/api/tags`` on ``127.0.0.1:<port>``: it is used as is,
  nothing is started (``adopt``). Anything else on the port is reported, never trusted (NemoClaw #4275).
- **container mode** — the port is free: a managed container (default ``nemoclaw-ollama``) with the models in a
  named volume, GPUs when there are usable ones (Ollama also runs on the CPU), port 11434 published on loopback.

Then, in both modes (:meth:`OllamaDriver._model_steps`): choose the model (``--model`` / ``NEMOCLAW_MODEL``, else
the installed-pool default, else the largest starter that fits the memory), pull it through ``/api/pull`` with the
stall watchdog, require the ``tools`` capability (``--allow-no-tools`` relaxes it), and warm it up; ``validate``
then probes ``/api/generate`` (whose request is the warm-up itself). ``plan`` stays pure: what the model steps need
to know about the host is fixed in :class:`ModelRules` at plan time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, PortInUse
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.names import RUNTIME_OLLAMA
from nemoclaw_runtime.kernel.units import format_mib
from nemoclaw_runtime.registry import is_safe_model_id
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_HOST,
    LABEL_IMAGE,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_RUNTIME,
    LABEL_SERVED_MODEL,
    ContainerSpec,
    GpuRequest,
    Mount,
    PortBinding,
)
from nemoclaw_runtime.runtimes.drivers.contract import Check, DriverBase, Plan, Served, UpRequest
from nemoclaw_runtime.runtimes.drivers.steps import gpu_detail

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.registry import Registry
    from nemoclaw_runtime.runtimes.docker.port import ContainerInfo
    from nemoclaw_runtime.runtimes.drivers.contract import Services
    from nemoclaw_runtime.runtimes.server.ollama_api import OllamaServer
    from nemoclaw_runtime.runtimes.server.probes import HttpProbe
    from nemoclaw_runtime.runtimes.server.readiness import ReadyResult

RUNTIME = RUNTIME_OLLAMA
#: The Ollama release a managed container runs unless --image / NEMOCLAW_OLLAMA_IMAGE say otherwise.
DEFAULT_OLLAMA_IMAGE = "docker.io/ollama/ollama:0.12.6"
CONTAINER_PORT = 11434
CONTAINER_MODELS_DIR = "/root/.ollama"
DEFAULT_CONTAINER_NAME = "nemoclaw-ollama"
DEFAULT_VOLUME = "nemoclaw-ollama-models"
#: The image is already on disk when readiness starts, and Ollama listens within seconds of starting.
DEFAULT_READY_TIMEOUT_S = 300.0
#: NemoClaw's installed-pool default, taken when it is installed and fits.
POOL_DEFAULT_TAG = "nemotron-3-nano:30b"
#: NemoClaw's unsafe-id rule (validation.ts): a tag reaches URLs and JSON, nothing else is accepted.
AUTO_MODEL = "auto"
#: ``None``: ollama_api's fixed budgets (120 s, then 300 s after a timeout). Tests patch this module attribute.
PROBE_BUDGETS_S: tuple[float, ...] | None = None
VALIDATED_API = "ollama-generate"


@dataclass(frozen=True)
class ModelRules:
    """What choosing a model after start needs to know about the request and the host, fixed by ``plan``."""

    explicit: str | None = None  # --model or NEMOCLAW_MODEL
    source: str | None = None  # which of the two
    memory_mib: int | None = None  # available memory when known, else the total (NemoClaw's effective memory)
    nvidia_known: bool = False
    compute_constrained: bool = False
    starters: tuple[str, ...] = ()  # the starters that fit, smallest first
    default_starter: str | None = None  # the largest of them
    allow_no_tools: bool = False
    is_spark: bool = False
    host_memory_mib: int | None = None  # total memory on unified-memory hosts (Spark's memory check)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OllamaPlan(Plan):
    """A :class:`Plan` plus the model rules the after-start steps apply."""

    rules: ModelRules = field(default_factory=ModelRules)
    volume: str = DEFAULT_VOLUME

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["ollama"] = {"volume": self.volume, **self.rules.to_dict()}
        return data


@dataclass(frozen=True)
class TagChoice:
    """The tag :func:`choose_model` picked, why, and whether it is installed (a menu entry is the onboarding
    layer's ``ModelChoice``)."""

    tag: str
    reason: str
    installed: bool


def volume_for(name: str) -> str:
    """``nemoclaw-ollama-models`` for the default container; ``<name>-models`` for another name, so two managed
    Ollamas never write one model store at the same time."""
    return DEFAULT_VOLUME if name == DEFAULT_CONTAINER_NAME else f"{name}-models"


def check_tag(tag: str, source: str) -> str:
    """A usable Ollama tag, stripped; anything else is ``InvalidInput`` (exit 2)."""
    value = tag.strip()
    if not is_safe_model_id(value):
        raise InvalidInput(f"Invalid {source} {tag!r}: an Ollama tag may only contain letters, digits and . _ : / -",
                           remedy="pass a tag such as qwen3.5:9b (see https://ollama.com/library)",
                           details={"tag": tag, "source": source})
    return value


def choose_model(rules: ModelRules, installed: tuple[str, ...], registry: Registry) -> TagChoice:
    """NemoClaw's choice: the explicit tag; else the installed-pool default (``nemotron-3-nano:30b`` when installed
    and it fits, else the first installed model that fits); else the default starter, to be pulled."""
    from nemoclaw_runtime.runtimes.server.ollama_api import normalize_tag

    present = {normalize_tag(name) for name in installed}
    if rules.explicit:
        return TagChoice(rules.explicit, f"from {rules.source}", normalize_tag(rules.explicit) in present)

    def fits(tag: str) -> bool:
        starter = registry.ollama_starter(tag)
        return starter is None or starter.fits(rules.memory_mib)  # unknown tags count as a fit, as in NemoClaw

    if installed:
        if normalize_tag(POOL_DEFAULT_TAG) in present and fits(POOL_DEFAULT_TAG):
            return TagChoice(POOL_DEFAULT_TAG, "installed (the preferred default)", True)
        fitting = [name for name in installed if fits(name)]
        if fitting:
            return TagChoice(fitting[0], "the first installed model that fits this host", True)
        memory = format_mib(rules.memory_mib, unknown="unknown")
        return TagChoice(installed[0], "installed; none of the installed models is known to fit this host's "
                                       f"memory ({memory}), using the first", True)
    if rules.default_starter:
        return TagChoice(rules.default_starter, "no model installed: the largest starter model that fits", False)
    raise InsufficientResources(
        "No Ollama model is installed and no starter model fits this host's memory "
        f"({format_mib(rules.memory_mib, unknown='unknown')})",
        remedy="pass --model TAG with a small model (see https://ollama.com/library)",
        details={"memory_mib": rules.memory_mib})


class OllamaDriver(DriverBase):
    name = RUNTIME

    def image_for(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> str:
        """--image, else NEMOCLAW_OLLAMA_IMAGE, else the pinned ``ollama/ollama`` release."""
        return request.image or settings.ollama_image or DEFAULT_OLLAMA_IMAGE

    # --- plan (pure) ----------------------------------------------------------------------------------------------

    def plan(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> OllamaPlan:
        from nemoclaw_runtime.runtimes.docker.spec import url_host

        rules = self._rules(request, settings, inventory)
        gpus, gpu_check, gpu_note = _gpus(request.gpus, inventory)
        image = self.image_for(request, settings, inventory)
        port = request.port or settings.ollama_port
        name = request.name or DEFAULT_CONTAINER_NAME
        volume = volume_for(name)
        spec = _spec(name, image, port, request.host, gpus, volume, rules.explicit)
        notes = [f"if an Ollama already answers on {url_host(request.host)}:{port}, it is used as is and no"
                 " container is started"]
        notes += [gpu_note] if gpu_note else []
        if request.image or settings.ollama_image:
            notes.append("image overridden by " + ("--image" if request.image else "NEMOCLAW_OLLAMA_IMAGE"))
        if request.host not in ("127.0.0.1", "localhost", "::1"):
            notes.append(f"port published on {request.host}: reachable from other machines")
        model = rules.explicit or AUTO_MODEL
        return OllamaPlan(
            runtime=RUNTIME, profile=inventory.profile, profile_name=None, model=model,
            model_id=rules.explicit or _auto_description(rules), served_model_id=model, spec=spec, port=port,
            host=request.host, ready_timeout_s=request.timeout_s or DEFAULT_READY_TIMEOUT_S,
            base_url=f"http://{url_host(request.host)}:{port}/v1", prefetch=False, validate=request.validate,
            checks=(gpu_check, Check("model", True, _model_detail(rules))), notes=tuple(notes), rules=rules,
            volume=volume)

    def _rules(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> ModelRules:
        from nemoclaw_runtime.gpu.profiles import PROFILE_DGX_SPARK
        from nemoclaw_runtime.registry.listing import HostView

        explicit, source = None, None
        if request.model is not None and request.model.strip():
            explicit, source = check_tag(request.model, "--model"), "--model"
        elif settings.model:
            explicit, source = check_tag(settings.model, "NEMOCLAW_MODEL"), "NEMOCLAW_MODEL"
        host = HostView(gpu_profile=inventory.profile, memory_budget_mib=inventory.memory_budget_mib,
                        compute_constrained=bool(inventory.compute_constrained), reason=inventory.reason,
                        available_memory_mib=inventory.available_memory_mib)
        fit_rules = {"nvidia_known": host.nvidia_known, "compute_constrained": host.compute_constrained}
        starters = self.registry.fittable_ollama_starters(host.ollama_memory_mib, **fit_rules)
        default = self.registry.default_ollama_starter(host.ollama_memory_mib, **fit_rules)
        is_spark = inventory.profile == PROFILE_DGX_SPARK
        return ModelRules(explicit=explicit, source=source, memory_mib=host.ollama_memory_mib,
                          nvidia_known=host.nvidia_known, compute_constrained=host.compute_constrained,
                          starters=tuple(s.tag for s in starters), default_starter=default.tag if default else None,
                          allow_no_tools=request.allow_no_tools, is_spark=is_spark,
                          host_memory_mib=inventory.total_vram_mib if inventory.unified_memory else None)

    # --- pipeline hooks -------------------------------------------------------------------------------------------

    def adopt(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> Served | None:
        """Host mode: an Ollama answering on the port is used as is (and gets the model steps here, since the
        pipeline only validates an adopted server); anything else there is refused, naming it."""
        from nemoclaw_runtime.runtimes.docker.spec import url_host
        from nemoclaw_runtime.runtimes.server.host_ports import port_owner
        from nemoclaw_runtime.runtimes.server.ollama_api import ForeignListener, detect_ollama

        found = detect_ollama(svc.http, url_host(plan.host), plan.port)  # too old → UnsupportedRuntime (exit 3)
        if found is None:
            return None  # the listener is on another address: publishing on this one may still work
        if isinstance(found, ForeignListener):
            raise PortInUse(f"Port {plan.port} is in use by {port_owner(plan.port)}: {found.describe()}",
                            remedy="stop that server, or pass --port / set NEMOCLAW_OLLAMA_PORT to a free port",
                            details=found.to_dict())
        version = f"Ollama {found.version}" if found.version else "An Ollama (version unknown)"
        events(Info(f"{version} already answers on {found.base_url}: using it as is, starting no container"))
        return self._model_steps(plan, found, svc, events, cancel)

    def prepare(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        return None  # the engine creates the named model volume on first use; nothing to fetch before the image

    def readiness_probe(self, plan: Plan) -> HttpProbe:
        from nemoclaw_runtime.runtimes.server.probes import OllamaTagsProbe

        return OllamaTagsProbe()

    def after_ready(self, plan: Plan, ready: ReadyResult, base: str, svc: Services, events: EventSink,
                    cancel: CancelToken) -> Served:
        """Container mode: the managed Ollama answers; choose, pull, check and warm up the model."""
        from nemoclaw_runtime.kernel.errors import RuntimeNotReady
        from nemoclaw_runtime.runtimes.docker.spec import url_host
        from nemoclaw_runtime.runtimes.server.ollama_api import OllamaServer, detect_ollama

        found = detect_ollama(svc.http, url_host(plan.host), plan.port)
        if not isinstance(found, OllamaServer):
            raise RuntimeNotReady(f"{plan.spec.name} answered readiness but not as Ollama on port {plan.port}",
                                  remedy=f"check `nemoclaw-runtime logs {plan.spec.name}` and run again",
                                  cause="ollama-unreachable")
        return self._model_steps(plan, found, svc, events, cancel)

    def validate(self, plan: Plan, served: Served, base: str, svc: Services, events: EventSink,
                 cancel: CancelToken) -> str | None:
        """``/api/generate`` (120 s, once more with 300 s only after a timeout); its request is also the warm-up."""
        from nemoclaw_runtime.runtimes.server import ollama_api

        if not plan.validate:
            return None
        rules = _rules_of(plan)
        events(PhaseChanged("validate", f"Probing {served.served_model_id} through {base}/api/generate"))
        budgets = PROBE_BUDGETS_S or ollama_api.PROBE_BUDGETS_S
        result = ollama_api.validate_model(svc.http, base, served.served_model_id,
                                           clock=svc.clock, events=events, is_spark=rules.is_spark,
                                           host_memory_total_mib=rules.host_memory_mib,
                                           allow_no_tools=rules.allow_no_tools, budgets_s=budgets)
        for note in result.notes:
            events(Warning(f"{served.served_model_id}: {note}"))
        shown = f": {result.response_excerpt!r}" if result.response_excerpt else ""
        events(Info(f"{served.served_model_id} answered the probe (attempt {result.attempts}){shown}; kept loaded"
                    " for 15 minutes"))
        return VALIDATED_API

    # --- the model steps, shared by both modes --------------------------------------------------------------------

    def _model_steps(self, plan: Plan, server: OllamaServer, svc: Services, events: EventSink,
                     cancel: CancelToken) -> Served:
        from nemoclaw_runtime.runtimes.server import ollama_api
        from nemoclaw_runtime.runtimes.transfer import ollama_pull

        rules = _rules_of(plan)
        base = server.base_url
        choice = choose_model(rules, server.model_names, self.registry)
        events(Info(f"Model {choice.tag}: {choice.reason}"))
        if not choice.installed:
            events(PhaseChanged("model-pull", f"Pulling {choice.tag} into Ollama at {base}"))
            ollama_pull.pull_model(svc.http, base, choice.tag, settings=svc.settings, clock=svc.clock,
                                   events=events, cancel=cancel)
        cancel.raise_if_cancelled()
        events(PhaseChanged("model-check", f"Checking that {choice.tag} supports tool calling"))
        capabilities = ollama_api.require_tools(svc.http, base, choice.tag, allow_no_tools=rules.allow_no_tools)
        if "tools" not in capabilities:
            events(Warning(f"{choice.tag} does not support tool calling (accepted with --allow-no-tools)"))
        if not plan.validate:  # otherwise the validation probe is the warm-up (same request)
            events(PhaseChanged("warm-up", f"Loading {choice.tag} (kept loaded for 15 minutes)"))
            if not ollama_api.warm_up(svc.http, base, choice.tag):
                events(Warning(f"{choice.tag} did not answer the warm-up; its first request may be slow"))
        return Served(choice.tag, None, model=choice.tag)


# --- stop ------------------------------------------------------------------------------------------------------


def unload_before_stop(*, http: httpx.Client | None = None,
                       events: EventSink = discard) -> Callable[[ContainerInfo], None]:
    """A ``before_stop`` hook for ``containers.stop_managed``: unload the models of a managed Ollama through its
    published port (``keep_alive: 0``), so GPU memory is handed back before the container goes. Best effort:
    containers of other runtimes, stopped ones and an Ollama that does not answer are passed over."""
    def hook(info: ContainerInfo) -> None:
        from nemoclaw_runtime.runtimes.docker.spec import url_host
        from nemoclaw_runtime.runtimes.net import http_client
        from nemoclaw_runtime.runtimes.server.ollama_api import ollama_base_url, unload_models

        port = info.labels.get(LABEL_PORT, "")
        if info.labels.get(LABEL_RUNTIME) != RUNTIME or not info.state.running or not port.isdigit():
            return
        base = ollama_base_url(url_host(info.labels.get(LABEL_HOST, "127.0.0.1")), int(port))
        client = http or http_client()
        try:
            unloaded = unload_models(client, base)
        finally:
            if http is None:
                client.close()
        if unloaded:
            events(Info(f"Unloaded {', '.join(unloaded)} from {info.name.lstrip('/')}"))

    return hook


# --- pieces ----------------------------------------------------------------------------------------------------


def _rules_of(plan: Plan) -> ModelRules:
    if isinstance(plan, OllamaPlan):
        return plan.rules
    return ModelRules(explicit=None if plan.model == AUTO_MODEL else plan.model, source="the plan")


def _spec(name: str, image: str, port: int, host: str, gpus: GpuRequest, volume: str,
          model: str | None) -> ContainerSpec:
    labels: tuple[tuple[str, str], ...] = ((LABEL_RUNTIME, RUNTIME), (LABEL_IMAGE, image))
    if model:  # the model asked for at creation; `up` may later load others in the same container
        labels += ((LABEL_MODEL, model), (LABEL_SERVED_MODEL, model))
    return ContainerSpec(
        name=name,
        runtime=RUNTIME,
        image=image,
        command=(),  # the image's own `ollama serve`
        env=(("OLLAMA_HOST", f"0.0.0.0:{CONTAINER_PORT}"),),  # inside the container; published on loopback only
        labels=labels,
        ports=(PortBinding(CONTAINER_PORT, port, host),),
        gpus=gpus,
        mounts=(Mount(volume, CONTAINER_MODELS_DIR, kind="volume"),),
        restart_policy="unless-stopped",
    )


def _gpus(requested: GpuRequest, inventory: GpuInventory) -> tuple[GpuRequest, Check, str | None]:
    """Ollama runs on the CPU too: with no usable GPU the container gets none (with a note) instead of a refusal."""
    from nemoclaw_runtime.gpu import has_usable_gpu

    if requested.mode == "none":
        return requested, Check("gpu", True, gpu_detail(requested, inventory)), None
    if not has_usable_gpu(inventory):
        reason = inventory.reason or f"host profile is {inventory.profile}"
        note = f"no usable NVIDIA GPU ({reason}): Ollama runs on the CPU, slowly"
        return GpuRequest("none"), Check("gpu", True, "no usable NVIDIA GPU: the container runs on the CPU"), note
    return requested, Check("gpu", True, gpu_detail(requested, inventory)), None


def _auto_description(rules: ModelRules) -> str:
    fallback = f"else the starter {rules.default_starter}" if rules.default_starter else "no starter fits"
    return f"the installed default ({POOL_DEFAULT_TAG} if installed), {fallback}"


def _model_detail(rules: ModelRules) -> str:
    memory = format_mib(rules.memory_mib) if rules.memory_mib else "unknown memory"
    if rules.explicit:
        return f"{rules.explicit} (from {rules.source}); pulled if not installed"
    offered = ", ".join(rules.starters) or "none"
    return f"chosen after start: {_auto_description(rules)} (starters for {memory}: {offered})"


__all__ = [
    "DEFAULT_CONTAINER_NAME", "DEFAULT_VOLUME", "ModelRules", "OllamaDriver", "OllamaPlan", "TagChoice",
    "check_tag", "choose_model", "unload_before_stop", "volume_for",
    "DEFAULT_OLLAMA_IMAGE", "PROBE_BUDGETS_S",
]
