"""What ``nemoclaw-runtime models`` shows: the registry's entries for one host, as JSON-ready data.

Kept in the library (not the CLI) so a wizard gets the same answer the command prints. It takes the facts it
needs about the host (GPU profile, memory budget, compute-constrained) rather than the GPU inventory type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.registry.catalog import NO_GPU_PROFILE, Registry
from nemoclaw_runtime.registry.entries import RUNTIMES, NimModel, OllamaStarter, VllmModel, VllmProfile

__all__ = ["HostView", "model_listing"]


@dataclass(frozen=True)
class HostView:
    """The facts about the host a listing depends on."""

    gpu_profile: str
    memory_budget_mib: int | None
    compute_constrained: bool = False
    reason: str | None = None  # why the profile is what it is (e.g. why there is no GPU), when known
    available_memory_mib: int | None = None  # free GPU memory (host memory on unified-memory machines)

    @property
    def nvidia_known(self) -> bool:
        return self.gpu_profile != NO_GPU_PROFILE

    @property
    def ollama_memory_mib(self) -> int | None:
        """NemoClaw's effective memory for Ollama starters: what is available when known, else the total."""
        if self.available_memory_mib is not None and self.available_memory_mib > 0:
            return self.available_memory_mib
        return self.memory_budget_mib


def model_listing(
    registry: Registry, host: HostView, *, runtime: str | None = None, include_all: bool = False
) -> dict[str, Any]:
    """The listing for ``runtime`` (every runtime when ``None``): entries for this host, or all of them.

    Returns ``{"host": {...}, "all": bool, "<runtime>": {"entries": [...], "note": str | None, ...}}``.
    """
    wanted = RUNTIMES if runtime is None else (runtime,)
    builders = {"vllm": _vllm_group, "nim": _nim_group, "ollama": _ollama_group}
    result: dict[str, Any] = {
        "host": {
            "gpu_profile": host.gpu_profile,
            "memory_budget_mib": host.memory_budget_mib,
            "available_memory_mib": host.available_memory_mib,
            "compute_constrained": host.compute_constrained,
            "reason": host.reason,
        },
        "all": include_all,
    }
    for name in wanted:
        result[name] = builders[name](registry, host, include_all)
    return result


# --- vLLM ---------------------------------------------------------------------------------------------------


def _vllm_group(registry: Registry, host: HostView, include_all: bool) -> dict[str, Any]:
    profile = registry.vllm_profile_for(host.gpu_profile)
    models = registry.vllm_models if include_all else registry.vllm_picker_order(profile)
    note = None
    if profile is None:
        note = (
            f"No vLLM host profile for GPU profile '{host.gpu_profile}': managed vLLM needs a DGX Spark, "
            f"DGX Station or a Linux host with an NVIDIA GPU."
            + ("" if include_all else " Use --all to list every model anyway.")
        )
    return {
        "profile": profile.to_dict() if profile else None,
        "entries": [_vllm_entry(model, profile) for model in models],
        "note": note,
    }


def _vllm_entry(model: VllmModel, profile: VllmProfile | None) -> dict[str, Any]:
    entry = model.to_dict()
    entry["default"] = profile is not None and model.slug == profile.default_slug
    entry["for_this_host"] = profile is not None and model.serves_on(profile.gpu_profile)
    entry["serve_argv"] = list(model.serve_argv())
    return entry


# --- NIM ----------------------------------------------------------------------------------------------------


def _nim_group(registry: Registry, host: HostView, include_all: bool) -> dict[str, Any]:
    fitting = registry.nim_models_fitting(host.memory_budget_mib)
    default = fitting[0] if fitting else None
    models = registry.nim_models if include_all else fitting
    note = None
    if not fitting:
        note = (
            "No NIM models fit your GPU VRAM."
            if host.memory_budget_mib
            else "The GPU memory of this host is unknown, so no NIM model can be offered."
        )
        if not include_all:
            note += " Use --all to list the whole catalog."
    return {"entries": [_nim_entry(model, host, default) for model in models], "note": note}


def _nim_entry(model: NimModel, host: HostView, default: NimModel | None) -> dict[str, Any]:
    entry = model.to_dict()
    entry.update(
        {
            "slug": model.name,
            "hf_id": None,
            "gated": True,  # every NIM image and container needs an NGC key
            "max_model_len": None,
            "platforms": None,
            "fits": model.fits(host.memory_budget_mib),
            "default": model is default,
        }
    )
    return entry


# --- Ollama -------------------------------------------------------------------------------------------------


def _ollama_group(registry: Registry, host: HostView, include_all: bool) -> dict[str, Any]:
    rules = {"nvidia_known": host.nvidia_known, "compute_constrained": host.compute_constrained}
    memory = host.ollama_memory_mib
    offered = registry.fittable_ollama_starters(memory, **rules)
    default = registry.default_ollama_starter(memory, **rules)
    models = sorted(registry.ollama_starters, key=lambda s: s.required_memory_mib) if include_all else offered
    note = None
    if not offered:
        note = "No Ollama starter model fits this host's memory."
    elif not host.nvidia_known or not memory:
        note = f"Memory unknown or no NVIDIA GPU: only {registry.ollama_fallback_tag} is offered."
    entries = [_ollama_entry(s, memory, s in offered, s is default) for s in models]
    return {"entries": entries, "memory_mib": memory, "note": note}


def _ollama_entry(starter: OllamaStarter, memory: int | None, offered: bool, default: bool) -> dict[str, Any]:
    entry = starter.to_dict()
    known = memory is not None and memory > 0
    entry.update(
        {
            "hf_id": None,
            "image": None,
            "gated": False,
            "max_model_len": None,
            "platforms": None,
            "fits": starter.fits(memory) if known else None,
            "offered": offered,
            "default": default,
        }
    )
    return entry
