"""``ps``, ``stop`` and ``logs`` for deployments over several nodes: each is one entry (the server on the head),
with its nodes; ``stop`` removes every node's containers; ``logs`` takes ``--node``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput, NemoclawError, NoSuchContainer
from nemoclaw_runtime.kernel.events import EventSink, Warning, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.cluster import records
from nemoclaw_runtime.runtimes.cluster.layout import ray_container_name
from nemoclaw_runtime.runtimes.cluster.nodes import Node, node_settings
from nemoclaw_runtime.runtimes.cluster.start import Engines, remove_group
from nemoclaw_runtime.runtimes.docker.containers import ManagedContainerView
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, DockerPort

__all__ = ["group_logs", "list_groups", "stop_groups"]


@contextlib.contextmanager
def _engine(settings: Settings, node: Node, engines: Engines | None) -> Iterator[DockerPort]:
    port = engines(node) if engines is not None else wiring.open_docker(node_settings(settings, node))
    try:
        yield port
    finally:
        if engines is None:
            port.close()


def _node_state(settings: Settings, record: records.GroupRecord, node: Node,
                engines: Engines | None) -> tuple[dict[str, Any], ContainerInfo | None]:
    view: dict[str, Any] = {**node.to_dict(), "container": ray_container_name(record.name, node.index)}
    try:
        with _engine(settings, node, engines) as docker:
            info = docker.inspect_container(view["container"])
            view["state"] = info.state.status if info is not None else "missing"
            server = docker.inspect_container(record.name) if node.index == 0 else None
    except NemoclawError as exc:
        view["state"], view["error"] = "unreachable", exc.message
        return view, None
    return view, server


def list_groups(settings: Settings, *, engines: Engines | None = None) -> list[ManagedContainerView]:
    """Every deployment this machine started over several nodes, as one entry each: the server's view with every
    node's state (a node that cannot be reached says so; so does a server that is gone)."""
    views = []
    for record in records.read_records(settings):
        states = [_node_state(settings, record, node, engines) for node in record.nodes]
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
    node that cannot be reached keeps the record, so the stop can be run again."""
    stopped = []
    for name in names:
        record = records.read_record(settings, name)
        if record is None:
            continue
        left: list[str] = []
        for node in record.nodes:
            try:
                with _engine(settings, node, engines) as docker:
                    left += remove_group(name, [(node, docker)], events)
            except NemoclawError as exc:
                left.append(f"node {node.index} ({node.address}): {exc.message}")
        if left:
            events(Warning(f"{name}: could not remove {'; '.join(left)}; run the stop again once the node answers"))
            continue
        records.delete_record(settings, name)
        stopped.append(name)
    return stopped


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
        docker = stack.enter_context(_engine(settings, chosen, engines))
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
