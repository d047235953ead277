"""Watching a multi-node deployment start: the Ray cluster until it reports the GPUs the layout needs, then the
server — with every node's container looked at all along, so a node that fails ends the wait at once with its
own log tail and cause.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import ContainerExited, NemoclawError, NoSuchContainer, ReadinessTimeout
from nemoclaw_runtime.kernel.events import EventSink, Heartbeat, Info
from nemoclaw_runtime.runtimes.cluster.nodes import Node
from nemoclaw_runtime.runtimes.docker.port import ContainerManager, ContainerState
from nemoclaw_runtime.runtimes.server.diagnose import TAIL_LINES, classify, redact_lines

__all__ = ["GroupTarget", "NodeContainer", "RayCluster", "ray_gpus", "wait_for_gpus"]

#: How often the nodes' containers and ``ray status`` are looked at while the workers join.
JOIN_POLL_S = 1.0
#: How often the Ray containers are looked at during the server's readiness wait (the server itself is polled
#: faster by the readiness loop; a remote engine is not asked ten times a second).
NODE_CHECK_S = 1.0
_GPU_USAGE = re.compile(r"^\s*([0-9.]+)/([0-9.]+)\s+GPU\b", re.MULTILINE)


def ray_gpus(status_text: str) -> float | None:
    """The cluster's GPU total from ``ray status`` (``0.0/2.0 GPU`` under Usage); None when it names none."""
    match = _GPU_USAGE.search(status_text)
    return float(match.group(2)) if match else None


@dataclass(frozen=True)
class NodeContainer:
    """One Ray container of the deployment and the manager of its node's engine."""

    node: Node
    name: str
    manager: ContainerManager

    @property
    def where(self) -> str:
        return f"node {self.node.index} ({self.node.address})"

    def failure(self, state: ContainerState) -> ContainerExited:
        """The error for this container having stopped: its log tail and the classified cause."""
        try:
            tail = self.manager.logs(self.name, tail=TAIL_LINES)
        except NemoclawError:
            tail = []
        diagnosis = classify(tail, state=state)
        code = f" (exit code {state.exit_code})" if state.exit_code not in (None, 0) else ""
        because = f": {diagnosis.summary}" if diagnosis.cause != "unknown" else ""
        return ContainerExited(
            f"Ray container {self.name} on {self.where} {state.status}{code}{because}",
            remedy=diagnosis.remedy, cause=diagnosis.cause, log_tail=redact_lines(tail),
            details={"container": self.name, "node": self.node.index, "address": self.node.address,
                     "status": state.status, "exit_code": state.exit_code, "evidence": diagnosis.evidence})


@dataclass
class RayCluster:
    """The Ray containers of every node; ``check`` raises the first one's failure (a remote engine that stops
    answering is a failure too)."""

    containers: Sequence[NodeContainer]
    clock: Clock
    _checked_at: float | None = field(default=None, init=False)

    def first_stopped(self, *, throttle: bool = False) -> tuple[NodeContainer, ContainerState] | None:
        """The first Ray container that is not running, and its state; None when all run (or, with ``throttle``,
        when they were looked at less than ``NODE_CHECK_S`` ago)."""
        now = self.clock.monotonic()
        if throttle and self._checked_at is not None and now - self._checked_at < NODE_CHECK_S:
            return None
        self._checked_at = now
        for container in self.containers:
            try:
                state = container.manager.state(container.name)
            except NoSuchContainer:  # removed by someone while we wait: a stopped node all the same
                state = ContainerState(status="removed")
            if not state.running:
                return container, state
        return None

    def check(self) -> None:
        stopped = self.first_stopped()
        if stopped is not None:
            container, state = stopped
            raise container.failure(state)


def wait_for_gpus(cluster: RayCluster, status: Callable[[], tuple[int, str]], *, gpus: int,
                  timeout_s: float, clock: Clock, cancel: CancelToken, events: EventSink) -> float:
    """Until ``status()`` (``ray status`` run in the head's Ray container: exit code and output) reports ``gpus``
    GPUs or more; the nodes' containers are checked every round. Returns the seconds it took."""
    started = clock.monotonic()
    last: float | None = None
    heartbeat_at = started
    while True:
        cancel.raise_if_cancelled()
        cluster.check()
        try:
            code, text = status()
        except NemoclawError:  # the head's Ray may not take commands yet; its container is checked above
            code, text = -1, ""
        total = ray_gpus(text) if code == 0 else None
        if total is not None and total != last:
            events(Info(f"The Ray cluster reports {total:g} of the {gpus} GPUs it needs"))
            last = total
        if total is not None and total >= gpus:
            return clock.monotonic() - started
        elapsed = clock.monotonic() - started
        if elapsed >= timeout_s:
            raise ReadinessTimeout(
                f"The Ray cluster reported {last or 0:g} of the {gpus} GPUs it needs within {timeout_s:g} s",
                remedy="check that every node's Ray container joined (`nemoclaw-runtime logs NAME --node N`), that "
                       "the nodes reach the head's address and Ray port, and that each gives its GPUs to Docker",
                cause="ray-join", details={"gpus": gpus, "reported": last, "timeout_s": timeout_s})
        if clock.monotonic() - heartbeat_at >= 30:
            heartbeat_at = clock.monotonic()
            events(Heartbeat("ray", elapsed, f"{last or 0:g}/{gpus} GPUs joined"))
        cancel.wait(JOIN_POLL_S, clock)


@dataclass
class GroupTarget:
    """The readiness target of a deployment: the server's container on the head, and every node's Ray container
    looked at (once a second) on the way — the first that stops becomes the target, so the readiness loop ends at
    once; :attr:`failed` then tells which, for the error that names its node."""

    manager: ContainerManager
    serve: str
    port: int
    cluster: RayCluster
    host: str = "127.0.0.1"
    failed: NodeContainer | None = field(default=None, init=False)
    _failed_state: ContainerState | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.failed.name if self.failed is not None else self.serve

    def state(self) -> ContainerState:
        if self.failed is None:
            stopped = self.cluster.first_stopped(throttle=True)
            if stopped is not None:
                self.failed, self._failed_state = stopped
        if self._failed_state is not None:
            return self._failed_state
        return self.manager.state(self.serve)

    def log_tail(self, n: int) -> list[str]:
        if self.failed is not None:
            return self.failed.manager.logs(self.failed.name, tail=n)
        return self.manager.logs(self.serve, tail=n)
