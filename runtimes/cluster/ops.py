"""``ps``, ``stop`` and ``logs`` for deployments over several nodes: each is one entry (the server on the head),
with its nodes; ``stop`` removes every node's containers; ``logs`` takes ``--node``."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import DockerUnavailable, InvalidInput, NemoclawError, NoSuchContainer
from nemoclaw_runtime.kernel.events import EventSink, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import one_line
from nemoclaw_runtime.kernel.threads import in_daemon_thread
from nemoclaw_runtime.runtimes.cluster import records
from nemoclaw_runtime.runtimes.cluster.layout import ray_container_name
from nemoclaw_runtime.runtimes.cluster.nodes import Node, node_settings
from nemoclaw_runtime.runtimes.cluster.start import Engines, node_engine, remove_group
from nemoclaw_runtime.runtimes.docker.containers import ManagedContainerView
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo

__all__ = ["group_logs", "list_groups", "stop_groups"]


#: How long ``ps`` waits for one node's engine (an ssh:// host that dropped off the network must not hang it).
NODE_ANSWER_S = 10.0


def _ask_node(settings: Settings, record: records.GroupRecord, node: Node,
              engines: Engines | None) -> futures.Future[tuple[ContainerInfo | None, ContainerInfo | None]]:
    """The node's Ray container (and, on the head, the server), asked in a daemon thread: an engine that does not
    answer never holds ``ps``."""
    def ask() -> tuple[ContainerInfo | None, ContainerInfo | None]:
        with node_engine(settings, node, engines) as docker:
            ray = docker.inspect_container(ray_container_name(record.name, node.index))
            return ray, (docker.inspect_container(record.name) if node.index == 0 else None)

    return in_daemon_thread(f"nemoclaw-ps-node-{node.index}", ask)


def _node_view(record: records.GroupRecord, node: Node, answer: futures.Future[Any],
               deadline: float) -> tuple[dict[str, Any], ContainerInfo | None]:
    """The node's line: its Ray container's state, or "unreachable" with the reason (never the command's error)."""
    view: dict[str, Any] = {**node.to_dict(), "container": ray_container_name(record.name, node.index)}
    try:
        ray, server = answer.result(timeout=max(0.0, deadline - time.monotonic()))
    except futures.TimeoutError:
        view["state"], view["error"] = "unreachable", f"no answer within {NODE_ANSWER_S:g} s"
        return view, None
    except Exception as exc:  # noqa: BLE001 - one node's failure is shown on its line, never a traceback
        view["state"] = "unreachable"
        view["error"] = exc.message if isinstance(exc, NemoclawError) else one_line(f"{type(exc).__name__}: {exc}")
        return view, None
    view["state"] = ray.state.status if ray is not None else "missing"
    return view, server


def list_groups(settings: Settings, *, engines: Engines | None = None) -> list[ManagedContainerView]:
    """Every deployment this machine started over several nodes, as one entry each: the server's view with every
    node's state (a node that cannot be reached says so; so does a server that is gone). Every node is asked at
    once; the whole listing waits ``NODE_ANSWER_S`` at most."""
    found = records.read_records(settings)
    asked = [[_ask_node(settings, record, node, engines) for node in record.nodes] for record in found]
    deadline = time.monotonic() + NODE_ANSWER_S
    views = []
    for record, answers in zip(found, asked, strict=True):
        states = [_node_view(record, node, answer, deadline) for node, answer in zip(record.nodes, answers,
                                                                                     strict=True)]
        nodes = tuple(state for state, _ in states)
        server = states[0][1]
        if server is not None:
            view = ManagedContainerView.from_info(server)
        else:
            view = ManagedContainerView(
                name=record.name, id="", runtime=record.runtime, model=record.model, served_model=None,
                state="unreachable" if nodes[0].get("state") == "unreachable" else "missing",
                exit_code=None, health=None, restart_count=0, base_url=None, image=None, image_digest=None,
                created=None, version=None)
        views.append(dataclasses.replace(view, group=record.name, nodes=nodes))
    return views


def stop_groups(settings: Settings, names: Sequence[str], *, engines: Engines | None = None,
                events: EventSink = discard) -> list[str]:
    """Remove every node's containers of each named deployment, then its record; returns the names stopped. A
    node that cannot be reached keeps the record (the stop can be run again) and, once every name was tried, ends
    the command with :class:`DockerUnavailable` (exit 3) naming what is left."""
    stopped: list[str] = []
    left: list[str] = []
    for name in names:
        record = records.read_record(settings, name)
        if record is None:
            continue
        here = _stop_everywhere(settings, record, engines, events)
        if here:
            left += [f"{name}: {item}" for item in here]
            continue
        records.delete_record(settings, name)
        stopped.append(name)
    if left:
        raise DockerUnavailable(f"Could not stop everything ({'; '.join(left)})" +
                                (f"; stopped {', '.join(stopped)}" if stopped else ""),
                                remedy="run the stop again once the node answers",
                                details={"left_behind": left, "stopped": stopped})
    return stopped


def _stop_everywhere(settings: Settings, record: records.GroupRecord, engines: Engines | None,
                     events: EventSink) -> list[str]:
    left: list[str] = []
    for node in record.nodes:
        try:
            with node_engine(settings, node, engines) as docker:
                left += remove_group(record.name, [(node, docker)], events)
        except Exception as exc:  # noqa: BLE001 - an unreachable node is reported, the others are still stopped
            reason = exc.message if isinstance(exc, NemoclawError) else f"{type(exc).__name__}: {exc}"
            left.append(f"node {node.index} ({node.address}): {one_line(reason)}")
    return left


def group_logs(settings: Settings, name: str, *, node: str | None, tail: int, follow: bool,
               engines: Engines | None = None) -> tuple[Iterator[str], contextlib.ExitStack]:
    """The log of one container of the deployment: the server's (``node`` None or 0) or node N's Ray container.
    Returns the lines and the stack that closes the engine once they are read."""
    record = records.read_record(settings, name)
    if record is None:
        raise NoSuchContainer(f"No deployment {name} over several nodes",
                              remedy="list them with `nemoclaw-runtime ps`")
    chosen = _pick_node(record, node)
    container = record.name if chosen.index == 0 and node is None else ray_container_name(name, chosen.index)
    stack = contextlib.ExitStack()
    try:
        docker = stack.enter_context(node_engine(settings, chosen, engines))
        from nemoclaw_runtime.runtimes.docker.containers import managed_logs

        lines = managed_logs(node_settings(settings, chosen), container, docker=docker, tail=tail, follow=follow)
    except BaseException:
        stack.close()
        raise
    return lines, stack


def _pick_node(record: records.GroupRecord, node: str | None) -> Node:
    if node is None:
        return record.nodes[0]
    text = checks.check_plain_text(node, "--node")
    for candidate in record.nodes:
        if text in (str(candidate.index), candidate.address):
            return candidate
    raise InvalidInput(f"Invalid --node {text!r}: {record.name} runs on nodes "
                       f"{', '.join(f'{n.index} ({n.address})' for n in record.nodes)}",
                       remedy="pass a node's index (0 is the head) or its address")
