"""The managed-vLLM driver: from a model slug to the exact container that serves it.

Pure planning (no Docker, no network): the registry gives the ``vllm serve`` argv, the GPU profile gives the image
and the default model, the settings give port, image override and extra args. The image's own entrypoint is kept
(NGC images exec the command), the command is the argv — never a shell string, never a ``pip install`` at start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import (
    InsufficientResources,
    InvalidInput,
    NemoclawError,
    NoSuitableGpu,
    PortInUse,
)
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning
from nemoclaw_runtime.kernel.names import PROFILE_LINUX_NVIDIA, RUNTIME_VLLM
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.registry.entries import HF_PREFIX
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_GPU_MEMORY_UTILIZATION,
    LABEL_GPUS,
    LABEL_IMAGE,
    LABEL_MODEL,
    LABEL_RUNTIME,
    LABEL_SERVED_MODEL,
    LABEL_WEIGHTS_REVISION,
    ContainerSpec,
    GpuRequest,
    Mount,
    PortBinding,
    url_host,
)
from nemoclaw_runtime.runtimes.drivers.contract import (
    MAX_SHARED_UTILIZATION,
    Check,
    DriverBase,
    GpuPlacement,
    Plan,
    Served,
    UpRequest,
)
from nemoclaw_runtime.runtimes.drivers.steps import gpu_detail

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInfo, GpuInventory
    from nemoclaw_runtime.kernel.secret import Secret
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.registry import VllmModel, VllmProfile
    from nemoclaw_runtime.runtimes.drivers.contract import Services
    from nemoclaw_runtime.runtimes.fit import FitResult, ModelSource, ServeOptions
    from nemoclaw_runtime.runtimes.server.probes import HttpProbe
    from nemoclaw_runtime.runtimes.server.readiness import ReadyResult

RUNTIME = RUNTIME_VLLM
CONTAINER_PORT = 8000
CONTAINER_HF_HOME = "/root/.cache/huggingface"
DEFAULT_CONTAINER_NAME = "nemoclaw-vllm"
#: Used when no GPU profile applies (``--gpus none`` on a host without a usable GPU): the generic Linux image.
FALLBACK_GPU_PROFILE = PROFILE_LINUX_NVIDIA
DISK_HEADROOM = 1.05  # the weights estimate times this must fit on the cache's filesystem


class VllmDriver(DriverBase):
    name = RUNTIME

    def plan(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> Plan:
        from nemoclaw_runtime.gpu import has_usable_gpu

        checks: list[Check] = []
        profile = self.registry.vllm_profile_for(inventory.profile)
        # Order matters: bad input (exit 2) before the host check (exit 3), the host check before the default.
        extra = _extra_args(settings)
        explicit = self._resolve_explicit_model(request, settings, profile)
        if request.gpus.mode != "none" and not has_usable_gpu(inventory):
            raise NoSuitableGpu(
                f"No usable NVIDIA GPU for vLLM: {inventory.reason or 'host profile is ' + inventory.profile}",
                remedy="check the driver with `nemoclaw-runtime gpus`; `--gpus none` starts the container without GPUs"
                " (for testing only)",
            )
        checks.append(Check("gpu", True, gpu_detail(request.gpus, inventory)))
        model = explicit or self._default_model(profile)
        served_id = model.served_model_id(extra)
        checks.append(Check("model", True, f"{model.slug} ({model.hf_id}), served as {served_id}"))
        capability = _compute_capability_check(model, request, inventory)
        if capability is not None:
            checks.append(capability)

        token = settings.hf_token_value()
        token_variable = self._gate(model, token, request.prefetch, settings)
        if model.gated:
            checks.append(Check("hf-token", True, f"gated model; token from {token_variable}"))

        image = self.image_for(request, settings, inventory)
        port = request.port or settings.vllm_port
        name = request.name or (profile.container_name if profile else DEFAULT_CONTAINER_NAME)
        context, auto = requested_context(request, settings)
        spec = self._spec(name, image, model, extra, served_id, port, request, settings, token, context, inventory)
        timeout = request.timeout_s or settings.vllm_ready_timeout
        return Plan(
            runtime=RUNTIME,
            profile=inventory.profile,
            profile_name=profile.name if profile else None,
            model=model.slug,
            model_id=model.hf_id,
            served_model_id=served_id,
            spec=spec,
            port=port,
            host=request.host,
            ready_timeout_s=timeout,
            base_url=f"http://{url_host(request.host)}:{port}/v1",
            gated=model.gated,
            token_variable=token_variable,
            prefetch=request.prefetch,
            validate=request.validate,
            checks=tuple(checks),
            notes=_notes(profile, request, settings, model, extra, auto),
        )

    def image_for(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> str:
        """--image, else NEMOCLAW_VLLM_IMAGE, else the host profile's image (the generic Linux one without a
        profile: ``--gpus none`` on a host without a usable GPU)."""
        if request.image or settings.vllm_image:
            return str(request.image or settings.vllm_image)
        profile = self.registry.vllm_profile_for(inventory.profile)
        profile = profile or self.registry.vllm_profile_for(FALLBACK_GPU_PROFILE)
        if profile is None:
            raise InvalidInput("No vLLM image for this host", remedy="pass --image or set NEMOCLAW_VLLM_IMAGE")
        return profile.image

    # --- the fit (before any download) -------------------------------------------------------------------------

    def fit(self, plan: Plan, request: UpRequest, settings: Settings, inventory: GpuInventory, *,
            source: ModelSource, events: EventSink, placement: GpuPlacement | None = None) -> Plan:
        """Judge the plan's model against this host (``runtimes/fit``) and apply the judgement.

        Fits as asked → the plan unchanged (a registry slug keeps its exact argv), placed on the GPUs the fit
        chose; needs tensor parallelism → ``--tensor-parallel-size`` added; ``--max-model-len auto`` (and any
        model named by its HF id alone) → served at the largest context that fits; cannot fit → the refusal
        (exit 3, with the numbers and the remedy) unless ``--no-fit-check``, which only warns; facts unknown
        (offline, the hub unreachable) → a warning, and ``up`` goes on. ``placement`` (``up`` only) keeps a
        second model off the GPUs our other managed containers use, unless their utilisations leave room.
        """
        from nemoclaw_runtime.runtimes.fit import ServeOptions

        if request.gpus.mode == "none":
            return dataclasses.replace(plan, notes=(*plan.notes, "fit not judged: --gpus none gives the container "
                                                                 "no GPU"))
        model = self.registry.resolve_vllm_model(plan.model, profile=None, source="--model")
        for check in plan.checks:
            if not check.ok:
                events(Warning(f"--no-fit-check: going on although {check.detail}"))
        options = ServeOptions.from_argv(plan.spec.command)
        context, auto = requested_context(request, settings)
        auto = auto or (model.adhoc and context is None)
        placement = placement or GpuPlacement()
        targets = _targets(model, request, inventory, placement, options.gpu_memory_utilization, events)
        result = _judge(model, request, inventory, placement, targets, options, auto, source, events)
        return _apply(plan, model, request, inventory, placement, targets, options, auto, result, events)

    # --- pipeline hooks (side effects happen through ``svc``) ----------------------------------------------------

    def adopt(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> Served | None:
        """A vLLM that is not ours already serving this model on the port is adopted; anything else refuses."""
        from nemoclaw_runtime.runtimes.drivers.steps import refuse_foreign_listener
        from nemoclaw_runtime.runtimes.server.probes import probe_existing_vllm

        existing = probe_existing_vllm(svc.http, plan.port, host=url_host(plan.host))
        if existing is None or not existing.is_vllm:
            refuse_foreign_listener(plan)
        assert existing is not None
        if plan.served_model_id not in existing.model_ids:
            serving = ", ".join(existing.model_ids) or "no model"
            raise PortInUse(
                f"Port {plan.port} is held by a vLLM serving {serving} (not managed by nemoclaw-runtime), not"
                f" {plan.served_model_id}",
                remedy="stop that server, or pass --port / set NEMOCLAW_VLLM_PORT to a free port")
        events(Info(f"A vLLM already serving {plan.served_model_id} answers on port {plan.port}: adopting it,"
                    " starting nothing"))
        return Served(plan.served_model_id, existing.max_model_len.get(plan.served_model_id))

    def prepare(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        """Before any download: access check for gated models, the cache folder, disk for the weights."""
        from nemoclaw_runtime.runtimes.drivers.steps import ensure_cache_dir
        from nemoclaw_runtime.runtimes.transfer import weights

        token = svc.settings.hf_token_value()
        secret = token[1] if token else None
        if plan.gated or plan.model.startswith(HF_PREFIX):  # a bare HF id: whether it is gated is the hub's to say
            events(PhaseChanged("access", f"Checking access to {plan.model_id} on the hub"))
            weights.check_access(plan.model_id, secret, svc.settings, gated=plan.gated)
        ensure_cache_dir(svc.settings.hf_home)
        if plan.prefetch:
            _check_disk(plan, svc, secret)
        return _pinned_revision(plan)

    def fetches_weights(self, plan: Plan) -> bool:
        return plan.prefetch

    def fetch_weights(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        """The weights into the host's HF cache (the pipeline runs this while the image is pulled)."""
        from nemoclaw_runtime.runtimes.transfer import weights

        if not plan.prefetch:
            return None
        token = svc.settings.hf_token_value()
        events(PhaseChanged("weights", f"Downloading {plan.model_id} into {svc.settings.hf_home}"))
        result = weights.prefetch(plan.model_id, token=token[1] if token else None, settings=svc.settings,
                                  events=events, cancel=cancel, revision=_pinned_revision(plan))
        return result.revision

    def readiness_probe(self, plan: Plan) -> HttpProbe:
        from nemoclaw_runtime.runtimes.server.probes import VllmModelsProbe

        return VllmModelsProbe(plan.served_model_id)

    def after_ready(self, plan: Plan, ready: ReadyResult, base: str, svc: Services, events: EventSink,
                    cancel: CancelToken) -> Served:
        return Served(plan.served_model_id, getattr(ready, "max_model_len", None))

    def validate(self, plan: Plan, served: Served, base: str, svc: Services, events: EventSink,
                 cancel: CancelToken) -> str | None:
        from nemoclaw_runtime.runtimes.drivers.steps import validate_openai

        return validate_openai(plan, served, svc, events, cancel)

    # --- pieces ---------------------------------------------------------------------------------------------------

    def _resolve_explicit_model(self, request: UpRequest, settings: Settings,
                                profile: VllmProfile | None) -> VllmModel | None:
        if request.model is not None and request.model.strip():
            return self.registry.resolve_vllm_model(request.model, profile=profile, source="--model")
        if settings.vllm_model:
            return self.registry.resolve_vllm_model(settings.vllm_model, profile=profile,
                                                    source="NEMOCLAW_VLLM_MODEL")
        return None

    def _default_model(self, profile: VllmProfile | None) -> VllmModel:
        if profile is None:
            raise NoSuitableGpu(
                "No vLLM host profile for this machine, so there is no default model",
                remedy="pass --model SLUG (see `nemoclaw-runtime models --all`) or check `nemoclaw-runtime gpus`",
            )
        return self.registry.resolve_vllm_model(None, profile=profile)

    @staticmethod
    def _gate(model: VllmModel, token: tuple[str, object] | None, prefetch: bool, settings: Settings) -> str | None:
        if not model.gated:
            return token[0] if token and not prefetch else None
        if token is None:
            from nemoclaw_runtime.runtimes.transfer.weights import missing_token  # the one refusal, HF_ENDPOINT-aware

            raise missing_token(model.hf_id, settings)
        return token[0]

    def _spec(self, name: str, image: str, model: VllmModel, extra: tuple[str, ...], served_id: str, port: int,
              request: UpRequest, settings: Settings, token: tuple[str, object] | None, context: int | None,
              inventory: GpuInventory) -> ContainerSpec:
        from nemoclaw_runtime.runtimes.fit import ServeOptions

        command = model.serve_argv(extra)
        if context is not None:
            command = set_flag(command, "--max-model-len", str(context))
        options = ServeOptions.from_argv(command)
        utilization = options.gpu_memory_utilization  # a bad value in extra args: exit 2
        pinned = ((LABEL_WEIGHTS_REVISION, options.revision),) if options.revision else ()
        env: list[tuple[str, object]] = [("HF_HOME", CONTAINER_HF_HOME)]
        if request.prefetch:
            # Weights are already in the mounted cache: the container must not reach the hub, nor see the token.
            env.append(("HF_HUB_OFFLINE", "1"))
        else:
            if token is not None:
                env.append(("HF_TOKEN", token[1]))  # a Secret: only the create call ever reveals it
            if settings.hf_endpoint:
                env.append(("HF_ENDPOINT", settings.hf_endpoint))
        return ContainerSpec(
            name=name,
            runtime=RUNTIME,
            image=image,
            command=command,
            env=tuple(env),  # type: ignore[arg-type]
            labels=((LABEL_RUNTIME, RUNTIME), (LABEL_MODEL, model.slug), (LABEL_SERVED_MODEL, served_id),
                    (LABEL_IMAGE, image), (LABEL_GPUS, _indices_label(_targeted(request, inventory))),
                    (LABEL_GPU_MEMORY_UTILIZATION, f"{utilization:g}"), *pinned),
            ports=(PortBinding(CONTAINER_PORT, port, request.host),),
            gpus=request.gpus,
            mounts=(Mount(str(settings.hf_home), CONTAINER_HF_HOME),),
            restart_policy="unless-stopped",
            ipc_mode="host",
        )


