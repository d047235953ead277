"""``nemoclaw-runtime lock RUNTIME``: what ``up`` would serve, resolved without serving (``api.lock``), printed or
written with ``-o``; ``up --locked --lock PATH`` then serves exactly that."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.cli._params import runtime_argument


@click.command()
@runtime_argument()
@click.option("--model", help="The model `up` would serve (default: the host's default).")
@click.option("--image", help="Lock this image instead of the registry's (also NEMOCLAW_<RUNTIME>_IMAGE).")
@click.option("-o", "--output", "output_path", metavar="PATH",
              help="Write the lock file here (atomically, mode 0644) instead of printing it.")
@json_option
def lock(runtime: str, model: str | None, image: str | None, output_path: str | None, json_mode: bool) -> None:
    """Resolve what `up RUNTIME` would serve, without serving or pulling: the image's platform digest (through the
    registry's manifest API), the weights revision (the registry's pin, else the hub's commit), the argv and the
    registry entry version.

    \b
    Examples:
      nemoclaw-runtime lock vllm --model qwen3.6-27b -o qwen.lock.json
      nemoclaw-runtime up vllm --model qwen3.6-27b --lock qwen.lock.json --locked
      nemoclaw-runtime lock ollama --json
    """
    from nemoclaw_runtime.kernel.settings import Settings

    output = Output(json_mode)
    result = api.lock(runtime, model=model, image=image, settings=Settings.from_env(os.environ),
                      events=output.events())
    data = result.to_dict()
    if output_path is None:
        output.result(data, lambda: [json.dumps(data, indent=2)])
        return
    written = api.write_lock(result, output_path)
    output.result({**data, "path": str(written)}, lambda: _lines(data, str(written)))


def _lines(data: dict[str, Any], path: str) -> Iterator[str]:
    yield f"✓ wrote the lock {path}"
    yield f"  image:    {data['image']}@{data['image_digest'] or '(no digest: the registry has no index)'}"
    if data["weights_revision"]:
        yield f"  weights:  {data['model']} at {data['weights_revision']}"
    yield f"  registry: {data['model']} entry {data['registry_entry_version']}"
    yield f"  serve it: nemoclaw-runtime up {data['runtime']} --lock {path} --locked"


__all__ = ["lock"]
