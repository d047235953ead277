"""Parameters shared by several commands: one ``--runtime`` option (and ``RUNTIME`` argument) over one runtime list.

The values come from the library (``nemoclaw_runtime.api.RUNTIMES``). An unknown value is the library's own
``InvalidInput``: one line with the remedy, exit 2, and a JSON document with ``--json``, like every other error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from nemoclaw_runtime.api import RUNTIMES, check_runtime

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


def runtime_option(help: str = "Only containers of this runtime.") -> Callable[[F], F]:
    """``--runtime R``: optional, one of the runtimes; ``None`` when not given."""
    return click.option("--runtime", type=RuntimeChoice(), default=None, help=help)


def runtime_argument() -> Callable[[F], F]:
    """``RUNTIME``: required, one of the runtimes."""
    return click.argument("runtime", type=RuntimeChoice())


__all__ = ["runtime_argument", "runtime_option"]
