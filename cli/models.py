"""``nemoclaw-runtime models``: the models each runtime can serve on this host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.cli._params import runtime_option
from nemoclaw_runtime.kernel.units import format_bytes, format_mib


@click.command()
@runtime_option("List one runtime's models only (default: all three).")
@click.option("--all", "include_all", is_flag=True, help="List every entry, not only those for this host.")
@json_option
def models(runtime: str | None, include_all: bool, json_mode: bool) -> None:
    """List the models vLLM, NIM and Ollama can serve on this host.

    The host's default is marked with *, and gated entries name the token they need. Each vLLM entry says whether
    it fits this host (the fit engine: config and safetensors headers from the HF cache, else the hub, within a
    few seconds; unknown offline) — `nemoclaw-runtime fit vllm --model SLUG` shows the numbers.
    """
    from nemoclaw_runtime.kernel.settings import Settings

    listing = api.models(runtime, include_all=include_all, settings=Settings.from_env(os.environ))
    Output(json_mode).result(listing, lambda: render(listing))


# --- human output -------------------------------------------------------------------------------------------


def render(listing: dict[str, Any]) -> Iterator[str]:
    host = listing["host"]
    budget = host["memory_budget_mib"]
    memory = f"{format_mib(budget)} GPU memory" if budget else "GPU memory unknown"
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
                _fit_cell(entry),
                "; ".join(notes),
            ]
        )
    yield from _table(rows)
    if group["note"]:
        yield f"  {group['note']}"
    for entry in group["entries"]:
        if entry.get("fit_reason") and entry.get("fits") is not True:
            yield f"  {entry['slug']}: {entry['fit_reason']}"


def _fit_cell(entry: dict[str, Any]) -> str:
    """``fits`` / ``fits (tp 4)`` / ``fits at 35072`` / ``too big`` / ``fit unknown`` (the reasons follow the table)."""
    if "fits" not in entry:
        return ""
    fit = entry.get("fit") or {}
    if entry["fits"] is True:
        tp = fit.get("tensor_parallel_size") or 1
        return "fits" + (f" (tp {tp})" if tp > 1 else "")
    if entry["fits"] is None:
        return "fit unknown"
    if fit.get("decision") == "reduce-context" and fit.get("max_model_len_fit"):
        return f"fits at {fit['max_model_len_fit']}"
    return "refused" if fit.get("decision") == "refused" else "too big"


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
                f"min {format_mib(entry['min_vram_mib'])}",
                fits,
                "; ".join(notes),
            ]
        )
    yield from _table(rows)
    if group["note"]:
        yield f"  {group['note']}"


def _render_ollama(group: dict[str, Any]) -> Iterator[str]:
    yield ""
    memory = f"{format_mib(group['memory_mib'])} available" if group["memory_mib"] else "memory unknown"
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
                f"needs {format_mib(entry['required_memory_mib'])}",
                f"{format_bytes(entry['download_bytes'])} download",
                "; ".join(notes),
            ]
        )
    yield from _table(rows)
    if group["note"]:
        yield f"  {group['note']}"


__all__ = ["models"]
