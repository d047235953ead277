"""What one export resolved, before any manifest is written: the value the manifest builders read.

Built by :mod:`nemoclaw_runtime.runtimes.export.resolve` from the registry, the settings, the lock and the options;
the builders (``vllm_manifests``, ``nim_manifests``) turn it into documents and add nothing they did not get here.
"""

from __future__ import annotations

from dataclasses import dataclass

from nemoclaw_runtime.runtimes.export.common import ImageRef

# The Secrets the manifests refer to (the names the NIM Operator's documentation uses for NGC).
HF_SECRET = "hf-token"
HF_SECRET_KEY = "HF_TOKEN"
NGC_API_SECRET = "ngc-api-secret"
NGC_API_SECRET_KEY = "NGC_API_KEY"
NGC_PULL_SECRET = "ngc-secret"

FORMAT_DEPLOYMENT = "deployment"
FORMAT_LEADERWORKERSET = "leaderworkerset"
FORMAT_NIM_OPERATOR = "nim-operator"
FORMAT_AUTO = "auto"


@dataclass(frozen=True)
class ExportPlan:
    """One export, resolved.

    ``gpus`` are per pod (per node with ``nodes`` > 1); ``argv`` is vLLM's ``vllm serve …`` (empty for NIM, whose
    image starts its own server); ``cache_size`` is the weights cache's quantity (``"40Gi"``);
    ``token_optional``: the HF token Secret may be absent (the model is not gated).
    """

    runtime: str
    format: str
    name: str
    namespace: str
    model: str
    gpus: int
    nodes: int
    image: ImageRef
    argv: tuple[str, ...]
    cache_size: str
    ready_timeout_s: float
    token_optional: bool


__all__ = [
    "FORMAT_AUTO", "FORMAT_DEPLOYMENT", "FORMAT_LEADERWORKERSET", "FORMAT_NIM_OPERATOR", "HF_SECRET", "HF_SECRET_KEY",
    "NGC_API_SECRET", "NGC_API_SECRET_KEY", "NGC_PULL_SECRET", "ExportPlan",
]
