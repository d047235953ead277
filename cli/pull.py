"""``nemoclaw-runtime pull RUNTIME``: pre-pull the image ``up`` would run, pinned to this platform's digest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.cli._params import runtime_argument
from nemoclaw_runtime.cli._prompt import masked_prompt_if_interactive


@click.command()
@runtime_argument()
@click.option("--model", help="The model `up` would serve (NIM: the catalog model decides the image).")
@click.option("--image", help="Pull this image instead of the registry's (also NEMOCLAW_<RUNTIME>_IMAGE).")
@click.option("--save-login", is_flag=True,
              help="Save a key that worked to the docker config (auths entry, mode 0600). Off by default.")
@json_option
def pull(runtime: str, model: str | None, image: str | None, save_login: bool, json_mode: bool) -> None:
    """Pull the image RUNTIME would run, pinned to this machine's platform digest, with progress.

    \b
    Keys for nvcr.io come from the docker config (docker login), else NGC_API_KEY,
    NVIDIA_INFERENCE_API_KEY or NVIDIA_API_KEY, else a masked prompt on a terminal.
    Examples:
      nemoclaw-runtime pull vllm
      nemoclaw-runtime pull ollama --image docker.io/ollama/ollama:0.12.6 --json
    """
    from nemoclaw_runtime.kernel.settings import Settings

    output = Output(json_mode)
    result = api.pull(runtime, settings=Settings.from_env(os.environ), model=model, image=image,
                      events=output.events(), prompt_secret=masked_prompt_if_interactive(), save_login=save_login)
    output.result(result.to_dict(), lambda: _lines(result.to_dict()))


def _lines(result: dict[str, Any]) -> Iterator[str]:
    what = "pulled" if result["pulled"] else "already present"
    yield f"{result['image']}: {what}"
    if result.get("digest"):
        yield f"  digest:   {result['digest']}" + (f" ({result['platform']})" if result.get("platform") else "")
    else:
        yield "  digest:   none (pulled by tag)"
    if result.get("image_id"):
        yield f"  image id: {result['image_id']}"


__all__ = ["pull"]
