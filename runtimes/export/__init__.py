"""Manifests for other orchestrators from the same plan and registry entry ``up`` uses: Kubernetes (vLLM as a
Deployment or a LeaderWorkerSet, NIM through the NIM Operator or as a Deployment)."""

from nemoclaw_runtime.runtimes.export.kubernetes import KubernetesExport, export_kubernetes
from nemoclaw_runtime.runtimes.export.resolve import FORMATS

__all__ = ["FORMATS", "KubernetesExport", "export_kubernetes"]
