"""Will it fit, and where: the decision, from a model's facts, the GPU inventory and the serve flags.

Per GPU, vLLM's budget is ``total × gpu_memory_utilization``, and vLLM refuses to start when the GPU's *free*
memory is below that (memory other processes hold counts). On unified memory (DGX Spark's GB10, Jetson) the
total is the host's memory and the free figure the host's available memory. A placement on ``T`` GPUs fits when,
on each of them::

    weights / T + overhead(T) + kv(max_model_len, T)  <=  budget

The decisions, in order (:func:`plan_fit`):

1. ``fits``: as asked (the requested tensor-parallel size, or one GPU; GPUs picked by free memory);
2. ``reduce-context``: the largest ``--max-model-len`` (a multiple of 256, at least ``min_context``) that fits;
3. ``tensor-parallel``: the smallest tensor-parallel size over GPUs of the same model that fits at the asked
   context (a power of two that divides the attention heads) — unless a size was requested;
4. ``does-not-fit``: not on this host — the shortfall in bytes and what would fit.

``refused`` (a GPU below the model's minimum compute capability, or no usable GPU at all) and ``unknown`` (the
config or the stored bytes could not be had) come before any of these. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nemoclaw_runtime.gpu.facts import MIB
from nemoclaw_runtime.gpu.inventory import GpuInventory
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, NoSuitableGpu, PreflightRefused
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.runtimes.fit.architecture import (
    FULL,
    MLA,
    Architecture,
    ArchitectureError,
    KvCache,
    LayerSpec,
    kv_dtype_bytes,
    parse_architecture,
    text_config,
)
from nemoclaw_runtime.runtimes.fit.facts import ModelFacts
from nemoclaw_runtime.runtimes.fit.options import SMALL_GPU_BYTES, ServeOptions

GIB = 1024**3
CONTEXT_MULTIPLE = 256
MIN_CONTEXT = 4096  # a reduced context shorter than this is no answer; the next decision is tried instead

#: Non-KV memory vLLM needs beside the weights, per GPU (see :func:`estimate_overhead`).
RUNTIME_RESERVE = 512 * MIB  # non-torch memory: cuBLAS / NCCL workspaces, allocator slack
CUDA_GRAPH_RESERVE = 512 * MIB  # captured CUDA graphs (less with --enforce-eager)
TP_COMM_RESERVE = 256 * MIB  # NCCL buffers when tensor parallelism is on
ENCODER_RESERVE = GIB  # multimodal encoder profiling (vision tower loaded)

DECISION_FITS = "fits"
DECISION_REDUCE_CONTEXT = "reduce-context"
DECISION_TENSOR_PARALLEL = "tensor-parallel"
DECISION_DOES_NOT_FIT = "does-not-fit"
DECISION_REFUSED = "refused"
DECISION_UNKNOWN = "unknown"

def min_compute_capability_for(model_id: str) -> tuple[int, int] | None:
    """The minimum compute capability the registry records for ``model_id`` (its HF id or slug), else ``None``.
    One source: ``min_compute_capability`` in registry/data/vllm.toml."""
    from nemoclaw_runtime.registry import load_registry

    found = load_registry().find_vllm_model(model_id)
    return found.min_compute_capability if found is not None else None


# --- GPUs and their budgets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuBudget:
    """One GPU as the fit engine sees it. ``usable`` is False with ``why_not`` when vLLM could not start on it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int | None
    budget_bytes: int
    compute_capability: tuple[int, int] | None
    unified: bool
    usable: bool = True
    why_not: str | None = None

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})"

    def to_dict(self) -> dict[str, Any]:
        cc = self.compute_capability
        return {"index": self.index, "name": self.name, "total_bytes": self.total_bytes,
                "free_bytes": self.free_bytes, "budget_bytes": self.budget_bytes,
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None, "unified_memory": self.unified,
                "usable": self.usable, "why_not": self.why_not}


