"""``up vllm --nodes …``: one deployment over several Docker engines, driven the way vLLM's multi-node recipe does.

engines reachable (each node) → GPU runtime (each node) → name lock → image pinned on the head, weights downloaded
here (at the same time) → the same digest pulled on every other node, the weights copied into their cache volume
(in parallel) → Ray head → Ray workers → ``ray status`` reports the GPUs the split needs → ``vllm serve`` on the
head → readiness (every node's container watched) → validation → the record. Any failure, a cancel or Ctrl-C
removes every container of the deployment on every node before the error is raised: nothing is left anywhere,
and the error carries the failing node's log tail and cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    ContainerExited,
    DockerUnavailable,
    InvalidInput,
    NemoclawError,
    PortInUse,
    PreflightRefused,
)
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.threads import Task, in_daemon_thread, interrupts_deferred, run_together
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.cluster import records
from nemoclaw_runtime.runtimes.cluster.layout import HF_VOLUME, ClusterPlan, ray_volume_name
from nemoclaw_runtime.runtimes.cluster.nodes import Node, node_settings, reach_host
from nemoclaw_runtime.runtimes.cluster.watch import GroupTarget, NodeContainer, RayCluster, wait_for_gpus
from nemoclaw_runtime.runtimes.docker.containers import check_gpu_runtime, engine_is_local
from nemoclaw_runtime.runtimes.docker.spec import LABEL_GROUP, LABEL_MANAGED, image_repository
from nemoclaw_runtime.runtimes.drivers.contract import Services, UpResult

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.runtimes.docker.port import DockerPort, PulledImage

__all__ = ["Engines", "connect_node", "node_engine", "remove_group", "start_cluster"]

#: Opens the engine of a node (default: ``runtimes/wiring.py``); injected by tests and library callers.
Engines = Callable[[Node], "DockerPort"]
CLEANUP_STOP_TIMEOUT_S = 3.0


@dataclass
class _Node:
    node: Node
    svc: Services


def start_cluster(the_plan: ClusterPlan, *, settings: Settings, events: EventSink, cancel: CancelToken,
                  engines: Engines | None = None, http: httpx.Client | None = None, clock: Clock | None = None,
                  arch: str | None = None) -> UpResult:
    """Run ``the_plan`` on its nodes and return once the head's server answers (and passed validation)."""
    clock = clock or SystemClock()
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(wiring.http_session(http))
        nodes = [_Node(node, wiring.build_services(node_settings(settings, node),
                                                   stack.enter_context(node_engine(settings, node, engines)), client,
                                                   clock=clock, arch=arch))
                 for node in the_plan.nodes]
        started = clock.monotonic()
        _preflight(the_plan, nodes, events)
        head = nodes[0]
        with head.svc.containers.lock(the_plan.name, events=events):
            existed = _check_record(settings, the_plan)
            # written before any container starts: it is how `stop` finds a remote node's containers, even after
            # this process was killed half-way
            _write_record(settings, the_plan)
            run = _Run()
            try:
                result = _run(the_plan, nodes, events, cancel, clock, run)
            except BaseException as exc:
                if run.changed or not existed:  # a deployment that ran before, untouched by this run, stays
                    _clean_up_after(the_plan, nodes, events, exc)
                    if not existed:
                        records.delete_record(settings, the_plan.name)
                raise
        return dataclasses.replace(result, elapsed_s=clock.monotonic() - started)


@dataclass
class _Run:
    """What this run did: whether it created or replaced any container (a failure then removes the deployment)."""

    changed: bool = False

    def note(self, action: str) -> None:
        self.changed = self.changed or action != "reused"


def _check_record(settings: Settings, the_plan: ClusterPlan) -> bool:
    """Whether a deployment of this name was recorded; one on other nodes is refused (its containers would be
    orphaned)."""
    record = records.read_record(settings, the_plan.name)
    if record is None:
        return False
    if [n.address for n in record.nodes] != [n.address for n in the_plan.nodes]:
        raise PreflightRefused(
            f"{the_plan.name} already runs on other nodes ({', '.join(n.address for n in record.nodes)})",
            remedy=f"stop it first with `nemoclaw-runtime stop {the_plan.name}`, or pass another --name",
            details={"nodes": [n.address for n in record.nodes]})
    return True


def _write_record(settings: Settings, the_plan: ClusterPlan) -> None:
    try:
        records.write_record(settings, records.GroupRecord(the_plan.name, "vllm", the_plan.base.model,
                                                           the_plan.nodes))
    except OSError as exc:
        raise PreflightRefused(f"Cannot write the deployment's record in {settings.state_dir}: "
                               f"{exc.strerror or exc}",
                               remedy="make the state folder writable (NEMOCLAW_STATE_DIR or XDG_STATE_HOME)") from None


