"""``nemoclaw-runtime fit vllm``: will a model fit this host, and where — and, when it does not, how many hosts like
this one would hold it and the commands that get there (``up --nodes``, ``export kubernetes``).

The options are checked here, at the library's edge, as ``make_request`` checks ``up``'s, before any GPU, network or
disk; the model and its flags are resolved through the registry as the vLLM driver resolves them; the judgement is
the fit engine's (``plan_fit``) and, beyond one host, the group fit's (``hosts_needed``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry import load_registry, parse_extra_args
from nemoclaw_runtime.runtimes.docker.spec import GpuRequest
from nemoclaw_runtime.runtimes.drivers.contract import parse_max_model_len
from nemoclaw_runtime.runtimes.drivers.vllm_fit import set_flag
from nemoclaw_runtime.runtimes.fit import DECISION_DOES_NOT_FIT, ServeOptions, hosts_needed, hub, plan_fit

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.registry import VllmModel
    from nemoclaw_runtime.runtimes.fit import FitResult, ModelFacts, ModelSource

__all__ = ["beyond_this_host", "fit_on_this_host"]


def fit_on_this_host(model: str | None, *, gpus: str, max_model_len: int | str | None,
                     gpu_memory_utilization: float | None, kv_cache_dtype: str | None, settings: Settings,
                     inventory: GpuInventory | None, model_source: ModelSource | None) -> FitResult:
    """The public ``fit`` (``nemoclaw_runtime.api.fit`` documents every option); ``inventory`` None: this host's,
    read once the options passed their checks."""
    # Checked at the library's edge as make_request checks up's options, before any GPU, network or disk.
    if model is not None and model.strip():
        model = checks.check_plain_text(model, "--model")
    if kv_cache_dtype is not None:
        kv_cache_dtype = checks.check_plain_text(kv_cache_dtype, "--kv-cache-dtype")
    if gpu_memory_utilization is not None:
        share_remedy = "pass a share of each GPU such as 0.9"
        gpu_memory_utilization = checks.check_number(gpu_memory_utilization, "--gpu-memory-utilization",
                                                     low=0.0, high=1.0, remedy=share_remedy)
        if gpu_memory_utilization == 0:
            raise InvalidInput("Invalid --gpu-memory-utilization 0: must be more than 0 and at most 1",
                               remedy=share_remedy)
    if inventory is None:
        from nemoclaw_runtime.gpu import detect_gpus

        inventory = detect_gpus(settings)
    registry = load_registry()
    profile = registry.vllm_profile_for(inventory.profile)
    wanted = model if model is not None and model.strip() else settings.vllm_model
    source_name = "--model" if model is not None and model.strip() else "NEMOCLAW_VLLM_MODEL"
    entry = registry.resolve_vllm_model(wanted, profile=profile, source=source_name)
    request = GpuRequest.parse(gpus)
    if request.mode == "none":
        raise InvalidInput("--gpus none: a fit needs GPUs", remedy="pass --gpus all or GPU indices such as 0,1")
    context, auto = parse_max_model_len(max_model_len)
    if context is None and not auto and settings.vllm_max_model_len:
        context, auto = parse_max_model_len(settings.vllm_max_model_len, source="NEMOCLAW_VLLM_MAX_MODEL_LEN")
    argv = entry.serve_argv(parse_extra_args(settings.vllm_extra_args_json))
    if gpu_memory_utilization is not None:
        argv = set_flag(argv, "--gpu-memory-utilization", f"{gpu_memory_utilization:g}")
    if kv_cache_dtype is not None:
        argv = set_flag(argv, "--kv-cache-dtype", kv_cache_dtype.strip())
    if context is not None:
        argv = set_flag(argv, "--max-model-len", str(context))
    options = ServeOptions.from_argv(argv)  # bad values → InvalidInput (exit 2)
    source = model_source if model_source is not None else hub.default_model_source(settings)
    facts = source.facts(entry.hf_id, revision=options.revision)
    result = plan_fit(facts, inventory, options, gpus=list(request.indices) if request.mode == "indices" else None,
                      min_compute_capability=entry.min_compute_capability)
    auto = auto or (entry.adhoc and context is None)  # a bare HF id is served at the context the fit gives
    result = dataclasses.replace(result, auto_context=True) if auto else result
    return dataclasses.replace(result, beyond=beyond_this_host(result, facts, inventory, options, entry))


def beyond_this_host(result: FitResult, facts: ModelFacts, inventory: GpuInventory, options: ServeOptions,
                     entry: VllmModel) -> dict[str, Any] | None:
    """A model this host cannot hold: the fewest hosts like it that would (the group fit), and the two ways there —
    `up --nodes` over Docker engines, and manifests for a Kubernetes cluster."""
    reduced_is_the_answer = result.auto_context and result.decision == "reduce-context"
    if result.fits or reduced_is_the_answer or result.decision not in (DECISION_DOES_NOT_FIT, "reduce-context"):
        return None
    hosts = hosts_needed(facts, inventory, options, min_compute_capability=entry.min_compute_capability)
    if hosts is None:
        return {"hosts": None, "up": None, "kubernetes": None}
    workers = ",".join(f"ssh://HOST{i}" for i in range(2, hosts + 1))
    gpus = max(1, len(inventory.gpus))
    return {"hosts": hosts,
            "up": f"nemoclaw-runtime up vllm --model {entry.slug} --nodes local,{workers} --nic IFACE",
            "kubernetes": f"nemoclaw-runtime export kubernetes vllm --model {entry.slug} --nodes {hosts} "
                          f"--gpus {gpus}"}
