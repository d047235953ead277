"""Parameters shared by several commands: one ``--runtime`` option (and ``RUNTIME`` argument) over one runtime list,
and the value types every option is checked with where it enters.

The values come from the library (``nemoclaw_runtime.api.RUNTIMES``). An unknown value is the library's own
``InvalidInput``: one line with the remedy, exit 2, and a JSON document with ``--json``, like every other error.

The types (:data:`PORT`, :data:`SECONDS`, :data:`CONTAINER_NAME`, :func:`whole_number`) use the checks of
``kernel/checks.py``, the same the library applies: ASCII digits only (click's ``int``/``float`` also read other
scripts' digits, ``1_000``, ``nan`` and ``inf``), names matched whole. A bad value is a usage error (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from nemoclaw_runtime.api import RUNTIMES, check_runtime
from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


class RuntimeChoice(click.Choice):
    """``click.Choice`` over the runtimes (help and completion list them) that refuses with ``InvalidInput``."""

    name = "runtime"

    def __init__(self) -> None:
        super().__init__(RUNTIMES)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            check_runtime(str(value))  # raises InvalidInput: one line, the remedy, exit 2
            raise


class _Checked(click.ParamType):
    """A click type whose conversion is one of ``kernel/checks.py``'s checks (``InvalidInput`` → usage error)."""

    def __init__(self, name: str, check: Callable[[Any, str], Any]) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        what = param.opts[0] if param is not None and param.opts else self.name
        if param is not None and param.param_type_name == "argument":
            what = (param.name or self.name).upper()
        try:
            return self._check(value, what)
        except InvalidInput as exc:  # click says "Invalid value for '--port': ", the check the rest
            message = exc.message
            for prefix in (f"Invalid {what} ", "Invalid "):
                if message.startswith(prefix):
                    message = message[len(prefix):]
                    break
            self.fail(message, param, ctx)


def whole_number(low: int, high: int) -> click.ParamType:
    """An integer in ``low..high`` written in ASCII digits."""
    return _Checked("integer", lambda value, what: checks.check_int(
        value, what, low=low, high=high, remedy=f"pass a whole number between {low} and {high}"))


#: A TCP port (1-65535), ASCII digits.
PORT = _Checked("port", lambda value, what: checks.check_port(value, what))
#: A positive, finite number of seconds (at most 30 days), ASCII.
SECONDS = _Checked("seconds", lambda value, what: checks.check_seconds(value, what))


def number_between(low: float, high: float, *, remedy: str, above_low: bool = False) -> click.ParamType:
    """A finite number in ``low..high`` (``above_low``: ``low`` itself refused) written in ASCII: no ``inf``,
    ``nan`` or other scripts' digits, which click's ``FloatRange`` accepts."""
    def check(value: Any, what: str) -> float:
        number = checks.check_number(value, what, low=low, high=high, remedy=remedy)
        if above_low and number == low:
            raise InvalidInput(f"Invalid {what} {value}: must be more than {low:g} and at most {high:g}",
                               remedy=remedy)
        return number

    return _Checked("number", check)


#: A container name, matched whole (never an id or an id prefix).
CONTAINER_NAME = _Checked("name", lambda value, what: checks.check_container_name(value, what))


def runtime_option(help: str = "Only containers of this runtime.") -> Callable[[F], F]:
    """``--runtime R``: optional, one of the runtimes; ``None`` when not given."""
    return click.option("--runtime", type=RuntimeChoice(), default=None, help=help)


def runtime_argument() -> Callable[[F], F]:
    """``RUNTIME``: required, one of the runtimes."""
    return click.argument("runtime", type=RuntimeChoice())


__all__ = ["CONTAINER_NAME", "PORT", "SECONDS", "number_between", "runtime_argument", "runtime_option",
           "whole_number"]