#: How long a node's engine gets to answer its first call. docker-py's ssh:// transport connects without a timeout
#: of its own: a host that dropped off the network would hold the command for the system's TCP timeout.
NODE_CONNECT_S = 20.0


def connect_node(settings: Settings, node: Node, engines: Engines | None = None) -> DockerPort:
    """The node's engine, opened and answering within ``NODE_CONNECT_S``; its failure is our error naming the node
    (an engine opened too late is left to the daemon thread that opened it)."""
    def open_and_ping() -> DockerPort:
        port = engines(node) if engines is not None else wiring.open_docker(node_settings(settings, node))
        try:
            port.ping()
        except BaseException:
            if engines is None:
                port.close()
            raise
        return port

    try:
        return in_daemon_thread(f"nemoclaw-connect-{node.index}", open_and_ping).result(timeout=NODE_CONNECT_S)
    except futures.TimeoutError:
        raise DockerUnavailable(f"Node {node.index} ({node.address}): the Docker engine did not answer within "
                                f"{NODE_CONNECT_S:g} s", remedy="check that the node is up and reachable from this "
                                "machine (for ssh://: `ssh USER@HOST docker version`)",
                                details={"node": node.index, "address": node.address}) from None
    except NemoclawError as exc:
        raise type(exc)(f"Node {node.index} ({node.address}): {exc.message}", remedy=exc.remedy, cause=exc.cause,
                        details={**exc.details, "node": node.index, "address": node.address}) from None


@contextlib.contextmanager
def node_engine(settings: Settings, node: Node, engines: Engines | None) -> Iterator[DockerPort]:
    """:func:`connect_node`, closed on exit when it was opened here (an injected one is the caller's)."""
    port = connect_node(settings, node, engines)
    try:
        yield port
    finally:
        if engines is None:
            port.close()


def _preflight(the_plan: ClusterPlan, nodes: Sequence[_Node], events: EventSink) -> None:
    events(PhaseChanged("preflight", f"Checking the {len(nodes)} nodes' engines"))
    _refuse_one_engine_twice(nodes)
    if the_plan.base.spec.gpus.mode != "none":
        for item in nodes:
            try:
                check_gpu_runtime(item.svc.docker, local_engine=engine_is_local(item.svc.settings.docker_host))
            except NemoclawError as exc:
                raise type(exc)(f"Node {item.node.index} ({item.node.address}): {exc.message}", remedy=exc.remedy,
                                cause=exc.cause) from None
    if nodes[0].node.hostname is None:
        from nemoclaw_runtime.runtimes.server.host_ports import port_listening

        for port, ours, how in ((the_plan.base.port, the_plan.name, "pass --port / set NEMOCLAW_VLLM_PORT"),
                                (the_plan.ray_port, the_plan.ray[0].name, "set NEMOCLAW_RAY_PORT")):
            if port_listening(port) and nodes[0].svc.containers.get(ours) is None:
                raise PortInUse(f"Port {port} is already in use on the head (this machine)",
                                remedy=f"stop what listens there, or {how} to a free port")


def _refuse_one_engine_twice(nodes: Sequence[_Node]) -> None:
    """Two addresses of one engine (``local`` and its socket, a name and its IP) would stack two nodes' GPUs on one
    machine: refused (exit 2) by the engines' own ID and data root."""
    seen: dict[str, Node] = {}
    for item in nodes:
        info = item.svc.docker.engine_info()
        if not info.get("ID"):
            continue
        # the ID can be the machine's (two daemons there share /etc/docker), the data root is the daemon's own
        engine_id = f"{info.get('ID')}|{info.get('DockerRootDir')}"
        if engine_id in seen:
            first = seen[engine_id]
            raise InvalidInput(f"Nodes {first.index} ({first.address}) and {item.node.index} ({item.node.address}) "
                               "are the same Docker engine", remedy="name each machine once in --nodes")
        seen[engine_id] = item.node


