"""Will a model fit a group of alike hosts (``up vllm --nodes HEAD,WORKER``), and with which layout.

Every host is taken to be like ``node``, the inventory of this one (NVIDIA's dual-Spark and dual-Station recipes
pair identical machines; the GPUs that join are checked through Ray at start). The layout, unless the serve flags
carry ``--tensor-parallel-size`` / ``--pipeline-parallel-size`` (then they are checked and respected):

- one usable GPU per host (DGX Spark): tensor parallelism across the hosts, ``T = hosts``, ``P = 1`` (the
  two-Spark recipe) when the model's heads allow it, else ``T = 1``, ``P = hosts``;
- several: ``T`` = the largest tensor-parallel size vLLM accepts on one host's GPUs of one model (a power of two
  that divides the heads, normally all of them), ``P = hosts`` (pipeline across hosts, the two-Station recipe).

Per GPU, against the smallest budget among the GPUs used (:func:`engine.gpu_budgets`)::

    weights / (T × P) + overhead(T) + kv(max_model_len, T) / P  <=  budget

(pipeline stages split the layers, and their KV cache with them). The decisions are :func:`engine.plan_fit`'s:
``fits``, ``reduce-context`` (the largest context that fits, a multiple of 256 and at least 4096; a fit only
under ``--max-model-len auto``), ``does-not-fit`` (with numbers, and how many hosts would do), ``refused`` (no
usable GPU) and ``unknown`` (facts missing). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from nemoclaw_runtime.gpu.inventory import GpuInventory
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, NoSuitableGpu, PreflightRefused
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.runtimes.fit.architecture import Architecture
from nemoclaw_runtime.runtimes.fit.engine import (
    CONTEXT_MULTIPLE,
    DECISION_DOES_NOT_FIT,
    DECISION_FITS,
    DECISION_REDUCE_CONTEXT,
    DECISION_REFUSED,
    DECISION_UNKNOWN,
    MIN_CONTEXT,
    estimate_overhead,
    gpu_budgets,
    gpu_groups,
    kv_model,
    model_max_len,
    tensor_parallel_sizes,
    weights_at_dtype,
)
from nemoclaw_runtime.runtimes.fit.facts import ModelFacts
from nemoclaw_runtime.runtimes.fit.options import SMALL_GPU_BYTES, ServeOptions

DEFAULT_MOST_HOSTS = 8


@dataclass(frozen=True)
class GroupFit:
    """The answer for ``nodes`` alike hosts. ``gpus`` are the GPU indices used on each host (expose only these);
    ``budget_bytes_per_gpu`` is the smallest budget among them; ``needed_bytes_per_gpu`` is at the asked context;
    ``hosts_needed`` (a fit short of the asked context only) the fewest such hosts that hold it, up to 8."""

    model: str
    nodes: int
    gpus_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    fits: bool
    decision: str
    needed_bytes_per_gpu: int | None
    budget_bytes_per_gpu: int
    weights_bytes: int | None
    max_model_len: int | None
    max_model_len_fit: int
    reasons: tuple[str, ...]
    assumptions: tuple[str, ...]
    gpus: tuple[int, ...] = ()
    hosts_needed: int | None = None  # when it does not fit as asked: the fewest such hosts that hold it
    auto_context: bool = False  # --max-model-len auto: a reduced context is the answer, not a refusal

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(reasons=list(self.reasons), assumptions=list(self.assumptions), gpus=list(self.gpus))
        return doc

    def serve_flags(self) -> tuple[str, ...]:
        """The ``vllm serve`` flags of this layout (and ``--max-model-len`` when reduced or auto); empty when
        nothing runs. An ``unknown`` fit still has its layout."""
        if self.decision in (DECISION_DOES_NOT_FIT, DECISION_REFUSED) or self.tensor_parallel_size < 1:
            return ()
        flags = ("--tensor-parallel-size", str(self.tensor_parallel_size),
                 "--pipeline-parallel-size", str(self.pipeline_parallel_size))
        if self.decision == DECISION_REDUCE_CONTEXT:
            return (*flags, "--max-model-len", str(self.max_model_len_fit))
        if self.auto_context and self.max_model_len:
            return (*flags, "--max-model-len", str(self.max_model_len))
        return flags


def plan_group_fit(facts: ModelFacts, node: GpuInventory, nodes: int, options: ServeOptions | None = None, *,
                   min_compute_capability: tuple[int, int] | None = None) -> GroupFit:
    """Decide whether ``facts``' model runs with vLLM on ``nodes`` hosts like ``node``, and with which layout.

    ``min_compute_capability`` is taken as given (pass :func:`engine.min_compute_capability_for` to apply the
    registry's). Raises :class:`InvalidInput` only for layout flags that cannot run on the group; missing facts
    are the ``unknown`` decision."""
    return _plan(facts, node, nodes, options or ServeOptions(), min_compute_capability, suggest=True)


def hosts_needed(facts: ModelFacts, node: GpuInventory, options: ServeOptions | None = None, *,
                 most: int = DEFAULT_MOST_HOSTS, min_compute_capability: tuple[int, int] | None = None) -> int | None:
    """The fewest hosts like `node` (2..most) on which the model fits at the asked context; None if none.
    Layout flags in ``options`` are respected (a count they cannot run on is skipped)."""
    return _fewest(facts, node, options or ServeOptions(), min_compute_capability, 2, most)


def choose_layout(options: ServeOptions, nodes: int, gpus_per_node: int) -> tuple[int, int]:
    """``(T, P)`` by the rule above without the model's facts (its heads unknown, nothing judged): what ``up
    --nodes`` runs when there is no fit to ask (``--gpus none``, facts unreadable with ``--no-fit-check``).
    Layout flags are checked against the group as :func:`plan_group_fit` checks them."""
    tp, pp, _ = _layout("the model", None, options, nodes, max(1, gpus_per_node), gpus_per_node <= 1, [])
    return tp, pp


def group_refusal(fit: GroupFit) -> PreflightRefused | None:
    """The typed refusal (exit 3) for a group fit that cannot run as asked; ``None`` when it fits or is unknown."""
    if fit.fits or fit.decision == DECISION_UNKNOWN:
        return None
    message = fit.reasons[0] if fit.reasons else f"{fit.model} does not fit {fit.nodes} hosts"
    if fit.decision == DECISION_REFUSED:
        return NoSuitableGpu(message, remedy="run it on hosts whose GPUs meet the requirement",
                             cause="no-suitable-gpu", details=fit.to_dict())
    remedies = [f"use --max-model-len {fit.max_model_len_fit} (the largest that fits)"] if fit.max_model_len_fit else []
    remedies.append(f"run it on {fit.hosts_needed} such hosts" if fit.hosts_needed
                    else "pick a smaller or quantised model")
    remedy = ", or ".join(remedies)
    return InsufficientResources(message, remedy=remedy, cause="insufficient-gpu-memory", details=fit.to_dict())


# --- the decision ---------------------------------------------------------------------------------------------


def _plan(facts: ModelFacts, node: GpuInventory, nodes: int, opts: ServeOptions,
          min_cc: tuple[int, int] | None, *, suggest: bool) -> GroupFit:
    if nodes < 1:
        raise InvalidInput(f"A group needs at least one host, not {nodes}", remedy="give --nodes HEAD,WORKER")
    reasons, assumptions = list(facts.reasons), list(facts.assumptions)
    budgets = gpu_budgets(node, opts.gpu_memory_utilization, min_cc)
    usable = [g for g in budgets if g.usable]
    batched = opts.batched_tokens(max((g.total_bytes for g in budgets), default=SMALL_GPU_BYTES))
    arch, kv = kv_model(facts, opts, batched, reasons, assumptions)
    weights = weights_at_dtype(facts, opts, arch, assumptions)
    asked = opts.max_model_len or (arch.max_position_embeddings if arch else None)
    base: dict[str, Any] = dict(model=facts.model_id, nodes=nodes, weights_bytes=weights, max_model_len=asked,
                                auto_context=opts.max_model_len_auto)

    def answer(decision: str, first: str, **values: Any) -> GroupFit:
        fields: dict[str, Any] = dict(gpus_per_node=0, tensor_parallel_size=0, pipeline_parallel_size=0,
                                      fits=False, needed_bytes_per_gpu=None, budget_bytes_per_gpu=0,
                                      max_model_len_fit=0, **base)
        fields.update(values)
        return GroupFit(decision=decision, reasons=tuple(dict.fromkeys([first, *reasons])),
                        assumptions=tuple(dict.fromkeys(assumptions)), **fields)

    if not usable:
        reasons.extend(f"{g.label}: {g.why_not}" for g in budgets)
        first = (f"No NVIDIA GPU on this host: {node.reason or 'none found'}" if not budgets else
                 f"No GPU of this host can take {facts.model_id}: {budgets[0].label}: {budgets[0].why_not}")
        return answer(DECISION_REFUSED, first)
    group = max(gpu_groups(usable), key=lambda m: len(m) * min(g.budget_bytes for g in m))
    assumptions.extend(f"{g.label} left out: parallelism only across GPUs of one model"
                       for g in usable if g not in group)
    assumptions.extend(f"{g.label} left out: {g.why_not}" for g in budgets if not g.usable)
    tp, pp, taken = _layout(facts.model_id, arch, opts, nodes, len(group), len(usable) == 1, assumptions)
    used = group[:taken]
    budget = min(g.budget_bytes for g in used)
    where = (f"{nodes} host{'s' if nodes > 1 else ''} × {taken} GPU{'s' if taken > 1 else ''} "
             f"(tensor {tp} × pipeline {pp})")
    assumptions.append(f"every host is taken to be like this one: GPUs {','.join(str(g.index) for g in used)} "
                       f"used on each, {format_bytes(budget)} budget per GPU")
    if pp > 1:
        assumptions.append(f"pipeline parallelism splits the layers evenly over {pp} stages, and their KV cache "
                           "with them")
    if weights is not None:
        assumptions.append(f"weights counted as stored, split evenly over the {tp * pp} GPUs")
    assumptions.append("non-KV overhead is an estimate; vLLM measures it at start-up")
    layout = dict(gpus_per_node=taken, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                  budget_bytes_per_gpu=budget, gpus=tuple(g.index for g in used))
    over = estimate_overhead(arch, opts, tp, batched)
    fixed = -(-(weights or 0) // (tp * pp)) + over

    model_max = model_max_len(facts.config or {}, arch) if arch is not None else None
    if model_max is not None and asked is not None and asked > model_max:
        return answer(DECISION_DOES_NOT_FIT, f"--max-model-len {asked} is above {facts.model_id}'s own maximum of "
                      f"{model_max} tokens; vLLM would refuse it — use --max-model-len {model_max} or less", **layout)
    if weights is None or arch is None or kv is None or asked is None:
        if weights is not None and fixed > budget:
            return answer(DECISION_DOES_NOT_FIT, f"{facts.model_id} does not fit {where}: its weights alone need "
                          f"{format_bytes(fixed)} per GPU with the runtime overhead, budget {format_bytes(budget)}",
                          **layout)
        return answer(DECISION_UNKNOWN, f"Cannot tell whether {facts.model_id} fits {where}: its facts are "
                      "incomplete", **layout)

    ceiling = max(asked, arch.max_position_embeddings or 0)
    if model_max is not None:
        ceiling = min(ceiling, model_max)
    need = fixed + -(-kv.bytes_for(tp, asked) // pp)
    kv_fit = kv.max_context(tp, (budget - fixed) * pp, ceiling, CONTEXT_MULTIPLE)
    layout.update(needed_bytes_per_gpu=need)
    plain = replace(opts, tensor_parallel_size=None, pipeline_parallel_size=1)  # the layout chosen here

    if need <= budget:
        if suggest and nodes > 1:
            one = _plan(facts, node, 1, plain, min_cc, suggest=False)
            if one.decision == DECISION_FITS:
                reasons.insert(0, f"it fits one such host alone too (tensor {one.tensor_parallel_size}, "
                                  f"{format_bytes(one.needed_bytes_per_gpu)} of "
                                  f"{format_bytes(one.budget_bytes_per_gpu)} per GPU): the group is not needed")
        return answer(DECISION_FITS, f"{facts.model_id} fits {where} at --max-model-len {asked}: "
                      f"{format_bytes(need)} of {format_bytes(budget)} per GPU", fits=True,
                      max_model_len_fit=max(kv_fit, asked), **layout)
    if suggest:
        more, layout["hosts_needed"] = _more_hosts(facts, node, nodes, plain, min_cc, asked)
        reasons.insert(0, more)
    if min(MIN_CONTEXT, asked) <= kv_fit < asked:
        return answer(DECISION_REDUCE_CONTEXT, f"{facts.model_id} fits {where} only with --max-model-len {kv_fit} "
                      f"(asked {asked}): needs {format_bytes(need)} per GPU at {asked} tokens, budget "
                      f"{format_bytes(budget)}", fits=opts.max_model_len_auto, max_model_len_fit=kv_fit, **layout)
    if kv_fit > 0:
        reasons.insert(0, f"what would fit: --max-model-len {kv_fit} on {where}")
    elif fixed > budget:
        reasons.insert(0, f"the weights alone ({format_bytes(fixed - over)} per GPU) and the runtime overhead "
                          f"({format_bytes(over)}) exceed the budget")
    return answer(DECISION_DOES_NOT_FIT, f"{facts.model_id} does not fit {where}: needs {format_bytes(need)} per "
                  f"GPU at {asked} tokens, budget {format_bytes(budget)} — short by {format_bytes(need - budget)} "
                  "per GPU", max_model_len_fit=kv_fit, **layout)


def _layout(model: str, arch: Architecture | None, opts: ServeOptions, nodes: int, per_node: int,
            single: bool, assumptions: list[str]) -> tuple[int, int, int]:
    """``(T, P, GPUs taken per host)`` for ``nodes`` hosts of ``per_node`` alike usable GPUs each."""
    if opts.tensor_parallel_size is not None or opts.pipeline_parallel_size > 1:
        tp, pp = opts.tensor_parallel_size or 1, opts.pipeline_parallel_size
        offered = nodes * per_node
        if tp * pp > offered:
            raise InvalidInput(f"--tensor-parallel-size {tp} × --pipeline-parallel-size {pp} needs {tp * pp} GPUs; "
                               f"{nodes} host(s) × {per_node} GPU(s) offer {offered}",
                               remedy=_layout_remedy(nodes, per_node), details={"tensor_parallel_size": tp,
                                                                                 "pipeline_parallel_size": pp})
        if tp > per_node > 1:
            raise InvalidInput(f"--tensor-parallel-size {tp} spans more than one host's {per_node} GPUs",
                               remedy=_layout_remedy(nodes, per_node), details={"tensor_parallel_size": tp})
        if arch is not None and not arch.valid_tensor_parallel(tp):
            valid = [t for t in range(1, min(arch.num_attention_heads, 64) + 1) if arch.valid_tensor_parallel(t)]
            raise InvalidInput(f"--tensor-parallel-size {tp} does not divide {model}'s {arch.num_attention_heads} "
                               f"attention heads / {arch.num_key_value_heads} KV heads; vLLM would refuse to start",
                               remedy=f"use --tensor-parallel-size {' or '.join(map(str, valid[:8]))}",
                               details={"option": "--tensor-parallel-size", "tensor_parallel_size": tp})
        taken = min(per_node, -(-tp * pp // nodes))
        if tp * pp < offered:
            assumptions.append(f"the layout given uses {tp * pp} of the group's {offered} GPUs")
        return tp, pp, taken
    if single:
        if nodes == 1 or arch is None or arch.valid_tensor_parallel(nodes):
            if arch is None and nodes > 1:
                assumptions.append(f"attention heads unknown: tensor parallel size {nodes} assumed valid")
            return nodes, 1, 1
        assumptions.append(f"tensor parallel size {nodes} does not divide the heads: pipeline across the hosts")
        return 1, nodes, 1
    if arch is None:
        tp = 1 << (per_node.bit_length() - 1)
        assumptions.append(f"attention heads unknown: tensor parallel size {tp} assumed valid")
    else:
        tp = max([1, *tensor_parallel_sizes(arch, per_node)])
    return tp, nodes, tp


def _layout_remedy(nodes: int, per_node: int) -> str:
    if per_node == 1:
        return f"use --tensor-parallel-size {nodes}, or --pipeline-parallel-size {nodes}, or leave both out"
    return f"use --tensor-parallel-size {per_node} --pipeline-parallel-size {nodes}, or leave both out"


def _fewest(facts: ModelFacts, node: GpuInventory, opts: ServeOptions, min_cc: tuple[int, int] | None,
            start: int, most: int) -> int | None:
    for n in range(max(start, 1), most + 1):
        try:
            if _plan(facts, node, n, opts, min_cc, suggest=False).decision == DECISION_FITS:
                return n
        except InvalidInput:
            continue
    return None


def _more_hosts(facts: ModelFacts, node: GpuInventory, nodes: int, plain: ServeOptions,
                min_cc: tuple[int, int] | None, asked: int) -> tuple[str, int | None]:
    most = max(DEFAULT_MOST_HOSTS, nodes + 1)
    n = _fewest(facts, node, plain, min_cc, nodes + 1, most)
    if n is None:
        return f"no group of up to {most} such hosts holds it at --max-model-len {asked}", None
    fit = _plan(facts, node, n, plain, min_cc, suggest=False)
    return (f"{n} such hosts would hold it at --max-model-len {asked} (tensor {fit.tensor_parallel_size} × "
            f"pipeline {fit.pipeline_parallel_size}): {format_bytes(fit.needed_bytes_per_gpu)} of "
            f"{format_bytes(fit.budget_bytes_per_gpu)} per GPU"), n


__all__ = ["DEFAULT_MOST_HOSTS", "GroupFit", "choose_layout", "group_refusal", "hosts_needed", "plan_group_fit"]
