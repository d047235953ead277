"""The model registry: managed-vLLM entries and host profiles, the NIM catalog and Ollama starter models.

The values live in ``registry/data/*.toml`` and are validated when loaded; :func:`load_registry` caches
the result.

    >>> registry = load_registry()
    >>> profile = registry.vllm_profile_for("dgx-spark")
    >>> model = registry.resolve_vllm_model(settings.vllm_model, profile=profile)
    >>> argv = model.serve_argv(parse_extra_args(settings.vllm_extra_args_json))
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import MappingProxyType

from nemoclaw_runtime.registry.catalog import Registry
from nemoclaw_runtime.registry.entries import (
    HF_TOKEN_VARIABLES,
    NGC_KEY_VARIABLES,
    RUNTIMES,
    SAFE_MODEL_ID_RE,
    VLLM_CONTAINER_PORT,
    NimModel,
    OllamaStarter,
    VllmModel,
    VllmProfile,
    is_safe_model_id,
    served_name_from_args,
)
from nemoclaw_runtime.registry.extra_args import EXTRA_ARGS_VARIABLE, parse_extra_args
from nemoclaw_runtime.registry.loader import (
    DATA_DIR,
    NIM_FILE,
    OLLAMA_FILE,
    VLLM_FILE,
    load_nim,
    load_ollama,
    load_vllm,
)

__all__ = [
    "DATA_DIR",
    "EXTRA_ARGS_VARIABLE",
    "HF_TOKEN_VARIABLES",
    "NGC_KEY_VARIABLES",
    "NimModel",
    "OllamaStarter",
    "RUNTIMES",
    "Registry",
    "SAFE_MODEL_ID_RE",
    "VLLM_CONTAINER_PORT",
    "VllmModel",
    "VllmProfile",
    "clear_registry_cache",
    "is_safe_model_id",
    "load_registry",
    "parse_extra_args",
    "served_name_from_args",
]


def load_registry(path: str | Path | None = None) -> Registry:
    """Load and validate the registry from ``path`` (a folder holding vllm.toml, nim.toml and ollama.toml).

    The packaged data is used when ``path`` is ``None``. Results are cached per folder; a bad value raises
    :class:`~nemoclaw_runtime.kernel.errors.NemoclawError` naming the file, the entry and the field.
    """
    folder = Path(path).resolve() if path is not None else DATA_DIR
    return _load_cached(folder)


@functools.lru_cache(maxsize=8)
def _load_cached(folder: Path) -> Registry:
    vllm_models, vllm_profiles = load_vllm(folder / VLLM_FILE)
    starters, fallback = load_ollama(folder / OLLAMA_FILE)
    return Registry(
        vllm_models=vllm_models,
        vllm_profiles=MappingProxyType(vllm_profiles),
        nim_models=load_nim(folder / NIM_FILE),
        ollama_starters=starters,
        ollama_fallback_tag=fallback,
    )


def clear_registry_cache() -> None:
    """Forget loaded registries (tests that edit data files in place)."""
    _load_cached.cache_clear()