def _run(the_plan: ClusterPlan, nodes: Sequence[_Node], events: EventSink, cancel: CancelToken,
         clock: Clock, run: _Run) -> UpResult:
    head = nodes[0]
    pulled, revision, snapshot = _download_on_head(the_plan, head, events, cancel)
    image_ref = f"{image_repository(pulled.ref)}@{pulled.digest}" if pulled.digest else the_plan.serve.image_ref
    _prepare_other_nodes(the_plan, nodes, image_ref, snapshot, events, cancel)
    pin = pulled.digest

    def pinned(spec: Any) -> Any:
        return dataclasses.replace(spec, image_digest=pin) if pin else spec

    events(PhaseChanged("start", f"Starting the Ray head on node 0 and {len(nodes) - 1} worker(s)"))
    # the Ray head's /tmp/ray, shared with the server: labelled, so only ours is ever removed
    head.svc.docker.create_volume(ray_volume_name(the_plan.name), {LABEL_MANAGED: "true", LABEL_GROUP: the_plan.name})
    cluster = RayCluster([NodeContainer(item.node, the_plan.ray[item.node.index].name, item.svc.containers)
                          for item in nodes], clock)
    for item in nodes:
        cancel.raise_if_cancelled()
        run.note(item.svc.containers.ensure_running(pinned(the_plan.ray[item.node.index]), events=events).action)
    events(PhaseChanged("wait", f"Waiting for the Ray cluster to report {the_plan.layout.gpus} GPUs"))
    head_ray = the_plan.ray[0].name
    budget = the_plan.base.ready_timeout_s  # one budget for the join and the readiness together
    joined = wait_for_gpus(cluster, lambda: head.svc.docker.exec_in_container(head_ray, ["ray", "status"]),
                           gpus=the_plan.layout.gpus, timeout_s=budget, clock=clock, cancel=cancel, events=events)
    outcome = head.svc.containers.ensure_running(pinned(the_plan.serve), events=events)
    run.note(outcome.action)
    served, validated = _serve(the_plan, head, cluster, events, cancel, max(1.0, budget - joined))
    from nemoclaw_runtime.runtimes.drivers.steps import effective_context_window

    return UpResult(
        runtime="vllm", name=the_plan.name, model=the_plan.base.model, served_model_id=served.served_model_id,
        base_url=the_plan.base_url, image=the_plan.serve.image, digest=pulled.digest,
        context_window=effective_context_window(head.svc.settings, served.context_window, events),
        reused=outcome.action == "reused", container_id=outcome.container.id, weights_revision=revision,
        validated_api=validated, nodes=tuple(_node_view(the_plan, item.node) for item in nodes))


def _node_view(the_plan: ClusterPlan, node: Node) -> dict[str, Any]:
    return {**node.to_dict(), "containers": [spec.name for spec in the_plan.specs_on(node)]}


def _download_on_head(the_plan: ClusterPlan, head: _Node, events: EventSink,
                      cancel: CancelToken) -> tuple[PulledImage, str | None, Any]:
    """The weights into this machine's cache and the image pinned on the head's engine, at the same time."""
    from nemoclaw_runtime.runtimes.drivers.vllm import VllmDriver
    from nemoclaw_runtime.runtimes.transfer import weights

    base = the_plan.base
    VllmDriver().prepare(base, head.svc, events, cancel)
    snapshot: list[Any] = []

    def fetch(token: CancelToken, sink: EventSink) -> str | None:
        if not base.prefetch:
            return None
        hf = head.svc.settings.hf_token_value()
        sink(PhaseChanged("weights", f"Downloading {base.model_id} into {head.svc.settings.hf_home}"))
        result = weights.prefetch(base.model_id, token=hf[1] if hf else None, settings=head.svc.settings,
                                  events=sink, cancel=token, revision=_revision(base.spec.command))
        snapshot.append(result.path)
        return result.revision

    def pull(token: CancelToken, sink: EventSink) -> PulledImage:
        sink(PhaseChanged("pull", f"Pulling {base.spec.image} on node 0 (pinned to this platform's digest)"))
        return head.svc.images.ensure_image(base.spec.image_ref, events=sink, cancel=token)

    revision, pulled = run_together([("nemoclaw-weights", fetch), ("nemoclaw-pull", pull)], cancel, events)
    return pulled, revision, (snapshot[0] if snapshot else None)


def _prepare_other_nodes(the_plan: ClusterPlan, nodes: Sequence[_Node], image_ref: str, snapshot: Any,
                         events: EventSink, cancel: CancelToken) -> None:
    """Every other node: the head's digest pulled, the weights copied into its cache volume — nodes in parallel."""
    from nemoclaw_runtime.runtimes.cluster.weights import copy_snapshot

    def prepare(item: _Node) -> Task:
        def work(token: CancelToken, sink: EventSink) -> None:
            if item.node.index > 0:
                sink(Info(f"Pulling {image_ref} on node {item.node.index} ({item.node.address})"))
                item.svc.images.ensure_image(image_ref, events=discard_progress(sink), cancel=token)
            if snapshot is not None and not item.node.is_local:
                sink(Info(f"Copying the weights into the {HF_VOLUME} volume of node {item.node.index}"))
                copied = copy_snapshot(item.svc.docker, snapshot=snapshot, image_ref=image_ref, volume=HF_VOLUME,
                                       group=the_plan.name, node=item.node.index, runtime="vllm", cancel=token)
                if not copied:
                    sink(Info(f"Node {item.node.index} already holds these weights"))
        return f"nemoclaw-node-{item.node.index}", work

    work = [prepare(item) for item in nodes if item.node.index > 0 or not item.node.is_local]
    if work:
        run_together(work, cancel, events)


