"""The managed-vLLM driver: from a model slug to the exact container that serves it.

Pure planning (no Docker, no network): the registry gives the ``vllm serve`` argv, the GPU profile gives the image
and the default model, the settings give port, image override and extra args. The image's own entrypoint is kept
(NGC images exec the command), the command is the argv — never a shell string, never a ``pip install`` at start.
The fit's pieces (the GPUs to try, the judgement, applying it to the plan) are in ``vllm_fit.py``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import (
    InsufficientResources,
    InvalidInput,
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
    Mount,
    PortBinding,
    url_host,
)
from nemoclaw_runtime.runtimes.drivers.contract import (
    Check,
    DriverBase,
    GpuPlacement,
    Plan,
    Served,
    UpRequest,
)
from nemoclaw_runtime.runtimes.drivers.steps import gpu_detail
from nemoclaw_runtime.runtimes.drivers.vllm_fit import (
    apply,
    compute_capability_check,
    indices_label,
    judge,
    set_flag,
    targeted,
    targets,
)

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.kernel.secret import Secret
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.registry import VllmModel, VllmProfile
    from nemoclaw_runtime.runtimes.drivers.contract import Services
    from nemoclaw_runtime.runtimes.fit import ModelSource
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
        capability = compute_capability_check(model, request, inventory)
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
        gpu_targets = targets(model, request, inventory, placement, options.gpu_memory_utilization, events)
        result = judge(model, request, inventory, placement, gpu_targets, options, auto, source, events)
        return apply(plan, model, request, inventory, placement, gpu_targets, options, auto, result, events)

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
                    (LABEL_IMAGE, image), (LABEL_GPUS, indices_label(targeted(request, inventory))),
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


# --- the requested context (the plan's and the fit's; the fit's own pieces are in vllm_fit.py) --------------------


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


__all__ = ["CONTAINER_HF_HOME", "VllmDriver", "requested_context", "set_flag"]