def gpu_budgets(inventory: GpuInventory, gpu_memory_utilization: float,
                min_compute_capability: tuple[int, int] | None = None) -> list[GpuBudget]:
    """Every GPU of ``inventory`` with its budget and whether vLLM could start on it at this utilisation."""
    budgets: list[GpuBudget] = []
    machine = inventory.machine
    count = max(len(inventory.gpus), 1)
    for gpu in inventory.gpus:
        unified = inventory.unified_memory
        if unified:
            total_mib: int | None = machine.memory_total_mib // count
            free_mib: int | None = machine.memory_available_mib // count
        elif gpu.mig_enabled:
            sizes = [m.memory_total_mib for m in gpu.mig_devices if m.memory_total_mib]
            # the container may land on any instance: budget on the smallest (free memory per instance unknown)
            total_mib, free_mib = (min(sizes) if sizes else None), None
        else:
            total_mib, free_mib = gpu.memory_total_mib, gpu.memory_free_mib
        total = (total_mib or 0) * MIB
        free = free_mib * MIB if free_mib is not None else None
        budget = int(total * gpu_memory_utilization)
        why: str | None = None
        cc = gpu.compute_capability
        if min_compute_capability and cc is not None and cc < min_compute_capability:
            why = (f"compute capability {cc[0]}.{cc[1]} is below the {min_compute_capability[0]}."
                   f"{min_compute_capability[1]} this model needs")
        elif gpu.mig_enabled and not gpu.mig_devices:
            why = "MIG is enabled but no MIG instance exists"
        elif total <= 0:
            why = "its memory size is unknown"
        elif free is not None and free < budget:
            ceiling = math.floor(free / total * 100) / 100
            where = "available host memory" if unified else "free memory"
            why = (f"{where} {_gib(free)} is below {gpu_memory_utilization:g} × {_gib(total)} = {_gib(budget)} "
                   f"(other processes hold memory); vLLM would refuse to start — stop them or use "
                   f"--gpu-memory-utilization {ceiling:.2f} or lower")
        budgets.append(GpuBudget(gpu.index, gpu.name, total, free, budget, cc, unified, why is None, why))
    return budgets


# --- overhead -------------------------------------------------------------------------------------------------