def discard_progress(events: EventSink) -> EventSink:
    """The events of a node's pull without its byte progress (several bars at once are noise; the head's shows)."""
    from nemoclaw_runtime.kernel.events import Progress

    def sink(event: Any) -> None:
        if not isinstance(event, Progress):
            events(event)

    return sink


def _serve(the_plan: ClusterPlan, head: _Node, cluster: RayCluster, events: EventSink, cancel: CancelToken,
           timeout_s: float) -> tuple[Any, str | None]:
    from nemoclaw_runtime.runtimes.drivers.vllm import VllmDriver
    from nemoclaw_runtime.runtimes.server.readiness import wait_ready

    driver = VllmDriver()
    base = dataclasses.replace(the_plan.base, spec=the_plan.serve)
    events(PhaseChanged("wait", f"Waiting for {the_plan.name} on {the_plan.base_url}"))
    target = GroupTarget(head.svc.containers, the_plan.name, base.port, cluster, host=reach_host(head.node, base.host))
    try:
        ready = wait_ready(target, driver.readiness_probe(base), timeout_s=timeout_s, clock=head.svc.clock,
                           cancel=cancel, events=events, http=head.svc.http)
    except ContainerExited:
        if target.failed is not None:  # a Ray node stopped: the error names it, with its own log
            raise target.failed.failure(target.state()) from None
        raise
    root = f"http://{target.host}:{base.port}"
    served = driver.after_ready(base, ready, root, head.svc, events, cancel)
    return served, driver.validate(base, served, root, head.svc, events, cancel)


def _revision(argv: Sequence[str]) -> str | None:
    from nemoclaw_runtime.runtimes.fit import ServeOptions

    return ServeOptions.from_argv(tuple(argv)).revision


# --- clean-up ------------------------------------------------------------------------------------------------------


def _clean_up_after(the_plan: ClusterPlan, nodes: Sequence[_Node], events: EventSink, exc: BaseException) -> None:
    interrupted = isinstance(exc, (KeyboardInterrupt, Cancelled))
    why = "Cancelled" if interrupted else "The start failed"
    events(Info(f"{why}: removing {the_plan.name}'s containers on every node so nothing is left (a second Ctrl-C "
                "will not interrupt it)"))
    with interrupts_deferred(lambda: events(Warning("Still removing the deployment's containers; a few seconds "
                                                    "more"))):
        left = remove_group(the_plan.name, [(item.node, item.svc.docker) for item in nodes], events)
    if interrupted:
        if left:
            raise Cancelled(f"Cancelled; some containers could not be removed: {', '.join(left)}",
                            remedy=f"run `nemoclaw-runtime stop {the_plan.name}`",
                            details={"left_behind": left}) from exc
        raise Cancelled(f"Cancelled; {the_plan.name}'s containers were removed from every node, nothing was left "
                        "behind") from exc
    if left:
        events(Warning(f"Could not remove {', '.join(left)}: run `nemoclaw-runtime stop {the_plan.name}`"))


def remove_group(name: str, engines: Sequence[tuple[Node, DockerPort]], events: EventSink) -> list[str]:
    """Stop and remove every container of the deployment ``name`` (our label, its group) on every node, and the
    head's Ray volume; returns what could not be removed (``node N: container``)."""
    left: list[str] = []
    for node, docker in engines:
        try:
            found = docker.list_containers({LABEL_MANAGED: "true", LABEL_GROUP: name})
        except NemoclawError as exc:
            left.append(f"node {node.index} ({node.address}): {exc.message}")
            continue
        for info in found:
            container = info.name.lstrip("/")
            with contextlib.suppress(NemoclawError):
                docker.stop_container(info.id, timeout=CLEANUP_STOP_TIMEOUT_S)
            try:
                docker.remove_container(info.id, force=True)
                events(Info(f"Removed {container} on node {node.index}"))
            except NemoclawError as exc:
                left.append(f"{container} on node {node.index} ({exc.message})")
        if node.index == 0:
            with contextlib.suppress(NemoclawError):
                docker.remove_volume(ray_volume_name(name))
    return left
