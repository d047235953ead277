"""vLLM on Kubernetes, in vLLM's own documented shapes.

- One node: a ``Deployment`` (one replica, ``Recreate``: a ReadWriteOnce cache and scarce GPUs cannot be shared by
  an old and a new pod) + a ClusterIP ``Service`` + a ``PersistentVolumeClaim`` for the Hugging Face cache — the
  ``docker run`` of ``up vllm`` mapped field by field (argv → ``args``, ``--gpus N`` → ``nvidia.com/gpu``,
  ``--ipc host`` → an in-memory ``/dev/shm``, the HF cache bind → the PVC, the readiness wait → a startup probe).
- Several nodes: a ``LeaderWorkerSet`` (deployment/frameworks/lws in vLLM's docs): the leader starts the Ray head
  with vLLM's ``multi-node-serving.sh`` and then ``vllm serve`` with tensor parallelism within a node and pipeline
  parallelism across nodes; the workers join ``$(LWS_LEADER_ADDRESS)``. Each pod keeps its own cache on an
  ``emptyDir`` as vLLM's example does (a ReadWriteOnce claim cannot be mounted by every pod).
"""

from __future__ import annotations

from typing import Any

from nemoclaw_runtime.runtimes.drivers.vllm import set_flag
from nemoclaw_runtime.runtimes.export.common import (
    container_port,
    http_probe,
    k8s_arg,
    labels,
    metadata,
    one_replica_documents,
    plain_env,
    secret_env,
    service,
    shell_line,
    shm_volume,
    startup_probe,
)
from nemoclaw_runtime.runtimes.export.plan import HF_SECRET, HF_SECRET_KEY, ExportPlan

HF_HOME = "/root/.cache/huggingface"
HEALTH_PATH = "/health"
#: vLLM's helper that starts (leader) or joins (worker) the Ray cluster, as its images ship it.
RAY_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"


def deployment_documents(plan: ExportPlan) -> list[dict[str, Any]]:
    """PVC, Deployment, Service (in the order ``kubectl apply`` should create them)."""
    cache = f"{plan.name}-hf-cache"
    shm = shm_volume()[0]
    container = _container(plan, "vllm", {"args": [k8s_arg(token) for token in _serve_argv(plan)]}, probes=True)
    pod = {"containers": [container],
           "volumes": [shm, {"name": "hf-cache", "persistentVolumeClaim": {"claimName": cache}}]}
    return one_replica_documents(plan.runtime, plan.name, plan.namespace, pod, cache, plan.cache_size)


def leaderworkerset_documents(plan: ExportPlan) -> list[dict[str, Any]]:
    """LeaderWorkerSet, then the Service in front of its leader."""
    common = labels(plan.runtime, plan.name)
    leader = (f"bash {RAY_SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE) && "
              f"exec {shell_line(_serve_argv(plan))}")  # && : a cluster that never formed fails the group
    worker = f"bash {RAY_SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)"
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": metadata(plan.name, plan.namespace, common),
        "spec": {"replicas": 1, "leaderWorkerTemplate": {
            "size": plan.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": {"metadata": {"labels": {**common, "role": "leader"}},
                               "spec": _lws_pod(plan, leader, leader=True)},
            "workerTemplate": {"metadata": {"labels": {**common, "role": "worker"}},
                               "spec": _lws_pod(plan, worker, leader=False)},
        }},
    }
    # LWS makes a headless Service named after the set for its pods: ours, for clients, is NAME-leader.
    front = service(f"{plan.name}-leader", plan.namespace, common, {LWS_NAME_LABEL: plan.name, "role": "leader"})
    return [lws, front]


def _serve_argv(plan: ExportPlan) -> tuple[str, ...]:
    """The registry's argv with the parallelism of this export set by the driver's own flag setter."""
    argv = plan.argv
    if plan.nodes > 1:
        argv = set_flag(argv, "--tensor-parallel-size", str(plan.gpus))
        argv = set_flag(argv, "--pipeline-parallel-size", str(plan.nodes))
        return set_flag(argv, "--distributed-executor-backend", "ray")
    if plan.gpus > 1:
        argv = set_flag(argv, "--tensor-parallel-size", str(plan.gpus))
    return argv


def _container(plan: ExportPlan, name: str, start: dict[str, list[str]], *, probes: bool) -> dict[str, Any]:
    """The vLLM container; ``start`` is ``{"args": argv}`` (the image's own entrypoint kept: NGC images exec their
    arguments) or ``{"command": ["sh", "-c", script]}`` (the LWS pods, as vLLM's example writes them)."""
    container: dict[str, Any] = {"name": name, "image": plan.image.reference, **start, "env": _env(plan),
                                 "resources": {"limits": {"nvidia.com/gpu": str(plan.gpus)}}}
    if probes:
        container["ports"] = [container_port()]
        container.update(_probes(plan))
    shm_mount = shm_volume()[1]
    container["volumeMounts"] = [shm_mount, {"name": "hf-cache", "mountPath": HF_HOME}]
    return container


def _env(plan: ExportPlan) -> list[dict[str, Any]]:
    return [plain_env("HF_HOME", HF_HOME),
            secret_env("HF_TOKEN", HF_SECRET, HF_SECRET_KEY, optional=plan.token_optional)]


def _probes(plan: ExportPlan) -> dict[str, Any]:
    return {"startupProbe": startup_probe(HEALTH_PATH, plan.ready_timeout_s),
            "readinessProbe": http_probe(HEALTH_PATH),
            "livenessProbe": http_probe(HEALTH_PATH, period_s=30)}


def _lws_pod(plan: ExportPlan, script: str, *, leader: bool) -> dict[str, Any]:
    """One pod of the group: the leader serves (and is probed), a worker only lends its GPUs to the Ray cluster."""
    name = "vllm-leader" if leader else "vllm-worker"
    container = _container(plan, name, {"command": ["sh", "-c", script]}, probes=leader)
    return {"containers": [container],
            "volumes": [shm_volume()[0], {"name": "hf-cache", "emptyDir": {"sizeLimit": plan.cache_size}}]}


__all__ = ["HEALTH_PATH", "HF_HOME", "RAY_SCRIPT", "deployment_documents", "leaderworkerset_documents"]
