"""``nemoclaw-runtime models``: the models each runtime can serve on this host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime.cli._output import Output, json_option


@click.command()
@click.option(
    "--runtime",
    type=click.Choice(["vllm", "nim", "ollama"]),
    default=None,
    help="List one runtime's models only (default: all three).",
)
@click.option("--all", "include_all", is_flag=True, help="List every entry, not only those for this host.")
@json_option
def models(runtime: str | None, include_all: bool, json_mode: bool) -> None:
    """List the models vLLM, NIM and Ollama can serve on this host.

    The host's default is marked with *, and gated entries name the token they need.
    """
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.registry import load_registry
    from nemoclaw_runtime.registry.listing import model_listing

    host = detect_host(Settings.from_env(os.environ))
    listing = model_listing(load_registry(), host, runtime=runtime, include_all=include_all)
    Output(json_mode).result(listing, lambda: render(listing))


def detect_host(settings: Any) -> Any:
    """The host facts from the GPU module (NVML, or the snapshot named by ``NEMOCLAW_GPU_SNAPSHOT``)."""
    from nemoclaw_runtime.gpu import detect_gpus
    from nemoclaw_runtime.registry.listing import HostView

    inventory = detect_gpus(settings)
    return HostView(
        gpu_profile=inventory.profile,
        memory_budget_mib=inventory.memory_budget_mib,
        compute_constrained=bool(inventory.compute_constrained),
        reason=inventory.reason,
        available_memory_mib=inventory.available_memory_mib,
    )


# --- human output -------------------------------------------------------------------------------------------


def render(listing: dict[str, Any]) -> Iterator[str]:
    host = listing["host"]
    budget = host["memory_budget_mib"]
    memory = f"{budget} MiB GPU memory" if budget else "GPU memory unknown"
    constrained = ", compute-constrained" if host["compute_constrained"] else ""
    yield f"Host: GPU profile {host['gpu_profile']}, {memory}{constrained}"
    if host["reason"]:
        yield f"  {host['reason']}"
    if "vllm" in listing:
        yield from _render_vllm(listing["vllm"])
    if "nim" in listing:
        yield from _render_nim(listing["nim"])
    if "ollama" in listing:
        yield from _render_ollama(listing["ollama"])


def _marker(entry: dict[str, Any]) -> str:
    return "*" if entry["default"] else " "


def _table(rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))] if rows else []
    for row in rows:
        yield "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()


def _render_vllm(group: dict[str, Any]) -> Iterator[str]:
    profile = group["profile"]
    title = f"{profile['name']}, image {profile['image']}" if profile else "no host profile"
    yield ""
    yield f"vLLM ({title}):"
    rows = []
    for entry in group["entries"]:
        notes = []
        if entry["default"]:
            notes.append("default")
        if entry["gated"]:
            notes.append(
                f"gated: needs {' or '.join(entry['token_variables'])}; licence {entry['licence_url']}"
            )
        if not entry["for_this_host"] and profile is not None:
            notes.append(f"not for this host (platforms: {', '.join(entry['platforms'])})")
        rows.append(
            [
                _marker(entry),
                entry["slug"],
                entry["hf_id"],
                f"{entry['max_model_len']} tokens",
                "; ".join(notes),
            ]
        )
    yield from _table(rows)
    if group["note"]:
        yield f"  {group['note']}"


def _render_nim(group: dict[str, Any]) -> Iterator[str]:
    yield ""
    yield "NIM (needs an NGC key: NGC_API_KEY, NVIDIA_INFERENCE_API_KEY or NVIDIA_API_KEY):"
    rows = []
    for entry in group["entries"]:
        fits = {True: "fits", False: "too big", None: "fit unknown"}[entry["fits"]]
        notes = ["default"] if entry["default"] else []
        rows.append(
            [
                _marker(entry),
                entry["name"],
                entry["image"],
                f"min {entry['min_vram_mib']} MiB",
                fits,
                "; ".join(notes),
            ]
        )
    yield from _table(rows)
    if group["note"]:
        yield f"  {group['note']}"


def _render_ollama(group: dict[str, Any]) -> Iterator[str]:
    yield ""
    memory = f"{group['memory_mib']} MiB available" if group["memory_mib"] else "memory unknown"
    yield f"Ollama starter models ({memory}):"
    rows = []
    for entry in group["entries"]:
        notes = ["default"] if entry["default"] else []
        if entry["compute_intensive"]:
            notes.append("compute-intensive")
        if not entry["offered"]:
            notes.append("not offered on this host")
        rows.append(
            [
                _marker(entry),
                entry["tag"],
                f"needs {entry['required_memory_mib']} MiB",
                f"{entry['download_bytes'] / 1e9:.1f} GB download",
                "; ".join(notes),
            ]
        )
    yield from _table(rows)
    if group["note"]:
        yield f"  {group['note']}"
