"""Entry point of the ``nemoclaw-runtime`` command.

Commands are imported only when used (``--help`` stays fast: docker-py, httpx and pynvml load lazily), and every
error leaves through :func:`main`: one line, the remedy, the documented exit code, and a traceback only with
``NEMOCLAW_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from nemoclaw_runtime._version import __version__

# name -> "module:attribute"; modules are imported on first use.
COMMANDS: dict[str, str] = {
    "gpus": "nemoclaw_runtime.cli.gpus:gpus",
    "models": "nemoclaw_runtime.cli.models:models",
    "pull": "nemoclaw_runtime.cli.pull:pull",
    "up": "nemoclaw_runtime.cli.up:up",
    "lock": "nemoclaw_runtime.cli.lock:lock",
    "fit": "nemoclaw_runtime.cli.fit:fit",
    "ps": "nemoclaw_runtime.cli.ops:ps",
    "stop": "nemoclaw_runtime.cli.ops:stop",
    "logs": "nemoclaw_runtime.cli.ops:logs",
    "options": "nemoclaw_runtime.cli.options:options",
    "validate": "nemoclaw_runtime.cli.validate:validate",
    "status": "nemoclaw_runtime.cli.status:status",
    "export": "nemoclaw_runtime.cli.export:export",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, target in COMMANDS.items() if _module_exists(target)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nemoclaw-runtime")
def cli() -> None:
    """Serve a model on this NVIDIA machine with vLLM, NIM or Ollama.

    \b
    Exit codes: 0 ok · 1 internal error · 2 invalid input · 3 preflight refused ·
    4 download failed · 5 runtime not ready · 6 no such managed container · 130 cancelled ·
    143 terminated (SIGTERM).
    Set NEMOCLAW_DEBUG=1 to see tracebacks.
    """


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    code = 130  # what a Ctrl-C escaping before run() answers means
    try:
        code = run(args)
        _keep_the_exit_code(code)
    except KeyboardInterrupt:
        # A Ctrl-C dispatched after run()'s own handling (a signal that arrived while a clean-up held signals back)
        # must not escape: CPython would then end the process *by SIGINT* instead of exiting with the code.
        _keep_the_exit_code(code)
    _forget_a_caught_interrupt()
    _exit_without_waiting_for_library_threads(code)
    sys.exit(code)


def _forget_a_caught_interrupt() -> None:
    """CPython (3.11, 3.12) remembers a KeyboardInterrupt that ended code run by a *string* ``exec`` — the functions
    ``dataclasses`` and ``namedtuple`` generate while a module is imported lazily, for one — even when it was caught,
    and at exit ``python -m nemoclaw_runtime.cli.main`` then kills itself by SIGINT instead of exiting with our code
    (a Ctrl-C that lands in such an import, one run in eight under load). The interpreter clears that flag at the
    start of every string evaluation, so one that completes clears it; signals are ignored by now, so no new
    interrupt can set it again."""
    exec("None")  # a constant string: only clears the interpreter's flag (see above)


def _keep_the_exit_code(code: int) -> None:
    """The command has answered and cleaned up: a Ctrl-C or SIGTERM still pending (one that arrived while a clean-up
    held signals back) must not turn into a KeyboardInterrupt during interpreter shutdown, which CPython reports by
    killing the process with SIGINT instead of exiting with ``code``."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(signum, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


def _exit_without_waiting_for_library_threads(code: int) -> None:
    """Once the command has answered, end the process even if a library's worker thread is still blocked.

    huggingface_hub downloads on thread-pool workers, which Python joins at exit whatever their daemon flag
    (concurrent.futures registers that join): after a stalled or cancelled download they can sit in a socket read
    for a minute after our ``Error:`` line. Our own clean-up has run by now (containers removed, locks released), so
    the output is flushed and the process ends with the command's code. Only the console script does this; a library
    caller owns its process."""
    if not any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
        return
    logging.shutdown()  # flush every log handler first
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is: every ``except KeyboardInterrupt`` clean-up path runs
    (the container ``up`` started is removed, locks are released); :func:`run` then exits 143."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """While the block runs, SIGTERM (systemd, Kubernetes, ``timeout``) raises :class:`TerminatedBySignal` in the
    main thread; the yielded list records that it came. The previous handler is restored afterwards. Off the main
    thread, or where signals cannot be set, nothing changes."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:  # the first starts the clean-up; a second must not cut it short
            raise TerminatedBySignal()

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: list[str]) -> int:
    """Run the CLI with ``args`` and return the exit code (tests call this directly)."""
    from nemoclaw_runtime.cli._errors import render_error, render_usage_error, safe_log_records  # light imports
    from nemoclaw_runtime.kernel.errors import Cancelled, Terminated

    json_mode = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    debug = os.environ.get("NEMOCLAW_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    with sigterm_as_interrupt() as sigterm:
        try:
            with safe_log_records():  # a library's log line reaches the terminal redacted and one line too
                result: Any = cli.main(args=args, prog_name="nemoclaw-runtime", standalone_mode=False)
            return int(result) if isinstance(result, int) else 0
        except click.exceptions.Exit as exc:
            return int(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            stopped: Cancelled = (Terminated("Terminated by SIGTERM", remedy="run the command again") if sigterm
                                  else Cancelled("Cancelled by Ctrl-C", remedy="run the command again"))
            return render_error(stopped, json_mode=json_mode, debug=False)
        except click.ClickException as exc:  # usage errors: exit 2, one line and the fix; JSON with --json
            return render_usage_error(exc, json_mode=json_mode)
        except BaseException as exc:  # noqa: BLE001 - the one place every error becomes an exit code
            if isinstance(exc, SystemExit):
                raise
            if sigterm and isinstance(exc, Cancelled) and not isinstance(exc, Terminated):
                # the clean-up paths said what they removed (or left) as Ctrl-C would; the exit code is SIGTERM's
                exc = Terminated(f"Terminated by SIGTERM: {exc.message}", remedy=exc.remedy, cause=exc.cause,
                                 log_tail=exc.log_tail, details=exc.details)
            return render_error(exc, json_mode=json_mode, debug=debug)


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["LazyGroup", "TerminatedBySignal", "cli", "main", "run", "sigterm_as_interrupt"]
