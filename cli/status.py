"""``status``: what is running and how it is doing — health, GPU memory, KV cache and throughput of every server.

One library call per sample (``nemoclaw_runtime.api.status`` / ``api.watch_status``) rendered through ``Output``:
a table (and a line per server that is not healthy), or the JSON document with ``--json``. ``--watch [SECONDS]``
samples every SECONDS (default 2): on a terminal the table is redrawn in place (rich Live); with ``--json`` each
sample is one JSON document on its own line (JSON lines), for a dashboard to follow. Ctrl-C ends a watch (exit 0).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option, safe_line
from nemoclaw_runtime.cli._params import CONTAINER_NAME, number_between, runtime_option
from nemoclaw_runtime.kernel.secret import redact_data
from nemoclaw_runtime.kernel.units import format_bytes, format_mib

if TYPE_CHECKING:
    from nemoclaw_runtime import ServerStatus, StatusReport

DEFAULT_WATCH_S = 2.0
MIN_WATCH_S = 0.2
MAX_WATCH_S = 3600.0  # an hour between samples; `inf` would wait forever
COLUMNS = ("NAME", "RUNTIME", "STATE", "UPTIME", "HEALTH", "MODEL", "CONTEXT", "GPU MEM", "RUN/WAIT", "KV%",
           "PROMPT t/s", "GEN t/s", "BASE URL")


@click.command("status")
@click.argument("names", nargs=-1, metavar="NAME…", type=CONTAINER_NAME)
@runtime_option("Only servers of this runtime.")
@click.option("--watch", "watch_s", is_flag=False,
              type=number_between(MIN_WATCH_S, MAX_WATCH_S, remedy="pass --watch 2, for example"),
              flag_value=DEFAULT_WATCH_S, default=None, metavar="[SECONDS]",
              help="Sample again every SECONDS (default 2) until Ctrl-C: redrawn in place on a terminal, one JSON "
                   "document per line with --json. Put NAMEs before it, or write --watch=SECONDS.")
@click.option("--count", type=click.IntRange(min=1), default=None, hidden=True,
              help="Stop a watch after this many samples (for tests and scripts).")
@json_option
def status(names: tuple[str, ...], runtime: str | None, watch_s: float | None, count: int | None,
           json_mode: bool) -> None:
    """Show every managed server (or the NAMEs given) and any local server on the known ports: state, uptime,
    restarts, health with its reason, model, context window, GPU memory, and vLLM's load and throughput.

    A server that hangs is reported "unresponsive" within a second; an unknown NAME exits with 6.
    """
    output = Output(json_mode)
    settings = output.settings()
    if watch_s is None and count is None:
        report = api.status(names, runtime=runtime, settings=settings)
        output.result(report.to_dict(), lambda: report_lines(report))
        return
    samples: Generator[StatusReport, None, None] = api.watch_status(
        names, runtime=runtime, settings=settings, interval_s=watch_s or DEFAULT_WATCH_S, count=count)
    try:
        if json_mode:
            _watch_json(output, samples)
        elif output.out.isatty():
            _watch_live(output, samples)
        else:
            _watch_plain(output, samples)
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends: not an error
        pass
    finally:
        samples.close()
        output.out.flush()


def _watch_json(output: Output, samples: Iterator[StatusReport]) -> None:
    for report in samples:
        # The one output path's redaction: what servers report (ids, log lines) comes from outside.
        output.out.write(json.dumps(redact_data(report.to_dict()), separators=(",", ":"), default=str) + "\n")
        output.out.flush()


def _watch_plain(output: Output, samples: Iterator[StatusReport]) -> None:
    for report in samples:
        output.out.write(f"--- sample {report.sample} at {report.sampled_at} ---\n")
        for line in report_lines(report):
            output.out.write(safe_line(line) + "\n")
        output.out.flush()


def _watch_live(output: Output, samples: Iterator[StatusReport]) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=output.out)
    with Live(console=console, auto_refresh=False, transient=False) as live:
        for report in samples:
            live.update(_rich(report), refresh=True)


def _rich(report: StatusReport) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"nemoclaw-runtime status · sample {report.sample} · {report.sampled_at} · "
                        f"{report.elapsed_s:.2f} s", title_justify="left", expand=False)
    for column in COLUMNS:
        table.add_column(column, no_wrap=column in ("NAME", "HEALTH"), overflow="fold")  # narrow terminal: wrap
    styles = {"healthy": "green", "starting": "yellow", "unhealthy": "red", "unresponsive": "red",
              "stopped": "dim", "restarting": "red"}
    for server in report.servers:  # Text cells: a model name with [brackets] is not rich markup
        cells = [Text(safe_line(cell)) for cell in server_row(server)]
        cells[4].stylize(styles.get(server.health, ""))
        table.add_row(*cells)
    details = Text("\n".join(safe_line(line) for line in detail_lines(report)))
    return Group(table, details) if details.plain else table


# --- plain text -------------------------------------------------------------------------------------------------


def report_lines(report: StatusReport) -> Iterator[str]:
    if not report.servers:
        yield "No managed containers, and no server answers on the known local ports."
        return
    rows = [COLUMNS] + [server_row(s) for s in report.servers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
    yield from detail_lines(report)


def detail_lines(report: StatusReport) -> Iterator[str]:
    gpu_reason_shown = False
    for server in report.servers:
        if not server.healthy:
            yield f"{server.name}: {server.health}" + (f" — {server.health_reason}" if server.health_reason else "")
            if server.last_log_line:
                yield f"    last log: {server.last_log_line}"
        if server.metrics_reason and server.health in ("healthy", "unhealthy"):
            yield f"{server.name}: metrics: {server.metrics_reason}"
        if server.metrics is not None and server.metrics.deprecated_names:
            yield f"{server.name}: metrics read from deprecated names ({', '.join(server.metrics.deprecated_names)})"
        if server.ollama is not None:
            yield from _ollama_lines(server)
        if not server.managed and server.notes:
            yield f"{server.name}: {server.notes[-1]}"
        gpu = server.gpu
        if gpu.memory_mib is None and gpu.reason and server.state in (None, "running"):
            if gpu.reason == report.gpu_reason:
                gpu_reason_shown = True
            else:
                yield f"{server.name}: GPU memory unknown — {gpu.reason}"
    if gpu_reason_shown:
        yield f"GPU memory unknown — {report.gpu_reason}"


def _ollama_lines(server: ServerStatus) -> Iterator[str]:
    state = server.ollama
    if state is None:
        return
    if state.loaded is None:
        yield f"{server.name}: loaded models unknown — {state.reason}"
    elif not state.loaded:
        yield f"{server.name}: no model loaded (Ollama {state.version})"
    for model in state.loaded or ():
        until = f", until {model.expires_at}" if model.expires_at else ""
        yield (f"{server.name}: loaded {model.name}: {format_bytes(model.size_vram_bytes)} in VRAM of "
               f"{format_bytes(model.size_bytes)}{until}")


def server_row(server: ServerStatus) -> tuple[str, ...]:
    state = server.state or ("not managed" if not server.managed else "-")
    if server.exit_code is not None and server.state != "running":
        state = f"{state} ({server.exit_code})"
    if server.restart_count:
        state = f"{state}, {server.restart_count} restarts"
    metrics = server.metrics
    run_wait = "-"
    if metrics is not None and (metrics.requests_running is not None or metrics.requests_waiting is not None):
        run_wait = f"{_count(metrics.requests_running)}/{_count(metrics.requests_waiting)}"
    return (
        server.name, server.runtime or "?", state, _duration(server.uptime_s), server.health,
        server.served_model or server.model or "-",
        str(server.context_window) if server.context_window else "-",
        _mib(server.gpu.memory_mib, server.gpu.gpus),
        run_wait,
        _fixed(metrics.kv_cache_usage_pct if metrics else None, 1),
        _fixed(metrics.prompt_tokens_per_s if metrics else None, 1),
        _fixed(metrics.generation_tokens_per_s if metrics else None, 1),
        server.base_url or "-",
    )


def _count(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mib(mib: int | None, gpus: Sequence[int]) -> str:
    if mib is None:
        return "?"
    text = format_mib(mib)  # kernel/units.py: the one way a size reaches a user
    return f"{text} (GPU {','.join(map(str, gpus))})" if gpus else text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


__all__ = ["status"]


__all__ = ["COLUMNS", "DEFAULT_WATCH_S", "detail_lines", "report_lines", "server_row", "status"]
