"""``ps``, ``stop`` and ``logs``: the ops commands over the containers nemoclaw-runtime manages.

Each command is one library call (``nemoclaw_runtime.api``: ``list_managed``, ``stop``, ``logs``) rendered through
``Output``. Nothing here imports docker-py: the library connects lazily when the command runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option, safe_line
from nemoclaw_runtime.cli._params import CONTAINER_NAME, runtime_option, whole_number
from nemoclaw_runtime.kernel.checks import MAX_LOG_TAIL
from nemoclaw_runtime.kernel.text import one_line

if TYPE_CHECKING:
    from nemoclaw_runtime import ManagedContainerView

DEFAULT_TAIL = 80
_PS_COLUMNS = ("NAME", "RUNTIME", "MODEL", "STATE", "HEALTH", "GPUS", "BASE URL", "IMAGE", "CREATED")


@click.command("ps")
@runtime_option()
@json_option
def ps(runtime: str | None, json_mode: bool) -> None:
    """List the containers nemoclaw-runtime manages (found by label; nothing else is shown)."""
    output = Output(json_mode)
    views = api.list_managed(runtime=runtime, settings=output.settings())
    output.result([view.to_dict() for view in views], lambda: _ps_lines(views))


def _ps_lines(views: Sequence[ManagedContainerView]) -> Iterator[str]:
    if not views:
        yield "No managed containers."
        return
    # Names, labels and images come from the engine: one clean line per cell (no escapes, bidi marks, newlines)
    rows = [_PS_COLUMNS] + [tuple(one_line(cell) for cell in _ps_row(v)) for v in views]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_PS_COLUMNS))]
    for row, view in zip(rows, [None, *views], strict=True):
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        yield from _node_lines(view)


def _node_lines(view: ManagedContainerView | None) -> Iterator[str]:
    """Under a deployment over several nodes: one indented line per node (its place, engine and state)."""
    for node in (view.nodes or ()) if view is not None else ():
        role = "head" if node.get("index") == 0 else "worker"
        line = f"  └ node {node.get('index')} ({role}) {node.get('address')}: {node.get('container')} " \
               f"{node.get('state')}"
        yield one_line(line + (f" ({node['error']})" if node.get("error") else ""))


def _ps_row(view: ManagedContainerView) -> tuple[str, ...]:
    state = view.state
    if view.exit_code is not None and view.state in ("exited", "dead"):  # a created container reports 0 too
        state = f"{state} ({view.exit_code})"
    model = view.model or "-"
    if view.weights_revision:
        model += f"@{view.weights_revision[:12]}"  # the pinned Hugging Face commit
    return (view.name, view.runtime or "-", model, state, view.health or "-", _gpus(view),
            view.base_url or "-", view.image or "-", _short_time(view.created))


def _gpus(view: ManagedContainerView) -> str:
    """``0,1 @0.7``: the GPU indices a container computes on and its share of each; ``-`` when unlabelled."""
    if view.gpus is None:
        return "-"
    indices = ",".join(map(str, view.gpus)) or "none"
    return f"{indices} @{view.gpu_memory_utilization:g}" if view.gpu_memory_utilization and view.gpus else indices


def _short_time(created: str | None) -> str:
    """``2026-11-24T00:35:34.123456789Z`` → ``2026-11-24 00:35:34``."""
    if not created:
        return "-"
    return created.replace("T", " ").split(".")[0].rstrip("Z")


@click.command("stop")
@click.argument("names", nargs=-1, metavar="NAME…", type=CONTAINER_NAME)
@click.option("--all", "all_", is_flag=True, help="Stop every managed container (with --runtime: of that runtime).")
@runtime_option()
@json_option
def stop(names: tuple[str, ...], all_: bool, runtime: str | None, json_mode: bool) -> None:
    """Stop and remove managed containers. Images and model weights stay.

    Containers nemoclaw-runtime did not create are never touched: naming one exits with 6 and stops nothing.
    A managed Ollama unloads its models first, so GPU memory is handed back before the container goes.
    """
    from nemoclaw_runtime.kernel.events import Event, Info

    output = Output(json_mode)
    sink = output.events()

    def warnings_only(event: Event) -> None:  # the result already lists what was stopped
        if not isinstance(event, Info):
            sink(event)

    stopped = api.stop(names, all=all_, runtime=runtime, settings=output.settings(), events=warnings_only)
    output.result({"stopped": stopped}, lambda: _stop_lines(stopped, runtime))


def _stop_lines(stopped: Iterable[str], runtime: str | None) -> Iterator[str]:
    names = list(stopped)
    if not names:
        yield f"No managed {runtime} containers to stop." if runtime else "No managed containers to stop."
    for name in names:
        yield f"Stopped and removed {name}"


@click.command("logs")
@click.argument("name", type=CONTAINER_NAME)
@click.option("--tail", "-n", type=whole_number(0, MAX_LOG_TAIL), default=DEFAULT_TAIL, show_default=True,
              help="How many of the last lines to show.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the container stops or Ctrl-C.")
@click.option("--node", metavar="N|ADDRESS",
              help="A deployment over several nodes: the Ray container of this node (its index, 0 the head, or its "
                   "engine address); without it, the server's log on the head.")
def logs(name: str, tail: int, follow: bool, node: str | None) -> None:
    """Show the log (stdout and stderr) of a managed container."""
    output = Output(False)
    lines = api.logs(name, tail=tail, follow=follow, settings=output.settings(), node=node)
    try:
        for line in lines:
            output.out.write(safe_line(line.rstrip("\n")) + "\n")  # the container's text: no escapes, no secrets
            if follow:
                output.out.flush()
    except KeyboardInterrupt:  # Ctrl-C is how a follow ends: not an error
        pass
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
        output.out.flush()


__all__ = ["logs", "ps", "stop"]