def estimate_overhead(arch: Architecture | None, options: ServeOptions, tp: int,
                      batched_tokens: int | None = None) -> int:
    """Per GPU, the non-KV memory beside the weights: the peak activations of vLLM's profiling run
    (``max_num_batched_tokens`` hidden states and MLP intermediates, and the sampler's float32 logits for
    ``max_num_seqs`` sequences), CUDA graphs, non-torch memory, NCCL buffers and a multimodal encoder's profile.
    An estimate: vLLM measures it at start-up; this errs on the large side. ``batched_tokens`` defaults to
    ``--max-num-batched-tokens`` or vLLM's default for a large GPU."""
    reserve = RUNTIME_RESERVE + (CUDA_GRAPH_RESERVE // 2 if options.enforce_eager else CUDA_GRAPH_RESERVE)
    if tp > 1:
        reserve += TP_COMM_RESERVE
    if arch is None:
        return reserve + GIB
    act_bytes = 2
    hidden = arch.hidden_size
    per_token = (4 * hidden + 3 * max(arch.intermediate_size // tp, 1)) * act_bytes
    activations = (batched_tokens or options.batched_tokens(SMALL_GPU_BYTES)) * per_token
    logits = options.max_num_seqs * arch.vocab_size * 4 * 2
    encoder = ENCODER_RESERVE if arch.multimodal and not options.language_model_only else 0
    return reserve + activations + logits + encoder


# --- the result -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    """The answer. Stable JSON names (:meth:`to_dict`): ``model``, ``weights_bytes`` (the whole checkpoint),
    ``kv_bytes_per_token`` (summed over the chosen GPUs, for the layers whose cache grows with the context),
    ``overhead_bytes`` and ``budget_bytes`` (summed over the chosen GPUs), ``max_model_len`` (asked),
    ``max_model_len_fit`` (the largest that fits on the chosen GPUs; 0 when the weights alone do not), ``fits``
    (at the asked context), ``tensor_parallel_size``, ``gpus`` (indices), ``reasons``, ``assumptions``; plus
    ``decision`` and the details below."""

    model: str
    weights_bytes: int | None
    kv_bytes_per_token: int | None
    overhead_bytes: int
    budget_bytes: int
    max_model_len: int | None
    max_model_len_fit: int
    fits: bool
    tensor_parallel_size: int
    gpus: tuple[int, ...]
    reasons: tuple[str, ...]
    assumptions: tuple[str, ...]
    decision: str
    needed_bytes: int | None = None
    shortfall_bytes: int = 0
    kv_fixed_bytes: int = 0
    gpu_memory_utilization: float = 0.9
    kv_cache_dtype: str = "auto"
    revision: str | None = None
    weights_source: str | None = None
    architecture: str | None = None
    min_compute_capability: tuple[int, int] | None = None
    refused_gpus: tuple[int, ...] = ()
    alternatives: tuple[Mapping[str, Any], ...] = ()
    gpu_budgets: tuple[GpuBudget, ...] = field(default=(), repr=False)
    auto_context: bool = False  # --max-model-len auto: a reduced context is the answer, not a refusal
    #: When it does not fit this host: how many hosts like it would hold it and the commands that do it
    #: (``up --nodes``, ``export kubernetes``); set by the public ``fit``, None otherwise.
    beyond: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        cc = self.min_compute_capability
        return {
            "model": self.model,
            "weights_bytes": self.weights_bytes,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "overhead_bytes": self.overhead_bytes,
            "budget_bytes": self.budget_bytes,
            "max_model_len": self.max_model_len,
            "max_model_len_fit": self.max_model_len_fit,
            "fits": self.fits,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpus": list(self.gpus),
            "reasons": list(self.reasons),
            "assumptions": list(self.assumptions),
            "decision": self.decision,
            "needed_bytes": self.needed_bytes,
            "shortfall_bytes": self.shortfall_bytes,
            "kv_fixed_bytes": self.kv_fixed_bytes,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "kv_cache_dtype": self.kv_cache_dtype,
            "revision": self.revision,
            "weights_source": self.weights_source,
            "architecture": self.architecture,
            "min_compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
            "refused_gpus": list(self.refused_gpus),
            "alternatives": [dict(a) for a in self.alternatives],
            "gpu_budgets": [b.to_dict() for b in self.gpu_budgets],
            "auto_context": self.auto_context,
            "beyond": dict(self.beyond) if self.beyond is not None else None,
        }

    def serve_flags(self) -> tuple[str, ...]:
        """The ``vllm serve`` flags this decision implies (context and tensor parallelism); empty when nothing
        runs. The GPU set is the container's business (``--gpus device=...``), see :attr:`gpus`."""
        if self.decision == DECISION_REDUCE_CONTEXT:
            return ("--max-model-len", str(self.max_model_len_fit),
                    "--tensor-parallel-size", str(self.tensor_parallel_size))
        if self.fits:
            return ("--max-model-len", str(self.max_model_len),
                    "--tensor-parallel-size", str(self.tensor_parallel_size))
        return ()


def refusal(result: FitResult) -> PreflightRefused | None:
    """The typed refusal (exit 3) for a result that cannot run as asked; ``None`` when it fits or is unknown.

    ``refused`` → :class:`NoSuitableGpu`; ``does-not-fit`` and ``reduce-context`` (it runs only with a shorter
    context than asked) → :class:`InsufficientResources`. ``details`` is the whole result.
    """
    if result.fits or result.decision == DECISION_UNKNOWN:
        return None
    details = result.to_dict()
    message = result.reasons[0] if result.reasons else f"{result.model} does not fit this host"
    if result.decision == DECISION_REFUSED:
        return NoSuitableGpu(message, remedy="run it on a GPU that meets the requirement, or pick another model",
                             cause="no-suitable-gpu", details=details)
    if result.decision == DECISION_REDUCE_CONTEXT:
        remedy = (f"use --max-model-len {result.max_model_len_fit} (the largest that fits), or free GPU memory"
                  if result.max_model_len_fit else "pick a smaller or quantised model")
    else:
        remedy = (f"use --max-model-len {result.max_model_len_fit}" if result.max_model_len_fit
                  else "pick a smaller or quantised model, or a host with more GPU memory")
    return InsufficientResources(message, remedy=remedy, cause="insufficient-gpu-memory", details=details)


# --- the decision ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    tp: int
    gpus: tuple[GpuBudget, ...]
    need_per_gpu: int  # at the asked context
    overhead_per_gpu: int
    kv_fit: int  # largest context that fits here

    @property
    def min_budget(self) -> int:
        return min(g.budget_bytes for g in self.gpus)

    @property
    def fits(self) -> bool:
        return all(self.need_per_gpu <= g.budget_bytes for g in self.gpus)

    @property
    def shortfall(self) -> int:
        return sum(max(0, self.need_per_gpu - g.budget_bytes) for g in self.gpus)


def plan_fit(
    facts: ModelFacts,
    inventory: GpuInventory,
    options: ServeOptions | None = None,
    *,
    max_model_len: int | None = None,
    gpus: Sequence[int] | None = None,
    tensor_parallel_size: int | None = None,
    min_compute_capability: tuple[int, int] | None = None,
    min_context: int = MIN_CONTEXT,
    overhead_bytes: int | None = None,
) -> FitResult:
    """Decide whether and where ``facts``' model runs on ``inventory`` with vLLM.

    Args:
        facts: the model's config and stored bytes (from a :class:`ModelSource`).
        inventory: the GPU inventory (live or replayed).
        options: the serve flags (``ServeOptions.from_argv(entry.serve_argv(extra))``); vLLM's defaults if None.
        max_model_len: the context asked for; default the flags' ``--max-model-len``, else the config's maximum.
        gpus: restrict the placement to these GPU indices (an unknown index is :class:`InvalidInput`).
        tensor_parallel_size: a requested size (default the flags' ``--tensor-parallel-size``); respected as is.
        min_compute_capability: the model's minimum, e.g. ``(8, 9)``; default the registry's ``min_compute_capability``.
        min_context: the shortest reduced context worth proposing (decision 2).
        overhead_bytes: the per-GPU non-KV overhead, instead of :func:`estimate_overhead`.
    """
    opts = options or ServeOptions()
    tp_asked = tensor_parallel_size or opts.tensor_parallel_size
    min_cc = min_compute_capability or min_compute_capability_for(facts.model_id)
    assumptions: list[str] = list(facts.assumptions)
    reasons: list[str] = list(facts.reasons)
    budgets = gpu_budgets(inventory, opts.gpu_memory_utilization, min_cc)
    batched = opts.batched_tokens(max((g.total_bytes for g in budgets), default=SMALL_GPU_BYTES))
    arch, kv = kv_model(facts, opts, batched, reasons, assumptions)
    asked = max_model_len or opts.max_model_len or (arch.max_position_embeddings if arch else None)
    weights = weights_at_dtype(facts, opts, arch, assumptions)
    base: dict[str, Any] = dict(
        model=facts.model_id, weights_bytes=weights, max_model_len=asked,
        gpu_memory_utilization=opts.gpu_memory_utilization, kv_cache_dtype=opts.kv_cache_dtype,
        revision=facts.revision, weights_source=facts.weights.source if facts.weights else None,
        architecture=arch.describe() if arch else None, min_compute_capability=min_cc,
        gpu_budgets=tuple(budgets), auto_context=opts.max_model_len_auto,
    )
    _note_assumptions(assumptions, opts, arch, facts, overhead_bytes)
    for gpu in inventory.gpus:
        sizes = [m.memory_total_mib for m in gpu.mig_devices if m.memory_total_mib]
        if gpu.mig_enabled and sizes and not inventory.unified_memory:
            assumptions.append(f"GPU {gpu.index} is in MIG mode: budgeted on its smallest of {len(sizes)} "
                               f"instance(s), {format_bytes(min(sizes) * MIB)}; the instance's free memory is not "
                               "checked")

    candidates = _candidates(budgets, gpus)
    if not inventory.gpus:
        reasons.insert(0, f"No NVIDIA GPU on this host: {inventory.reason or 'none found'}")
        return _result(base, DECISION_REFUSED, reasons, assumptions, kv_bytes_per_token=None)
    cc_refused = [g for g in candidates if g.why_not and "compute capability" in (g.why_not or "")]
    usable = [g for g in candidates if g.usable]
    unknown_cc = [g for g in usable if g.compute_capability is None]
    if min_cc and unknown_cc:
        assumptions.append(f"compute capability unknown for {', '.join(g.label for g in unknown_cc)}; "
                           f"assumed to meet {min_cc[0]}.{min_cc[1]}")
    if not usable:
        for g in candidates:
            reasons.append(f"{g.label}: {g.why_not}")
        if cc_refused and len(cc_refused) == len(candidates):
            assert min_cc is not None
            reasons.insert(0, f"{facts.model_id} needs compute capability {min_cc[0]}.{min_cc[1]} or newer: "
                              f"{_describe_capabilities(cc_refused)}")
            return _result(base, DECISION_REFUSED, reasons, assumptions, kv_bytes_per_token=None,
                           refused_gpus=tuple(g.index for g in cc_refused))
        reasons.insert(0, f"No GPU can take {facts.model_id} at --gpu-memory-utilization "
                          f"{opts.gpu_memory_utilization:g}")
        return _result(base, DECISION_DOES_NOT_FIT, reasons, assumptions, kv_bytes_per_token=None,
                       refused_gpus=tuple(g.index for g in cc_refused))
    for g in candidates:
        if not g.usable:
            assumptions.append(f"{g.label} left out: {g.why_not}")
    refused_ids = tuple(g.index for g in cc_refused)

    if arch is not None and tp_asked and not arch.valid_tensor_parallel(tp_asked):
        valid = [tp for tp in range(1, min(arch.num_attention_heads, 64) + 1) if arch.valid_tensor_parallel(tp)]
        raise InvalidInput(f"--tensor-parallel-size {tp_asked} does not divide {facts.model_id}'s "
                           f"{arch.num_attention_heads} attention heads / {arch.num_key_value_heads} KV heads; "
                           "vLLM would refuse to start",
                           remedy=f"use --tensor-parallel-size {' or '.join(map(str, valid[:8]))}",
                           details={"option": "--tensor-parallel-size", "tensor_parallel_size": tp_asked})
    model_max = model_max_len(facts.config or {}, arch) if arch is not None else None
    if model_max is not None and asked is not None and asked > model_max:
        reasons.insert(0, f"--max-model-len {asked} is above {facts.model_id}'s own maximum of {model_max} tokens "
                          "(max_position_embeddings × rope scaling in its config.json); vLLM would refuse it — "
                          f"use --max-model-len {model_max} or less")
        return _result(base, DECISION_DOES_NOT_FIT, reasons, assumptions, kv_bytes_per_token=None,
                       refused_gpus=refused_ids)
    if weights is None or arch is None or kv is None or asked is None:
        return _unknown(base, reasons, assumptions, usable, weights, arch, opts, overhead_bytes, refused_ids,
                        batched)

    def overhead(tp: int) -> int:
        return overhead_bytes if overhead_bytes is not None else estimate_overhead(arch, opts, tp, batched)

    ceiling = max(asked, arch.max_position_embeddings or 0)
    if model_max is not None:
        ceiling = min(ceiling, model_max)

    def place(tp: int, chosen: Sequence[GpuBudget]) -> _Placement:
        over = overhead(tp)
        fixed = -(-weights // tp) + over
        need = fixed + kv.bytes_for(tp, asked)
        kv_fit = kv.max_context(tp, min(g.budget_bytes for g in chosen) - fixed, ceiling, CONTEXT_MULTIPLE)
        return _Placement(tp, tuple(chosen), need, over, kv_fit)

    groups = gpu_groups(usable)
    first_tp = tp_asked or 1
    asked_placements = [place(first_tp, group[:first_tp]) for group in groups if len(group) >= first_tp]
    if not asked_placements:
        most = max(len(g) for g in groups)
        reasons.insert(0, f"--tensor-parallel-size {first_tp} needs {first_tp} usable GPUs of one model; "
                          f"this host has at most {most}")
        return _result(base, DECISION_DOES_NOT_FIT, reasons, assumptions, kv_bytes_per_token=None,
                       refused_gpus=refused_ids)
    best = max(asked_placements, key=lambda p: (p.fits, p.min_budget - p.need_per_gpu))

    def finish(decision: str, p: _Placement, fits: bool, extra_reasons: Sequence[str] = (),
               alternatives: Sequence[Mapping[str, Any]] = ()) -> FitResult:
        return _result(
            base, decision, [*extra_reasons, *reasons], assumptions,
            kv_bytes_per_token=kv.bytes_per_token(p.tp) * p.tp, overhead_bytes=p.overhead_per_gpu * p.tp,
            budget_bytes=sum(g.budget_bytes for g in p.gpus), fits=fits,
            max_model_len_fit=max(p.kv_fit, asked) if fits else p.kv_fit,
            tensor_parallel_size=p.tp, gpus=tuple(g.index for g in p.gpus), needed_bytes=p.need_per_gpu * p.tp,
            shortfall_bytes=p.shortfall, kv_fixed_bytes=kv.fixed_bytes(p.tp, asked) * p.tp,
            refused_gpus=refused_ids, alternatives=tuple(alternatives))

    # 1. as asked
    if best.fits:
        return finish(DECISION_FITS, best, True, [_fits_line(facts.model_id, best, asked)])

    # the TP search (3) is needed both for its own decision and as an alternative to (2)
    wider: _Placement | None = None
    if not tp_asked:
        for tp in tensor_parallel_sizes(arch, max(len(g) for g in groups)):
            options_at_tp = [place(tp, group[:tp]) for group in groups if len(group) >= tp]
            fitting = [p for p in options_at_tp if p.fits]
            if fitting:
                wider = max(fitting, key=lambda p: p.min_budget - p.need_per_gpu)
                break

    # 2. a shorter context on the same GPUs
    if best.kv_fit >= min(min_context, asked) and best.kv_fit < asked:
        alt = [_alternative(wider, asked)] if wider else []
        line = (f"{facts.model_id} fits {_where(best)} only with --max-model-len {best.kv_fit} (asked {asked}): "
                f"needs {_gib(best.need_per_gpu)} per GPU at {asked} tokens, budget {_gib(best.min_budget)}")
        if wider:
            line += (f"; or --tensor-parallel-size {wider.tp} on GPUs "
                     f"{','.join(str(g.index) for g in wider.gpus)} at the asked context")
        return finish(DECISION_REDUCE_CONTEXT, best, False, [line], alt)

    # 3. more GPUs at the asked context
    if wider is not None:
        line = (f"{facts.model_id} fits with --tensor-parallel-size {wider.tp} on GPUs "
                f"{','.join(str(g.index) for g in wider.gpus)} at --max-model-len {asked}: "
                f"{_gib(wider.need_per_gpu)} of {_gib(wider.min_budget)} per GPU")
        return finish(DECISION_TENSOR_PARALLEL, wider, True, [line])

    # 4. not on this host: report the placement that came closest (the widest the host allows)
    widest = best
    if not tp_asked:
        for tp in tensor_parallel_sizes(arch, max(len(g) for g in groups)):
            for group in groups:
                if len(group) >= tp:
                    p = place(tp, group[:tp])
                    if (p.kv_fit, -p.shortfall) > (widest.kv_fit, -widest.shortfall):
                        widest = p
    return finish(DECISION_DOES_NOT_FIT, widest, False, _not_fit_lines(facts.model_id, widest, weights, asked))


# --- helpers --------------------------------------------------------------------------------------------------


def kv_model(facts: ModelFacts, opts: ServeOptions, batched: int, reasons: list[str],
             assumptions: list[str]) -> tuple[Architecture | None, KvCache | None]:
    """The model's KV layout and its pricing under ``opts`` (``None, None`` when the config is missing or
    unreadable; the reason is appended). Notes about the layout go to ``assumptions``."""
    if facts.config is None:
        return None, None
    try:
        arch = parse_architecture(facts.config)
    except ArchitectureError as exc:
        reasons.append(f"cannot read the KV layout of {facts.model_id}'s config.json: {exc}")
        return None, None
    model_bytes = TORCH_BYTES.get(opts.dtype, arch.dtype_bytes)
    element = kv_dtype_bytes(opts.kv_cache_dtype, model_bytes)
    extra: tuple[LayerSpec, ...] = ()
    if opts.speculative_method in ("mtp", "deepseek_mtp", "qwen3_next_mtp", "eagle", "eagle3") and arch.mtp_layers:
        grows = [layer for layer in arch.layers if layer.kind in (FULL, MLA) or layer.compress_ratio]
        if grows:
            extra = (grows[-1],) * arch.mtp_layers
            assumptions.append(f"speculative decoding ({opts.speculative_method}): {arch.mtp_layers} draft "
                               "layer(s) keep their own KV cache")
    block = opts.block_size or 16
    assumptions.extend(arch.notes)
    return arch, KvCache(arch, element, block, batched,
                         fp8_ds_mla=opts.kv_cache_dtype == "fp8_ds_mla", extra_layers=extra)


TORCH_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}
_SIXTEEN_BIT = ("BF16", "F16")


def weights_at_dtype(facts: ModelFacts, opts: ServeOptions, arch: Architecture | None,
                     assumptions: list[str]) -> int | None:
    """The stored weight bytes, scaled where ``--dtype float32`` upcasts a 16-bit checkpoint's tensors."""
    if facts.weights is None:
        return None
    total = facts.weights.total_bytes
    if TORCH_BYTES.get(opts.dtype) != 4:
        return total
    counts = facts.weights.parameter_count
    sixteen = sum(n for dtype, n in counts.items() if dtype.upper() in _SIXTEEN_BIT)
    if sixteen:
        assumptions.append(f"--dtype {opts.dtype}: the {sixteen:,} 16-bit weights are loaded as float32 "
                           f"(+{format_bytes(sixteen * 2)})")
        return total + sixteen * 2
    if not counts and arch is not None and arch.dtype_bytes == 2:
        assumptions.append(f"--dtype {opts.dtype}: the 16-bit checkpoint's weights are assumed to double as float32")
        return total * 2
    return total


def _note_assumptions(assumptions: list[str], opts: ServeOptions, arch: Architecture | None, facts: ModelFacts,
                      overhead_bytes: int | None) -> None:
    if overhead_bytes is None:
        assumptions.append("non-KV overhead (activation peak of the profiling run, CUDA graphs, non-torch memory) "
                           "is an estimate; vLLM measures it at start-up")
    else:
        assumptions.append(f"non-KV overhead given: {_gib(overhead_bytes)} per GPU")
    if facts.weights is not None:
        assumptions.append("weights counted as stored (every tensor of the checkpoint, vision tower and MTP "
                           "layers included; all experts resident), split evenly over tensor-parallel ranks")
    if opts.pipeline_parallel_size > 1:
        assumptions.append("pipeline parallelism is not modelled; the fit assumes one pipeline stage")
    if arch is not None and any(layer.kind == "state" for layer in arch.layers):
        assumptions.append("SSM / linear-attention state counted once per sequence (prefix caching may keep "
                           "more copies)")
    if opts.quantization and facts.weights is not None and not (facts.config or {}).get("quantization_config"):
        assumptions.append(f"--quantization {opts.quantization} on an unquantised checkpoint: weights counted "
                           "at their stored size, an over-estimate")


def _candidates(budgets: list[GpuBudget], requested: Sequence[int] | None) -> list[GpuBudget]:
    if requested is None:
        return budgets
    by_index = {g.index: g for g in budgets}
    unknown = [i for i in requested if i not in by_index]
    if unknown:
        raise InvalidInput(f"No GPU with index {', '.join(map(str, unknown))} on this host "
                           f"(GPUs: {', '.join(str(g.index) for g in budgets) or 'none'})",
                           remedy="pick GPU indices listed by `nemoclaw-runtime gpus`",
                           details={"gpus": list(requested)})
    return [by_index[i] for i in dict.fromkeys(requested)]


def gpu_groups(usable: list[GpuBudget]) -> list[list[GpuBudget]]:
    """Usable GPUs grouped by model (tensor parallelism only across identical GPUs), most free memory first."""
    groups: dict[str, list[GpuBudget]] = {}
    for g in usable:
        groups.setdefault(" ".join(g.name.split()).lower(), []).append(g)
    for members in groups.values():
        members.sort(key=lambda g: (-(g.free_bytes if g.free_bytes is not None else g.budget_bytes), g.index))
    return sorted(groups.values(), key=lambda m: -m[0].budget_bytes)


def tensor_parallel_sizes(arch: Architecture, most: int) -> list[int]:
    """The tensor-parallel sizes above 1 worth trying on up to ``most`` GPUs: powers of two vLLM accepts."""
    sizes, tp = [], 2
    while tp <= most:
        if arch.valid_tensor_parallel(tp):
            sizes.append(tp)
        tp *= 2
    return sizes


def _unknown(base: dict[str, Any], reasons: list[str], assumptions: list[str], usable: list[GpuBudget],
             weights: int | None, arch: Architecture | None, opts: ServeOptions, overhead_bytes: int | None,
             refused: tuple[int, ...], batched: int) -> FitResult:
    """Facts are missing: never claim a fit; say "does not fit" only when the weights alone cannot fit anywhere."""
    if weights is not None:
        groups = gpu_groups(usable)
        best_total = max(sum(g.budget_bytes for g in group) for group in groups)
        over = overhead_bytes if overhead_bytes is not None else estimate_overhead(arch, opts, 1, batched)
        if weights + over > best_total:
            group = max(groups, key=lambda m: sum(g.budget_bytes for g in m))
            budget = sum(g.budget_bytes for g in group)
            line = (f"{base['model']} does not fit this host: its weights alone ({_gib(weights)}) exceed the "
                    f"budget of all {len(group)} GPU(s) of one model together ({_gib(budget)})")
            return _result(base, DECISION_DOES_NOT_FIT, [line, *reasons], assumptions, kv_bytes_per_token=None,
                           budget_bytes=budget, gpus=tuple(g.index for g in group),
                           shortfall_bytes=weights + over - budget, refused_gpus=refused)
    reasons.insert(0, f"Cannot tell whether {base['model']} fits: its facts are incomplete")
    return _result(base, DECISION_UNKNOWN, reasons, assumptions, kv_bytes_per_token=None, refused_gpus=refused)


def _result(base: Mapping[str, Any], decision: str, reasons: Sequence[str], assumptions: Sequence[str],
            **values: Any) -> FitResult:
    fields: dict[str, Any] = dict(overhead_bytes=0, budget_bytes=0, max_model_len_fit=0, fits=False,
                                  tensor_parallel_size=0, gpus=())
    fields.update(base)
    fields.update(values)
    return FitResult(decision=decision, reasons=tuple(dict.fromkeys(reasons)),
                     assumptions=tuple(dict.fromkeys(assumptions)), **fields)


def _where(p: _Placement) -> str:
    if p.tp == 1:
        return f"on {p.gpus[0].label}"
    return f"with --tensor-parallel-size {p.tp} on GPUs {','.join(str(g.index) for g in p.gpus)}"


def _fits_line(model: str, p: _Placement, asked: int) -> str:
    return (f"{model} fits {_where(p)} at --max-model-len {asked}: {_gib(p.need_per_gpu)} of "
            f"{_gib(p.min_budget)} per GPU")


def _alternative(p: _Placement, asked: int) -> dict[str, Any]:
    return {"decision": DECISION_TENSOR_PARALLEL, "tensor_parallel_size": p.tp,
            "gpus": [g.index for g in p.gpus], "max_model_len": asked,
            "needed_bytes": p.need_per_gpu * p.tp, "budget_bytes": sum(g.budget_bytes for g in p.gpus)}


def _not_fit_lines(model: str, p: _Placement, weights: int, asked: int) -> list[str]:
    lines = [f"{model} does not fit this host at --max-model-len {asked}: it needs {_gib(p.need_per_gpu)} per GPU "
             f"{_where(p)}, which offers {_gib(p.min_budget)} per GPU — short by {_gib(p.shortfall)} in all"]
    weights_per_gpu = -(-weights // p.tp) + p.overhead_per_gpu
    if p.kv_fit > 0:
        lines.append(f"what would fit: --max-model-len {p.kv_fit} {_where(p)}")
    elif weights_per_gpu > p.min_budget:
        lines.append(f"the weights alone ({_gib(-(-weights // p.tp))} per GPU) and the runtime overhead "
                     f"({_gib(p.overhead_per_gpu)}) exceed the budget: pick a smaller or quantised model")
    return lines


def _describe_capabilities(gpus: Sequence[GpuBudget]) -> str:
    """``GPU 0 (NVIDIA GB300) has 10.3`` / ``GPUs 0,1,2 (NVIDIA H100 80GB HBM3) have 9.0``, grouped by model."""
    groups: dict[tuple[str, tuple[int, int] | None], list[int]] = {}
    for g in gpus:
        groups.setdefault((g.name, g.compute_capability), []).append(g.index)
    parts = []
    for (name, cc), indices in groups.items():
        text = f"{cc[0]}.{cc[1]}" if cc else "an unknown capability"
        if len(indices) == 1:
            parts.append(f"GPU {indices[0]} ({name}) has compute capability {text}")
        else:
            parts.append(f"GPUs {','.join(map(str, indices))} ({name}) have compute capability {text}")
    return "; ".join(parts)


def model_max_len(config: Mapping[str, Any], arch: Architecture) -> int | None:
    """The longest context vLLM accepts for the model: ``max_position_embeddings``, times the rope-scaling factor
    (of ``original_max_position_embeddings`` for yarn) except for the su/longrope/llama3 kinds, as vLLM derives it."""
    longest = arch.max_position_embeddings
    if not longest:
        return None
    cfg = text_config(config)
    rope = cfg.get("rope_scaling")
    if not isinstance(rope, Mapping):
        return longest
    kind = rope.get("rope_type") or rope.get("type")
    factor = rope.get("factor")
    if kind in ("su", "longrope", "llama3") or isinstance(factor, bool) or not isinstance(factor, (int, float)):
        return longest
    if not math.isfinite(factor) or not 1 <= factor <= 1024:
        return longest
    original = rope.get("original_max_position_embeddings")
    if kind == "yarn" and isinstance(original, int) and not isinstance(original, bool) and original > 0:
        longest = original
    return max(arch.max_position_embeddings or 0, int(longest * factor))


def _gib(n: int) -> str:
    return format_bytes(n)


__all__ = [
    "CONTEXT_MULTIPLE", "DECISION_DOES_NOT_FIT", "DECISION_FITS", "DECISION_REDUCE_CONTEXT", "DECISION_REFUSED",
    "DECISION_TENSOR_PARALLEL", "DECISION_UNKNOWN", "FitResult", "GpuBudget", "MIN_CONTEXT", "estimate_overhead",
    "gpu_budgets", "gpu_groups", "kv_model", "min_compute_capability_for", "model_max_len", "plan_fit", "refusal",
    "tensor_parallel_sizes", "weights_at_dtype",
]
