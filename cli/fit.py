"""``nemoclaw-runtime fit vllm --model M``: will a model fit this host, and where — before any download.

One library call (``nemoclaw_runtime.api.fit``) rendered through ``Output``: a table a person reads in five
seconds, or ``FitResult.to_dict()`` with ``--json``. Exit 0 when it fits (or, with ``--max-model-len auto``, fits
at a shorter context) and when the facts are unknown (with a warning: ``up`` would go on too); exit 3 when it
cannot fit as asked (what ``up`` would refuse).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.cli._params import number_between
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.units import format_bytes

#: The exit code when the model cannot fit as asked (the refusal ``up`` would raise: PreflightRefused).
EXIT_DOES_NOT_FIT = 3
_FITS_DECISIONS = ("fits", "tensor-parallel")


@click.command("fit")
@click.argument("runtime", metavar="vllm")
@click.option("--model", metavar="SLUG|HF_ID",
              help="A registry slug, or any Hugging Face id: ORG/NAME or hf:ORG/NAME (default: NEMOCLAW_VLLM_MODEL, "
                   "else the host's default).")
@click.option("--gpus", default="all", show_default=True, help="all, or GPU indices such as 0,1.")
@click.option("--max-model-len", "max_model_len", metavar="N|auto",
              help="The context to judge (default the registry's, else the model's maximum); auto: the largest "
                   "that fits.")
@click.option("--gpu-memory-utilization", "gpu_memory_utilization",
              type=number_between(0.0, 1.0, above_low=True, remedy="pass a share such as 0.9"),
              help="vLLM's share of each GPU (default the registry's flag, else 0.9).")
@click.option("--kv-cache-dtype", "kv_cache_dtype", metavar="D", help="auto (the model's dtype), fp8, fp8_e5m2, ….")
@json_option
def fit(runtime: str, model: str | None, gpus: str, max_model_len: str | None,
        gpu_memory_utilization: float | None, kv_cache_dtype: str | None, json_mode: bool) -> int:
    """Tell whether a model fits this host with vLLM, and where — before any download.

    \b
    What is measured: the model's config.json and the safetensors headers of its
    checkpoint (two small range requests per file, never a weight byte; cached in
    the HF cache for offline runs): the bytes stored per dtype (quantised and MoE
    checkpoints counted as stored, all experts resident) and the KV cache per
    token per layer type (full attention, MLA, sliding window, SSM state); and,
    per GPU, NVML's total and free memory (host memory on unified-memory machines)
    and the compute capability.
    \b
    What is assumed: vLLM's budget per GPU is total x --gpu-memory-utilization
    and needs that much free; weights split evenly over tensor-parallel ranks;
    the non-KV overhead (activations of the profiling run, CUDA graphs) is an
    estimate on the large side; one request of the full context must fit.
    \b
    Decision, in order: refused (no GPU, or a GPU below the model's compute
    capability) · fits as asked · reduce-context (the largest --max-model-len
    that fits) · tensor-parallel (the fewest identical GPUs that fit) ·
    does-not-fit (the shortfall and what would fit). Facts unknown (offline, hub
    unreachable) → unknown.
    \b
    Exit codes: 0 fits (or unknown, with a warning) · 2 bad input · 3 does not fit
    as asked (what `up` would refuse).
    \b
    Examples:
      nemoclaw-runtime fit vllm --model qwen3.6-27b
      nemoclaw-runtime fit vllm --model hf:Qwen/Qwen3-8B --max-model-len auto --json
      nemoclaw-runtime fit vllm --model deepseek-r1-distill-70b --gpus 0,1
    """
    output = Output(json_mode)
    if runtime != "vllm":
        raise InvalidInput(f"fit judges vLLM only, not {runtime!r}",
                           remedy="run `nemoclaw-runtime fit vllm --model M`; NIM and Ollama are listed with their "
                                  "fit by `nemoclaw-runtime models`")
    settings = output.settings()
    result = api.fit(model, gpus=gpus, max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                     kv_cache_dtype=kv_cache_dtype, settings=settings)
    document = result.to_dict()
    auto = bool(document["auto_context"])
    if document["decision"] == "unknown":
        output.warn(f"Cannot tell whether {document['model']} fits: {'; '.join(document['reasons'][1:]) or 'facts'}")
    output.result(document, lambda: table_lines(document, auto=auto))
    return 0 if fits_as_asked(document, auto=auto) or document["decision"] == "unknown" else EXIT_DOES_NOT_FIT


def fits_as_asked(fit: dict[str, Any], *, auto: bool = False) -> bool:
    return bool(fit["fits"]) or (auto and fit["decision"] == "reduce-context" and fit["max_model_len_fit"] > 0)


# --- human output -------------------------------------------------------------------------------------------------


def table_lines(fit: dict[str, Any], *, auto: bool = False) -> Iterator[str]:
    """The verdict first, then one table (what is needed against what there is), then why."""
    yield _verdict(fit, auto)
    rows = [("model", f"{fit['model']}" + (f" @ {fit['revision'][:12]}" if fit["revision"] else "")),
            ("weights", _bytes(fit["weights_bytes"]) + (f" ({fit['weights_source']})" if fit["weights_source"]
                                                        else "")),
            ("KV cache", f"{_bytes(fit['kv_bytes_per_token'])} per token" if fit["kv_bytes_per_token"] else "-"),
            ("overhead", _split(fit["overhead_bytes"], fit["tensor_parallel_size"])),
            ("needed", _split(fit["needed_bytes"], fit["tensor_parallel_size"])),
            ("budget", f"{_split(fit['budget_bytes'], len(fit['gpus']))} (--gpu-memory-utilization "
                       f"{fit['gpu_memory_utilization']:g})" if fit["budget_bytes"] else "-"),
            ("context", f"asked {fit['max_model_len'] or '-'}, largest that fits {fit['max_model_len_fit'] or '-'}"),
            ("GPUs", ",".join(map(str, fit["gpus"])) or "-"),
            ("tensor parallel", str(fit["tensor_parallel_size"] or "-")),
            ("KV dtype", fit["kv_cache_dtype"])]
    if fit["min_compute_capability"]:
        rows.append(("compute capability", f"{fit['min_compute_capability']} or newer"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        yield f"  {name.ljust(width)}  {value}"
    yield from _gpu_lines(fit["gpu_budgets"])
    for reason in fit["reasons"][1:]:
        yield f"  · {reason}"
    for assumption in fit["assumptions"]:
        yield f"  assumed: {assumption}"
    yield from _beyond_lines(fit.get("beyond"))


def _beyond_lines(beyond: dict[str, Any] | None) -> Iterator[str]:
    """Where a model this host cannot hold would run: N hosts like it, and the commands."""
    if not beyond:
        return
    if beyond["hosts"] is None:
        yield "  beyond this host: no group of up to 8 hosts like this one holds it either"
        return
    yield f"  beyond this host: it fits {beyond['hosts']} hosts like this one (README: Beyond one machine)"
    yield f"    over Docker engines:  {beyond['up']}"
    yield f"    on Kubernetes:        {beyond['kubernetes']}"


def _gpu_lines(budgets: list[dict[str, Any]]) -> Iterator[str]:
    """One line per kind of GPU (same name, size, capability and state), the least free memory shown."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for gpu in budgets:
        key = (gpu["name"], gpu["total_bytes"], gpu["compute_capability"], gpu["usable"], gpu["why_not"])
        groups.setdefault(key, []).append(gpu)
    for (name, total, cc, usable, why), members in groups.items():
        indices = ",".join(str(g["index"]) for g in members)
        frees = [g["free_bytes"] for g in members if g["free_bytes"] is not None]
        free = f"{_bytes(min(frees))} free" if frees else "free unknown"
        state = "usable" if usable else f"left out: {why}"
        yield (f"  GPU{'s' if len(members) > 1 else ''} {indices}: {name}, {_bytes(total)}, {free}, "
               f"cc {cc or '?'} — {state}")


def _verdict(fit: dict[str, Any], auto: bool) -> str:
    first = fit["reasons"][0] if fit["reasons"] else fit["decision"]
    if fit["decision"] in _FITS_DECISIONS and fit["fits"]:
        return f"✓ {first}"
    if auto and fit["decision"] == "reduce-context" and fit["max_model_len_fit"]:
        return f"✓ with --max-model-len auto: serves at {fit['max_model_len_fit']} tokens — {first}"
    if fit["decision"] == "unknown":
        return f"? {first}"
    return f"✗ {first}"


def _split(total: int | None, parts: int) -> str:
    """``37.4 GiB per GPU × 4 = 150 GiB`` (or just the bytes on one GPU); ``-`` when unknown."""
    if not total:
        return "-"
    if parts > 1:
        return f"{_bytes(total // parts)} per GPU × {parts} = {_bytes(total)}"
    return _bytes(total)


def _bytes(value: int | None) -> str:
    return format_bytes(value) if value is not None else "?"


__all__ = ["EXIT_DOES_NOT_FIT", "fit", "fits_as_asked", "table_lines"]