def _pinned_revision(plan: Plan) -> str | None:
    """The Hugging Face commit the argv pins (the registry's ``hf_revision``, or ``--revision`` in extra args)."""
    from nemoclaw_runtime.runtimes.fit import ServeOptions

    return ServeOptions.from_argv(plan.spec.command).revision


def _check_disk(plan: Plan, svc: Services, token: Secret | None) -> None:
    import psutil

    from nemoclaw_runtime.runtimes.transfer import weights

    needed = weights.estimate_repo_bytes(plan.model_id, token, svc.settings, revision=_pinned_revision(plan))
    if not needed:
        return
    path = svc.settings.hf_home
    while not path.exists() and path != path.parent:
        path = path.parent
    free = psutil.disk_usage(str(path)).free
    if free < needed * DISK_HEADROOM:
        raise InsufficientResources(
            f"Not enough disk for {plan.model_id}: needs about {format_bytes(needed)}, "
            f"{format_bytes(free)} free under {path}",
            remedy="free disk space or point HF_HOME at a larger disk")


def _extra_args(settings: Settings) -> tuple[str, ...]:
    from nemoclaw_runtime.registry import parse_extra_args

    return parse_extra_args(settings.vllm_extra_args_json)


def _notes(profile: VllmProfile | None, request: UpRequest, settings: Settings, model: VllmModel,
           extra: tuple[str, ...], auto: bool) -> tuple[str, ...]:
    notes = []
    if model.adhoc:
        notes.append(f"{model.hf_id} is not a registry entry: vLLM's defaults, the context from the fit")
        if not any(token.split("=", 1)[0] == "--tool-call-parser" for token in extra):
            notes.append("no tool-call parser: agents need one — add --enable-auto-tool-choice --tool-call-parser "
                         "NAME to NEMOCLAW_VLLM_EXTRA_ARGS_JSON (validation sends a tool call)")
    if auto:
        notes.append("--max-model-len auto: the largest context that fits this host (decided by the fit)")
    if not request.fit_check:
        notes.append("--no-fit-check: the fit is shown but never refuses")
    if profile is None:
        notes.append(f"no vLLM host profile for this machine; using the {FALLBACK_GPU_PROFILE} image")
    if request.image or settings.vllm_image:
        notes.append("image overridden by " + ("--image" if request.image else "NEMOCLAW_VLLM_IMAGE"))
    if request.host not in ("127.0.0.1", "localhost", "::1"):
        notes.append(f"port published on {request.host}: reachable from other machines")
    return tuple(notes)


