"""``nemoclaw-runtime gpus``: the GPUs NVML sees, the host profile, and a snapshot to replay elsewhere."""

from __future__ import annotations

import os

import click

from nemoclaw_runtime.cli._output import Output, json_option


@click.command("gpus")
@json_option
def gpus(json_mode: bool) -> None:
    """Show the NVIDIA GPUs, the host profile and the memory budget for models.

    \b
    --json also prints `snapshot`: save it and set NEMOCLAW_GPU_SNAPSHOT=FILE to replay this machine's
    GPUs anywhere (no GPU needed).
    """
    from nemoclaw_runtime.api import detect_gpus  # NVML and psutil load only when the command runs
    from nemoclaw_runtime.kernel.settings import Settings

    settings = Settings.from_env(os.environ)
    output = Output(json_mode)
    for warning in settings.warnings:
        output.warn(warning)
    inventory = detect_gpus(settings)
    output.result(inventory.to_dict(), inventory.human_lines)


__all__ = ["gpus"]
