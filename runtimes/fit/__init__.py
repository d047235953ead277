"""The fit engine: will a model fit this host, and where, decided from its config and safetensors headers before
any download (weights bytes, KV cache per token, per-GPU budget, tensor parallelism, the largest context).

    from nemoclaw_runtime.runtimes.fit import HubModelSource, ServeOptions, plan_fit, refusal

    facts = HubModelSource(settings).facts("Qwen/Qwen3.6-27B-FP8")          # headers only, never weights
    result = plan_fit(facts, detect_gpus(settings), ServeOptions.from_argv(entry.serve_argv()))
    result.to_dict()                                                        # the stable JSON
    if (error := refusal(result)) is not None: raise error                  # exit 3
"""

from nemoclaw_runtime.runtimes.fit.architecture import (
    Architecture,
    ArchitectureError,
    KvCache,
    LayerSpec,
    kv_dtype_bytes,
    parse_architecture,
)
from nemoclaw_runtime.runtimes.fit.engine import (
    DECISION_DOES_NOT_FIT,
    DECISION_FITS,
    DECISION_REDUCE_CONTEXT,
    DECISION_REFUSED,
    DECISION_TENSOR_PARALLEL,
    DECISION_UNKNOWN,
    FitResult,
    GpuBudget,
    estimate_overhead,
    gpu_budgets,
    min_compute_capability_for,
    plan_fit,
    refusal,
)
from nemoclaw_runtime.runtimes.fit.facts import (
    DirectoryModelSource,
    ModelFacts,
    ModelSource,
    StaticModelSource,
    weights_from_document,
)
from nemoclaw_runtime.runtimes.fit.group import GroupFit, choose_layout, group_refusal, hosts_needed, plan_group_fit
from nemoclaw_runtime.runtimes.fit.hub import HubModelSource
from nemoclaw_runtime.runtimes.fit.options import ServeOptions
from nemoclaw_runtime.runtimes.fit.safetensors import DTYPE_BITS, WeightsFacts, parse_header, stored_bytes

__all__ = [
    "DECISION_DOES_NOT_FIT",
    "DECISION_FITS",
    "DECISION_REDUCE_CONTEXT",
    "DECISION_REFUSED",
    "DECISION_TENSOR_PARALLEL",
    "DECISION_UNKNOWN",
    "DTYPE_BITS",
    "Architecture",
    "ArchitectureError",
    "DirectoryModelSource",
    "FitResult",
    "GpuBudget",
    "GroupFit",
    "HubModelSource",
    "KvCache",
    "LayerSpec",
    "ModelFacts",
    "ModelSource",
    "ServeOptions",
    "StaticModelSource",
    "WeightsFacts",
    "choose_layout",
    "estimate_overhead",
    "gpu_budgets",
    "group_refusal",
    "hosts_needed",
    "kv_dtype_bytes",
    "min_compute_capability_for",
    "parse_architecture",
    "parse_header",
    "plan_fit",
    "plan_group_fit",
    "refusal",
    "stored_bytes",
    "weights_from_document",
]
