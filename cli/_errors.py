"""Errors at the CLI edge: one line, the remedy, the exit code; JSON with ``--json``; traceback only when debugging.

Everything printed here went through the one redactor (``kernel/secret.py``: tokens, ``user:password@`` in URLs,
the value after a secret-like flag) and the one sanitiser (``kernel/text.py``: no terminal escapes, control or
bidi characters; message, cause and remedy folded to one line each). With ``--json`` every failure — click's usage
errors included — is one JSON document on stdout, in the shape of ``NemoclawError.to_dict()``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from nemoclaw_runtime.kernel.errors import InvalidInput, NemoclawError
from nemoclaw_runtime.kernel.secret import redact, redact_data
from nemoclaw_runtime.kernel.text import one_line, sanitize, tidy

LOG_TAIL_LINES_SHOWN = 80
INTERNAL_REMEDY = "set NEMOCLAW_DEBUG=1 for a traceback and report it"


def render_error(exc: BaseException, *, json_mode: bool, debug: bool) -> int:
    if debug:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        sys.stderr.write(sanitize(redact("".join(lines))))
    if isinstance(exc, NemoclawError):
        document = safe_document(exc.to_dict())
        if json_mode:
            click.echo(json.dumps(document, indent=2, default=str))
        else:
            _render_known(document)
        return exc.exit_code
    # An unexpected error is a bug of ours: say so in one line, never dump a traceback unless asked.
    message = one_line(redact(f"{type(exc).__name__}: {exc}"))[:500]
    if json_mode:
        click.echo(json.dumps({"error": "InternalError", "message": message, "exit_code": 1,
                               "remedy": INTERNAL_REMEDY}, indent=2))
    else:
        click.echo(f"Error: internal error: {message}", err=True)
        if not debug:
            click.echo(f"  {INTERNAL_REMEDY}", err=True)
    return 1


def render_usage_error(exc: click.ClickException, *, json_mode: bool) -> int:
    """A usage error of click (unknown option, bad value, missing argument): exit 2, one line and the fix, or the
    JSON document with ``--json``."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "nemoclaw-runtime"
    param = getattr(exc, "param", None)
    details: dict[str, Any] = {"usage": True}
    if param is not None and getattr(param, "name", None):
        details["param"] = param.name
    error = InvalidInput(exc.format_message(), remedy=f"run `{command} --help` to see the commands and options",
                         details=details)
    return render_error(error, json_mode=json_mode, debug=False)


@contextmanager
def safe_log_records() -> Iterator[None]:
    """While the CLI runs, every log record a library emits (huggingface_hub's retry warnings, say) is redacted and
    made one clean line when it is created — whichever handler then prints it. Restored afterwards."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = one_line(redact(record.getMessage())), None
        except Exception:  # noqa: BLE001 - a malformed record: drop its text rather than its process
            record.msg, record.args = "(a log message that could not be formatted)", None
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def safe_document(document: dict[str, Any]) -> dict[str, Any]:
    """An error document made safe to print: credentials redacted everywhere, message, remedy and cause one clean
    line each, log lines without terminal escapes or control characters."""
    safe: dict[str, Any] = redact_data(document)
    for key in ("message", "remedy", "cause"):
        if isinstance(safe.get(key), str):
            safe[key] = tidy(safe[key]) if key == "message" else one_line(safe[key])
    safe["log_tail"] = [sanitize(str(line)).replace("\n", " ") for line in safe.get("log_tail") or []]
    return safe


def _render_known(document: dict[str, Any]) -> None:
    log_tail = document["log_tail"]
    if log_tail:
        click.echo(f"--- last {min(len(log_tail), LOG_TAIL_LINES_SHOWN)} log lines ---", err=True)
        for line in log_tail[-LOG_TAIL_LINES_SHOWN:]:
            click.echo(f"  {line}", err=True)
        click.echo("---", err=True)
    click.echo(f"Error: {document['message']}", err=True)
    if document.get("cause"):
        click.echo(f"  cause: {document['cause']}", err=True)
    if document.get("remedy"):
        click.echo(f"  fix: {document['remedy']}", err=True)


__all__ = ["render_error", "render_usage_error", "safe_document", "safe_log_records"]
