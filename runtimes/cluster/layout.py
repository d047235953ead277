"""The containers of a multi-node vLLM deployment, as frozen specs (what ``--dry-run`` prints and ``up`` runs).

Per node, vLLM's own recipe (``examples/ray_serving/run_cluster.sh``, NVIDIA's dual-Spark playbook): the same
image by digest, host networking, ``--ipc host``, the GPUs, the Hugging Face cache, the interface variables. The
head node runs the Ray head (``<name>-ray-0``) and the server (``<name>``); every other node runs a Ray worker
(``<name>-ray-<i>``) that joins the head. The server is a container of its own, not a ``docker exec`` into the
Ray head, so that its log is a container log (``logs``, the failure's tail) and its exit is seen at once: it
shares the Ray head's ``/tmp/ray`` (a volume) and reaches the cluster at ``RAY_ADDRESS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.runtimes.cluster.nodes import Interface, Node, reach_host
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_GROUP,
    LABEL_HOST,
    LABEL_NODE,
    LABEL_NODES,
    LABEL_PORT,
    LABEL_ROLE,
    ROLE_RAY_HEAD,
    ROLE_RAY_WORKER,
    ROLE_SERVE,
    ContainerSpec,
    Mount,
)
from nemoclaw_runtime.runtimes.drivers.contract import Plan
from nemoclaw_runtime.runtimes.drivers.vllm import CONTAINER_HF_HOME, set_flag

__all__ = [
    "HF_VOLUME", "ROLE_RAY_HEAD", "ROLE_RAY_WORKER", "ROLE_SERVE", "ClusterPlan", "Layout", "build_cluster_plan",
    "ray_container_name", "ray_volume_name",
]

#: The named volume that holds the Hugging Face cache on a node other than this machine (filled from here).
HF_VOLUME = "nemoclaw-hf-cache"
RAY_TMP = "/tmp/ray"
#: The variables vLLM's run_cluster.sh and the dual-Spark playbook set to the link's interface.
INTERFACE_VARIABLES = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "UCX_NET_DEVICES",
                       "OMPI_MCA_btl_tcp_if_include")


@dataclass(frozen=True)
class Layout:
    """How the model is split: tensor parallel within (or across) nodes, pipeline parallel across them."""

    tensor_parallel_size: int
    pipeline_parallel_size: int

    @property
    def gpus(self) -> int:
        """The GPUs the Ray cluster must report before ``vllm serve`` starts."""
        return self.tensor_parallel_size * self.pipeline_parallel_size


@dataclass(frozen=True)
class ClusterPlan:
    """Everything ``up --nodes`` would run, node by node."""

    name: str
    base: Plan  # the single-host plan of the same request: model, argv, image, checks
    nodes: tuple[Node, ...]
    interface: Interface | None
    head_address: str
    ray_port: int
    layout: Layout
    serve: ContainerSpec
    ray: tuple[ContainerSpec, ...]  # index i runs on nodes[i]
    notes: tuple[str, ...] = ()
    fit: Any = None  # the group fit (runtimes/fit GroupFit) when it was judged

    @property
    def base_url(self) -> str:
        """Where clients on this machine reach the server: on the head (its own address when it is another machine
        serving on every interface)."""
        return f"http://{reach_host(self.nodes[0], self.base.host)}:{self.base.port}/v1"

    def specs_on(self, node: Node) -> tuple[ContainerSpec, ...]:
        own = (self.ray[node.index],)
        return (*own, self.serve) if node.index == 0 else own

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.base.to_dict(),
            "base_url": self.base_url,
            "name": self.name,
            "nodes": [{**node.to_dict(), "containers": [spec.to_dict() for spec in self.specs_on(node)]}
                      for node in self.nodes],
            "interface": dataclasses.asdict(self.interface) if self.interface else None,
            "head_address": self.head_address,
            "ray_port": self.ray_port,
            "tensor_parallel_size": self.layout.tensor_parallel_size,
            "pipeline_parallel_size": self.layout.pipeline_parallel_size,
            "argv": list(self.serve.command),
            "group_fit": self.fit.to_dict() if self.fit is not None else None,
            "notes": [*self.base.notes, *self.notes],
        }


def ray_container_name(name: str, index: int) -> str:
    return f"{name}-ray-{index}"


def ray_volume_name(name: str) -> str:
    return f"{name}-ray-tmp"


def build_cluster_plan(base: Plan, nodes: Sequence[Node], *, interface: Interface | None, head_address: str,
                       ray_port: int, layout: Layout, hf_home: str, fit: Any = None,
                       notes: Sequence[str] = ()) -> ClusterPlan:
    """The specs of every node from the single-host plan ``base`` and the chosen layout."""
    name = base.spec.name
    group = ((LABEL_GROUP, name),)
    ray = tuple(_ray_spec(base, node, interface, head_address, ray_port, hf_home, group) for node in nodes)
    serve = _serve_spec(base, nodes, interface, head_address, ray_port, layout, hf_home, group)
    return ClusterPlan(name=name, base=base, nodes=tuple(nodes), interface=interface, head_address=head_address,
                       ray_port=ray_port, layout=layout, serve=serve, ray=ray, notes=tuple(notes), fit=fit)


def _node_env(base: Plan, interface: Interface | None, head_address: str, *, head: bool) -> tuple[tuple[str, Any], ...]:
    env: list[tuple[str, Any]] = [(k, v) for k, v in base.spec.env]
    if interface is not None:
        env += [(variable, interface.name) for variable in INTERFACE_VARIABLES]
    if head:
        env.append(("VLLM_HOST_IP", head_address))
    env += [("MASTER_ADDR", head_address), ("RAY_memory_monitor_refresh_ms", "0")]
    return tuple(env)


def _mounts(node: Node, hf_home: str, *, ray_tmp: str | None) -> tuple[Mount, ...]:
    cache = Mount(hf_home, CONTAINER_HF_HOME) if node.is_local else Mount(HF_VOLUME, CONTAINER_HF_HOME, "volume")
    return (cache, Mount(ray_tmp, RAY_TMP, "volume")) if ray_tmp else (cache,)


def _ray_spec(base: Plan, node: Node, interface: Interface | None, head_address: str, ray_port: int, hf_home: str,
              group: tuple[tuple[str, str], ...]) -> ContainerSpec:
    if node.index == 0:
        # no dashboard (its job API runs code) and no usage reports: the cluster is vLLM's executor, nothing more
        command: tuple[str, ...] = ("ray", "start", "--head", f"--port={ray_port}",
                                    f"--node-ip-address={head_address}", "--include-dashboard=false",
                                    "--disable-usage-stats", "--block")
        role = ROLE_RAY_HEAD
    else:
        command = ("ray", "start", f"--address={head_address}:{ray_port}", "--disable-usage-stats", "--block")
        role = ROLE_RAY_WORKER
    name = base.spec.name
    return dataclasses.replace(
        base.spec, name=ray_container_name(name, node.index), command=command,
        env=_node_env(base, interface, head_address, head=node.index == 0),
        labels=(*_model_labels(base), *group, (LABEL_NODE, str(node.index)), (LABEL_ROLE, role)),
        ports=(), mounts=_mounts(node, hf_home, ray_tmp=ray_volume_name(name) if node.index == 0 else None),
        restart_policy=None, network_mode="host", ipc_mode="host")


def _serve_spec(base: Plan, nodes: Sequence[Node], interface: Interface | None, head_address: str, ray_port: int,
                layout: Layout, hf_home: str, group: tuple[tuple[str, str], ...]) -> ContainerSpec:
    argv = base.spec.command
    # host networking: the server listens on the host port itself, on the address asked (loopback by default)
    argv = set_flag(argv, "--port", str(base.port))
    argv = set_flag(argv, "--host", base.host)
    argv = set_flag(argv, "--tensor-parallel-size", str(layout.tensor_parallel_size))
    argv = set_flag(argv, "--pipeline-parallel-size", str(layout.pipeline_parallel_size))
    argv = set_flag(argv, "--distributed-executor-backend", "ray")
    env = (*_node_env(base, interface, head_address, head=True), ("RAY_ADDRESS", f"{head_address}:{ray_port}"))
    labels = (*base.spec.labels, *group, (LABEL_NODE, "0"), (LABEL_ROLE, ROLE_SERVE),
              (LABEL_NODES, ",".join(node.address for node in nodes)), (LABEL_PORT, str(base.port)),
              (LABEL_HOST, reach_host(nodes[0], base.host).strip("[]")))
    return dataclasses.replace(
        base.spec, command=argv, env=env, labels=labels, ports=(), restart_policy=None, network_mode="host",
        mounts=_mounts(nodes[0], hf_home, ray_tmp=ray_volume_name(base.spec.name)), ipc_mode="host")


def _model_labels(base: Plan) -> tuple[tuple[str, str], ...]:
    """What ``ps`` shows of a Ray container: the model and image of its deployment (not the GPU placement labels
    of the single-host plan, which name this machine's GPUs)."""
    from nemoclaw_runtime.runtimes.docker.spec import LABEL_IMAGE, LABEL_MODEL, LABEL_RUNTIME, LABEL_SERVED_MODEL

    keep = {LABEL_IMAGE, LABEL_MODEL, LABEL_RUNTIME, LABEL_SERVED_MODEL}
    return tuple((k, v) for k, v in base.spec.labels if k in keep)
