"""NIM on Kubernetes: the NIM Operator's ``NIMCache`` + ``NIMService`` (apps.nvidia.com/v1alpha1), or a plain
``Deployment`` + ``Service`` + ``PersistentVolumeClaim`` where the operator is not installed.

The NGC key is a Secret reference everywhere (``authSecret`` for the operator, ``secretKeyRef`` in a pod), and the
image is pulled with the ``ngc-secret`` docker-registry Secret. The shapes follow the operator's samples
(config/samples/nim in NVIDIA/k8s-nim-operator); the fields are checked against its published CRDs in the tests.
"""

from __future__ import annotations

from typing import Any

from nemoclaw_runtime.runtimes.export.common import (
    SERVER_PORT,
    SHM_SIZE,
    container_port,
    http_probe,
    labels,
    metadata,
    one_replica_documents,
    secret_env,
    shm_volume,
    startup_probe,
)
from nemoclaw_runtime.runtimes.export.plan import NGC_API_SECRET, NGC_API_SECRET_KEY, NGC_PULL_SECRET, ExportPlan

NIM_API_VERSION = "apps.nvidia.com/v1alpha1"
NIM_CACHE_PATH = "/opt/nim/.cache"
READY_PATH = "/v1/health/ready"
LIVE_PATH = "/v1/health/live"
#: The container's names for the NGC key (the driver sets both on one host too).
KEY_VARIABLES = ("NGC_API_KEY", "NIM_NGC_API_KEY")
#: NIM images run as this user; the cache volume must be writable by it.
NIM_UID = 1000


def operator_documents(plan: ExportPlan) -> list[dict[str, Any]]:
    """NIMCache (the weights, downloaded once into a PVC the operator creates), then the NIMService serving it."""
    common = labels(plan.runtime, plan.name)
    cache_name = f"{plan.name}-cache"
    multi = plan.nodes > 1
    cache = {
        "apiVersion": NIM_API_VERSION, "kind": "NIMCache", "metadata": metadata(cache_name, plan.namespace, common),
        "spec": {
            "source": {"ngc": {"modelPuller": plan.image.reference, "pullSecret": NGC_PULL_SECRET,
                               "authSecret": NGC_API_SECRET,
                               "model": {"tensorParallelism": str(plan.gpus)}}},
            # every node of a multi-node NIM reads the same cache: the operator's sample asks for ReadWriteMany
            "storage": {"pvc": {"create": True, "size": plan.cache_size,
                                "volumeAccessMode": "ReadWriteMany" if multi else "ReadWriteOnce"}},
        },
    }
    spec: dict[str, Any] = {
        "image": {"repository": plan.image.repository, "tag": _operator_tag(plan), "pullPolicy": "IfNotPresent",
                  "pullSecrets": [NGC_PULL_SECRET]},
        "authSecret": NGC_API_SECRET,
        "storage": {"nimCache": {"name": cache_name}, "sharedMemorySizeLimit": SHM_SIZE},
        "resources": {"limits": {"nvidia.com/gpu": str(plan.gpus)}},
        "replicas": 1,
        "expose": {"service": {"type": "ClusterIP", "port": SERVER_PORT}},
        "startupProbe": {"probe": _operator_probe(startup_probe(READY_PATH, plan.ready_timeout_s))},
        "readinessProbe": {"probe": _operator_probe(http_probe(READY_PATH))},
        "livenessProbe": {"probe": _operator_probe(http_probe(LIVE_PATH, period_s=30))},
    }
    if multi:  # the operator runs it as a LeaderWorkerSet: tensor parallel within a node, pipeline across
        spec["multiNode"] = {"backendType": "lws", "parallelism": {"tensor": plan.gpus, "pipeline": plan.nodes}}
    service_ = {"apiVersion": NIM_API_VERSION, "kind": "NIMService",
                "metadata": metadata(plan.name, plan.namespace, common), "spec": spec}
    return [cache, service_]


def deployment_documents(plan: ExportPlan) -> list[dict[str, Any]]:
    """PVC, Deployment, Service: the ``docker run`` of ``up nim`` mapped field by field."""
    cache = f"{plan.name}-nim-cache"
    shm, shm_mount = shm_volume()
    container = {
        "name": "nim", "image": plan.image.reference, "ports": [container_port()],
        "env": [secret_env(variable, NGC_API_SECRET, NGC_API_SECRET_KEY) for variable in KEY_VARIABLES],
        "resources": {"limits": {"nvidia.com/gpu": str(plan.gpus)}},
        "volumeMounts": [shm_mount, {"name": "nim-cache", "mountPath": NIM_CACHE_PATH}],
        "startupProbe": startup_probe(READY_PATH, plan.ready_timeout_s),
        "readinessProbe": http_probe(READY_PATH),
        "livenessProbe": http_probe(LIVE_PATH, period_s=30),
    }
    pod = {
        "imagePullSecrets": [{"name": NGC_PULL_SECRET}],
        "securityContext": {"runAsUser": NIM_UID, "runAsGroup": NIM_UID, "fsGroup": NIM_UID},
        "containers": [container],
        "volumes": [shm, {"name": "nim-cache", "persistentVolumeClaim": {"claimName": cache}}],
    }
    return one_replica_documents(plan.runtime, plan.name, plan.namespace, pod, cache, plan.cache_size)


def _operator_tag(plan: ExportPlan) -> str:
    """The operator pulls ``repository:tag``; a pinned image goes as ``TAG@sha256:…`` so the digest decides."""
    tag = plan.image.tag or "latest"
    return f"{tag}@{plan.image.digest}" if plan.image.digest else tag


def _operator_probe(probe: dict[str, Any]) -> dict[str, Any]:
    """The operator names the container's port ``api``."""
    return {**probe, "httpGet": {**probe["httpGet"], "port": "api"}}


__all__ = ["KEY_VARIABLES", "LIVE_PATH", "NIM_API_VERSION", "NIM_CACHE_PATH", "READY_PATH", "deployment_documents",
           "operator_documents"]
