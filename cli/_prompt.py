"""Masked prompts for keys, offered only on a terminal: a non-interactive run never waits on stdin."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click


def masked_prompt_if_interactive() -> Callable[[str], str] | None:
    """A masked prompt when stdin is a terminal, else ``None`` (the library then refuses with the remedy)."""
    if not sys.stdin.isatty():
        return None

    def ask(label: str) -> str:
        return str(click.prompt(label.strip().rstrip(":"), hide_input=True, default="", show_default=False,
                                err=True))

    return ask


__all__ = ["masked_prompt_if_interactive"]
