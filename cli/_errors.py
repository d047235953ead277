"""Errors at the CLI edge: one line, the remedy, the exit code; JSON with ``--json``; traceback only when debugging."""

from __future__ import annotations

import json
import traceback

import click

from nemoclaw_runtime.kernel.errors import NemoclawError

LOG_TAIL_LINES_SHOWN = 80


def render_error(exc: BaseException, *, json_mode: bool, debug: bool) -> int:
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, NemoclawError):
        if json_mode:
            click.echo(json.dumps(exc.to_dict(), indent=2))
        else:
            _render_known(exc)
        return exc.exit_code
    # An unexpected error is a bug of ours: say so in one line, never dump a traceback unless asked.
    message = f"{type(exc).__name__}: {exc}"
    if json_mode:
        click.echo(json.dumps({"error": "InternalError", "message": message, "exit_code": 1,
                               "remedy": "set NEMOCLAW_DEBUG=1 for a traceback and report it"}, indent=2))
    else:
        click.echo(f"Error: internal error: {message}", err=True)
        if not debug:
            click.echo("  set NEMOCLAW_DEBUG=1 for a traceback and report it", err=True)
    return 1


def _render_known(exc: NemoclawError) -> None:
    if exc.log_tail:
        click.echo(f"--- last {min(len(exc.log_tail), LOG_TAIL_LINES_SHOWN)} log lines ---", err=True)
        for line in exc.log_tail[-LOG_TAIL_LINES_SHOWN:]:
            click.echo(f"  {line}", err=True)
        click.echo("---", err=True)
    click.echo(f"Error: {exc.message}", err=True)
    if exc.cause:
        click.echo(f"  cause: {exc.cause}", err=True)
    if exc.remedy:
        click.echo(f"  fix: {exc.remedy}", err=True)


__all__ = ["render_error"]