# --- the fit's pieces -------------------------------------------------------------------------------------------


def requested_context(request: UpRequest, settings: Settings) -> tuple[int | None, bool]:
    """``(tokens, auto)``: ``--max-model-len`` (N or auto), else ``NEMOCLAW_VLLM_MAX_MODEL_LEN``, else neither
    (the registry's value stands)."""
    if request.max_model_len is not None:
        return request.max_model_len, False
    if request.auto_context:
        return None, True
    raw = settings.vllm_max_model_len
    if raw == "auto":
        return None, True
    return (int(raw), False) if raw else (None, False)


def set_flag(argv: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    """``argv`` with every ``flag`` (``--flag V``, ``--flag=V``, ``_`` spellings too) set to ``value``; when absent,
    inserted right after ``vllm serve <model> --port 8000``."""
    out: list[str] = []
    found = False
    skip = False
    for position, token in enumerate(argv):
        if skip:
            skip = False
            continue
        name, eq, _ = token.partition("=")
        if name.startswith("--") and "--" + name[2:].replace("_", "-") == flag:
            found = True
            if eq:
                out.append(f"{flag}={value}")
            else:
                out.extend((flag, value))
                skip = position + 1 < len(argv)
            continue
        out.append(token)
    if not found:
        out[5:5] = [flag, value]
    return tuple(out)


def _compute_capability_check(model: VllmModel, request: UpRequest, inventory: GpuInventory) -> Check | None:
    """The model's minimum compute capability against the GPUs it would get — from the inventory alone (no
    network), so ``--dry-run`` refuses too. Every GPU below it (or a named one) → exit 3 naming it, unless
    ``--no-fit-check`` (a failed check then)."""
    need = model.min_compute_capability
    if need is None or request.gpus.mode == "none":
        return None
    wanted = set(_targeted(request, inventory))
    gpus = [g for g in inventory.gpus if g.index in wanted]
    below = [g for g in gpus if g.compute_capability is not None and g.compute_capability < need]
    need_text = f"{need[0]}.{need[1]}"
    if not below:
        return Check("compute-capability", True, f"{model.hf_id} needs {need_text} or newer: "
                                                 f"{_describe_capabilities(gpus) or 'capability unknown'}")
    line = f"{model.hf_id} needs compute capability {need_text} or newer: {_describe_capabilities(below)}"
    if len(below) < len(gpus) and request.gpus.mode == "all":
        return Check("compute-capability", True, f"{line} (left out; the other GPUs qualify)")
    if request.fit_check:
        raise NoSuitableGpu(line, remedy="run it on a GPU that meets the requirement (`nemoclaw-runtime gpus` shows "
                                         "each GPU's capability), pick another model (`nemoclaw-runtime models`), or "
                                         "pass --no-fit-check to try anyway",
                            cause="compute-capability",
                            details={"model": model.hf_id, "min_compute_capability": need_text,
                                     "gpus": [{"index": g.index, "name": g.name,
                                               "compute_capability": _cc(g.compute_capability)} for g in below]})
    return Check("compute-capability", False, line)


def _describe_capabilities(gpus: Sequence[GpuInfo]) -> str:
    return "; ".join(f"GPU {g.index} ({g.name}) has compute capability {_cc(g.compute_capability) or 'unknown'}"
                     for g in gpus)


def _cc(value: tuple[int, int] | None) -> str | None:
    return f"{value[0]}.{value[1]}" if value else None


def _targeted(request: UpRequest, inventory: GpuInventory) -> tuple[int, ...]:
    if request.gpus.mode == "none":
        return ()
    if request.gpus.mode == "indices":
        return request.gpus.indices
    return tuple(g.index for g in inventory.gpus)


def _indices_label(indices: Sequence[int]) -> str:
    return ",".join(str(i) for i in sorted(indices))


@dataclass(frozen=True)
class _Targets:
    """The GPUs the fit may use: ``pool`` (none crowded by our other servers, none below the model's compute
    capability) in the order to try them (our container's own first, then unused, then shared)."""

    pool: tuple[int, ...]
    attempts: tuple[tuple[int, ...], ...]
    narrowed: bool  # GPUs were left out: the container must be given exactly the ones chosen


def _targets(model: VllmModel, request: UpRequest, inventory: GpuInventory, placement: GpuPlacement,
             utilization: float, events: EventSink) -> _Targets:
    targeted = _targeted(request, inventory)
    crowded = [i for i in targeted if placement.used(i) + utilization > MAX_SHARED_UTILIZATION + 1e-9]
    if crowded:
        lines = "; ".join(f"GPU {i} is used by {placement.holders(i)}" for i in crowded)
        message = (f"No room for {model.hf_id} at --gpu-memory-utilization {utilization:g} on "
                   f"GPU{'s' if len(crowded) > 1 else ''} {_indices_label(crowded)}: {lines} (servers share a GPU only "
                   f"while their utilisations sum to at most {MAX_SHARED_UTILIZATION:g})")
        if request.gpus.mode == "indices" or len(crowded) == len(targeted):
            if request.fit_check:
                raise InsufficientResources(
                    message, remedy="stop one with `nemoclaw-runtime stop NAME`, name free GPUs with --gpus, or "
                                    "lower --gpu-memory-utilization in NEMOCLAW_VLLM_EXTRA_ARGS_JSON",
                    cause="gpus-in-use",
                    details={"gpus": {str(i): [list(h) for h in placement.held.get(i, ())] for i in crowded}})
            events(Warning(f"--no-fit-check: going on although {message}"))
            crowded = []
        else:
            events(Info(f"Leaving out the GPUs our other servers use: {lines}"))
    need = model.min_compute_capability
    below = {g.index for g in inventory.gpus
             if need and g.compute_capability is not None and g.compute_capability < need}
    pool = [i for i in targeted if i not in crowded and (i not in below or not request.fit_check)] or list(targeted)
    own = [i for i in placement.own if i in pool]
    unused = [i for i in pool if not placement.held.get(i)]
    ordered = tuple(dict.fromkeys([*own, *unused, *pool]))
    attempts = tuple(dict.fromkeys(tuple(a) for a in (own, unused, pool) if a))
    return _Targets(ordered, attempts, narrowed=len(pool) < len(targeted))


def _judge(model: VllmModel, request: UpRequest, inventory: GpuInventory, placement: GpuPlacement,
           targets: _Targets, options: ServeOptions, auto: bool, source: ModelSource,
           events: EventSink) -> FitResult:
    from nemoclaw_runtime.runtimes.fit import DECISION_REDUCE_CONTEXT, DECISION_UNKNOWN, ModelFacts, plan_fit

    events(PhaseChanged("fit", f"Checking that {model.hf_id} fits this host (config and safetensors headers)"))
    try:
        facts = source.facts(model.hf_id, revision=options.revision)
    except NemoclawError as exc:  # a gated model without a token, a repository that does not exist
        if request.fit_check:
            raise
        facts = ModelFacts(model.hf_id, options.revision, reasons=(exc.message,))
    except Exception as exc:  # noqa: BLE001 - an unknown is never a traceback and never blocks
        facts = ModelFacts(model.hf_id, options.revision, reasons=(f"reading its facts failed: {exc}",))
    judged = _own_memory_freed(inventory, placement)
    result: FitResult | None = None
    # --max-model-len auto: the first shorter context is kept while the other GPU sets (all within --gpus) are
    # tried for the full one
    shorter: FitResult | None = None
    for gpus in targets.attempts or ((),):
        result = plan_fit(facts, judged, options, gpus=list(gpus) or None,
                          min_compute_capability=model.min_compute_capability)
        if result.fits or result.decision == DECISION_UNKNOWN:
            break
        if auto and result.decision == DECISION_REDUCE_CONTEXT and shorter is None:
            shorter = result
    else:
        result = shorter or result
    assert result is not None
    return dataclasses.replace(result, auto_context=auto)


def _apply(plan: Plan, model: VllmModel, request: UpRequest, inventory: GpuInventory, placement: GpuPlacement,
           targets: _Targets, options: ServeOptions, auto: bool, result: FitResult, events: EventSink) -> Plan:
    from nemoclaw_runtime.runtimes.fit import DECISION_REDUCE_CONTEXT, DECISION_TENSOR_PARALLEL, DECISION_UNKNOWN

    argv = plan.spec.command
    checks = [c for c in plan.checks if c.name != "fit"]
    placed = False
    if result.fits:
        placed = True
        line = result.reasons[0] if result.reasons else f"{model.hf_id} fits"
        if result.decision == DECISION_TENSOR_PARALLEL:
            argv = set_flag(argv, "--tensor-parallel-size", str(result.tensor_parallel_size))
            events(Info(f"{line}: serving with --tensor-parallel-size {result.tensor_parallel_size}"))
        if options.max_model_len is None and result.max_model_len:
            argv = set_flag(argv, "--max-model-len", str(result.max_model_len))
        checks.append(Check("fit", True, line))
    elif auto and result.decision == DECISION_REDUCE_CONTEXT:
        placed = True
        argv = set_flag(argv, "--max-model-len", str(result.max_model_len_fit))
        line = (f"--max-model-len auto: {result.max_model_len_fit} tokens, the largest context that fits on GPU"
                f"{'s' if len(result.gpus) > 1 else ''} {_indices_label(result.gpus)} (the model allows "
                f"{result.max_model_len})")
        events(Info(line))
        checks.append(Check("fit", True, line))
    elif result.decision == DECISION_UNKNOWN:
        why = "; ".join(result.reasons[1:]) or "its facts are incomplete"
        events(Warning(f"Cannot tell whether {model.hf_id} fits this host ({why}); going on"))
        checks.append(Check("fit", True, f"unknown: {why}"))
    else:
        error = _refusal(result)
        if request.fit_check:
            raise error
        events(Warning(f"--no-fit-check: starting {model.hf_id} although {error.message}"))
        checks.append(Check("fit", False, error.message))

    gpus, label = _container_gpus(request, inventory, placement, targets, options, result if placed else None)
    labels = tuple((k, label if k == LABEL_GPUS else v) for k, v in plan.spec.labels)
    spec = dataclasses.replace(plan.spec, command=argv, gpus=gpus, labels=labels)
    checks = [Check("gpu", c.ok, _gpu_line(gpus, inventory, label)) if c.name == "gpu" else c for c in checks]
    return dataclasses.replace(plan, spec=spec, fit=result, checks=tuple(checks))


def _refusal(result: FitResult) -> NemoclawError:
    """The engine's refusal, with the numbers in its one line and every way out in the remedy."""
    from nemoclaw_runtime.runtimes.fit import DECISION_REFUSED, refusal

    error = refusal(result)
    assert error is not None
    message = error.message
    # the first line already carries the numbers when a placement was priced (needed_bytes), or names the
    # compute capability when GPUs were refused for it; otherwise the next reason says why
    priced = result.needed_bytes is not None
    capability = result.decision == DECISION_REFUSED and bool(result.refused_gpus)
    if len(result.reasons) > 1 and not priced and not capability:
        message = f"{message}: {result.reasons[1]}"
    ways = ["--max-model-len auto"] if result.max_model_len_fit else []
    remedy = f"{error.remedy}; or {', or '.join([*ways, '--no-fit-check to try anyway'])}"
    return type(error)(message, remedy=remedy, cause=error.cause, details=error.details)


def _container_gpus(request: UpRequest, inventory: GpuInventory, placement: GpuPlacement, targets: _Targets,
                    options: ServeOptions, result: FitResult | None) -> tuple[GpuRequest, str]:
    """The GPUs the container gets and the ``LABEL_GPUS`` value: exactly the ones the fit placed it on; without a
    placement (facts unknown, --no-fit-check) the first ones free of our other servers when GPUs had to be left
    out, else the request as it was (vLLM then computes on the first ``tensor × pipeline`` of them)."""
    everyone = tuple(g.index for g in inventory.gpus)
    if options.pipeline_parallel_size <= 1 and result is not None and result.gpus:
        chosen = tuple(sorted(result.gpus))
    else:
        width = (options.tensor_parallel_size or 1) * options.pipeline_parallel_size
        if request.gpus.mode == "indices":
            return request.gpus, _indices_label(request.gpus.indices[:width])
        if not (targets.narrowed or placement.held):
            return request.gpus, _indices_label(everyone[:width])
        chosen = tuple(sorted(targets.pool[:width]))
    if request.gpus.mode == "all" and set(chosen) == set(everyone):
        return request.gpus, _indices_label(chosen)
    return GpuRequest("indices", chosen), _indices_label(chosen)


def _gpu_line(gpus: GpuRequest, inventory: GpuInventory, label: str) -> str:
    line = gpu_detail(gpus, inventory)
    return f"{line}; computes on GPU {label}" if label and gpus.mode == "all" else line


def _own_memory_freed(inventory: GpuInventory, placement: GpuPlacement) -> GpuInventory:
    """The inventory as if our container of this name were gone (``up`` reuses or replaces it): the share of each
    of its GPUs it may hold counts as free again."""
    share = placement.own_utilization
    if not placement.own or not share:
        return inventory
    if inventory.unified_memory:
        machine = inventory.machine
        total, available = machine.memory_total_mib, machine.memory_available_mib
        if not total or available is None:
            return inventory
        back = int(total // max(len(inventory.gpus), 1) * share)
        return dataclasses.replace(inventory, machine=dataclasses.replace(
            machine, memory_available_mib=min(total, available + back)))
    gpus = []
    for g in inventory.gpus:
        if g.index in placement.own and g.memory_total_mib and g.memory_free_mib is not None:
            freed = min(g.memory_total_mib, g.memory_free_mib + int(g.memory_total_mib * share))
            g = dataclasses.replace(g, memory_free_mib=freed)
        gpus.append(g)
    return dataclasses.replace(inventory, gpus=tuple(gpus))


__all__ = ["CONTAINER_HF_HOME", "VllmDriver", "requested_context", "set_flag"]
