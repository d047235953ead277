"""The managed-vLLM driver's fit: judging a plan's model against this host's GPUs, then applying the judgement.

``VllmDriver.fit`` (``drivers/vllm.py``) calls ``targets`` (which GPUs the fit may try, in order), ``judge`` (the
fit engine, ``runtimes/fit``, over those GPU sets) and ``apply`` (the plan's argv, GPUs, labels and checks as judged);
``VllmDriver.plan`` calls ``compute_capability_check`` (the one fit check made from the inventory alone) and labels
the container with ``indices_label(targeted(...))``. They live apart from the driver so that ``vllm.py`` keeps the
plan and the pipeline hooks only; nothing here imports ``vllm.py`` (no cycle: ``set_flag``, which both need, lives
here and ``vllm.py`` re-exports it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.errors import InsufficientResources, NemoclawError, NoSuitableGpu
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning
from nemoclaw_runtime.runtimes.docker.spec import LABEL_GPUS, GpuRequest
from nemoclaw_runtime.runtimes.drivers.contract import (
    MAX_SHARED_UTILIZATION,
    Check,
    GpuPlacement,
    Plan,
    UpRequest,
)
from nemoclaw_runtime.runtimes.drivers.steps import gpu_detail

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInfo, GpuInventory
    from nemoclaw_runtime.registry import VllmModel
    from nemoclaw_runtime.runtimes.fit import FitResult, ModelSource, ServeOptions


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


def compute_capability_check(model: VllmModel, request: UpRequest, inventory: GpuInventory) -> Check | None:
    """The model's minimum compute capability against the GPUs it would get — from the inventory alone (no
    network), so ``--dry-run`` refuses too. Every GPU below it (or a named one) → exit 3 naming it, unless
    ``--no-fit-check`` (a failed check then)."""
    need = model.min_compute_capability
    if need is None or request.gpus.mode == "none":
        return None
    wanted = set(targeted(request, inventory))
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


def targeted(request: UpRequest, inventory: GpuInventory) -> tuple[int, ...]:
    if request.gpus.mode == "none":
        return ()
    if request.gpus.mode == "indices":
        return request.gpus.indices
    return tuple(g.index for g in inventory.gpus)


def indices_label(indices: Sequence[int]) -> str:
    return ",".join(str(i) for i in sorted(indices))


@dataclass(frozen=True)
class _Targets:
    """The GPUs the fit may use: ``pool`` (none crowded by our other servers, none below the model's compute
    capability) in the order to try them (our container's own first, then unused, then shared)."""

    pool: tuple[int, ...]
    attempts: tuple[tuple[int, ...], ...]
    narrowed: bool  # GPUs were left out: the container must be given exactly the ones chosen


def targets(model: VllmModel, request: UpRequest, inventory: GpuInventory, placement: GpuPlacement,
            utilization: float, events: EventSink) -> _Targets:
    asked = targeted(request, inventory)
    crowded = [i for i in asked if placement.used(i) + utilization > MAX_SHARED_UTILIZATION + 1e-9]
    if crowded:
        lines = "; ".join(f"GPU {i} is used by {placement.holders(i)}" for i in crowded)
        message = (f"No room for {model.hf_id} at --gpu-memory-utilization {utilization:g} on "
                   f"GPU{'s' if len(crowded) > 1 else ''} {indices_label(crowded)}: {lines} (servers share a GPU only "
                   f"while their utilisations sum to at most {MAX_SHARED_UTILIZATION:g})")
        if request.gpus.mode == "indices" or len(crowded) == len(asked):
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
    pool = [i for i in asked if i not in crowded and (i not in below or not request.fit_check)] or list(asked)
    own = [i for i in placement.own if i in pool]
    unused = [i for i in pool if not placement.held.get(i)]
    ordered = tuple(dict.fromkeys([*own, *unused, *pool]))
    attempts = tuple(dict.fromkeys(tuple(a) for a in (own, unused, pool) if a))
    return _Targets(ordered, attempts, narrowed=len(pool) < len(asked))


def judge(model: VllmModel, request: UpRequest, inventory: GpuInventory, placement: GpuPlacement,
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


def apply(plan: Plan, model: VllmModel, request: UpRequest, inventory: GpuInventory, placement: GpuPlacement,
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
                f"{'s' if len(result.gpus) > 1 else ''} {indices_label(result.gpus)} (the model allows "
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
            return request.gpus, indices_label(request.gpus.indices[:width])
        if not (targets.narrowed or placement.held):
            return request.gpus, indices_label(everyone[:width])
        chosen = tuple(sorted(targets.pool[:width]))
    if request.gpus.mode == "all" and set(chosen) == set(everyone):
        return request.gpus, indices_label(chosen)
    return GpuRequest("indices", chosen), indices_label(chosen)


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


__all__ = ["apply", "compute_capability_check", "indices_label", "judge", "set_flag", "targeted", "targets"]
