"""``nemoclaw-runtime options``: the local inference options of this host, as an onboarding wizard shows them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime.cli._output import Output, json_option


@click.command()
@click.option("--select", "select", is_flag=True,
              help="Choose non-interactively (NEMOCLAW_PROVIDER, NEMOCLAW_MODEL, NEMOCLAW_VLLM_MODEL, else the "
                   "suggested option) and print the choice; exit 2 or 3 when it does not fit this host.")
@json_option
def options(select: bool, json_mode: bool) -> None:
    """List the local inference options of this host: running servers, managed vLLM, NIM, Ollama.

    The suggested entry is marked with *. With --json, entries this host does not offer are listed under
    "absent" with a reason code (no-gpu, vram-too-small, not-experimental, ollama-not-installed, port-held, ...).

    \b
    Examples:
      nemoclaw-runtime options --json
      NEMOCLAW_PROVIDER=install-vllm nemoclaw-runtime options --select --json
    """
    from nemoclaw_runtime import api
    from nemoclaw_runtime.kernel.settings import Settings

    output = Output(json_mode)
    settings = Settings.from_env(os.environ)
    menu = api.local_options(settings)
    if select:
        choice = api.select_option(menu, settings)
        output.result(choice.to_dict(), lambda: _selection_lines(choice.to_dict()))
        return
    data = menu.to_dict()
    output.result(data, lambda: _menu_lines(data))


def _menu_lines(menu: dict[str, Any]) -> Iterator[str]:
    host = menu["host"]
    yield f"Host: GPU profile {host['gpu_profile']}" + (" (NEMOCLAW_EXPERIMENTAL=1)" if host["experimental"] else "")
    for line in host["gpu_summary"]:
        yield f"  {line}"
    if not menu["engine"]["reachable"]:
        yield f"  Docker engine: not reachable ({menu['engine']['error']})"
    yield ""
    if menu["options"]:
        yield "Local inference options:"
        for option in menu["options"]:
            yield from _option_lines(option)
    else:
        yield "No local inference option is available on this host."
    if menu["absent"]:
        yield ""
        yield "Not offered here:"
        for absent in menu["absent"]:
            fix = f" (fix: {absent['remedy']})" if absent["remedy"] else ""
            yield f"  - {absent['key']}: {absent['message']}{fix}"
    for note in menu["notes"]:
        yield f"note: {note}"


def _option_lines(option: dict[str, Any]) -> Iterator[str]:
    marker = "*" if option["suggested"] else " "
    yield f"{marker} {option['key']:<13} {option['label']}"
    if option["models"]:
        shown = ", ".join(_model_text(m) for m in option["models"])
        yield f"      models: {shown}"
    if option["needs_token"]:
        state = "set" if option["token_set"] else "not set"
        yield f"      token: {' or '.join(option['token_variables'])} ({state})"
    if option["image"]:
        present = {True: "present", False: "not present: will be pulled", None: "presence unknown"}
        yield f"      image: {option['image']} ({present[option['image_present']]})"
    if option["context_window"]:
        yield f"      context window: {option['context_window']} tokens"
    for note in option["notes"]:
        yield f"      note: {note}"


def _model_text(model: dict[str, Any]) -> str:
    judged = model.get("fit_reason") is not None and model.get("fits") is not None  # vLLM: the fit engine's verdict
    marks = [m for m, on in (("default", model["default"]), ("gated", model["gated"]),
                             ("installed", model["installed"]), ("fits this host", judged and model["fits"]),
                             ("does not fit this host", judged and not model["fits"])) if on]
    return model["id"] + (f" ({', '.join(marks)})" if marks else "")


def _selection_lines(choice: dict[str, Any]) -> Iterator[str]:
    option = choice["option"]
    how = {"NEMOCLAW_PROVIDER": "from NEMOCLAW_PROVIDER", "key": "as asked", "suggested": "suggested",
           "only": "the only option"}.get(choice["source"], choice["source"])
    yield f"Selected: {choice['key']} — {option['label']} ({how})"
    if choice["model"]:
        yield f"  model: {choice['model']} ({choice['model_source']})"
    if choice["base_url"]:
        yield f"  base URL: {choice['base_url']}"
    for note in choice["notes"]:
        yield f"  note: {note}"


__all__ = ["options"]
