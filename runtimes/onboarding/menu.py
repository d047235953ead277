"""The values of the local-options menu: option keys, absence reasons, and the entries a wizard shows.

Everything here is a frozen value with ``to_dict()`` (the ``options --json`` shape); ``onboarding/options.py``
builds them by probing the host, ``onboarding/selection.py`` chooses among them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.names import (
    PROFILE_DGX_SPARK,
    PROFILE_DGX_STATION,
    PROVIDER_INSTALL_VLLM,
    PROVIDER_NIM,
    PROVIDER_OLLAMA,
    PROVIDER_VLLM,
    PROVIDERS,
)

# The option keys are the NEMOCLAW_PROVIDER values, declared once in kernel/names.py.
KEY_VLLM = PROVIDER_VLLM
KEY_INSTALL_VLLM = PROVIDER_INSTALL_VLLM
KEY_NIM = PROVIDER_NIM
KEY_OLLAMA = PROVIDER_OLLAMA
KEYS: tuple[str, ...] = PROVIDERS

# Why an option is absent (stable codes for ``--json``; the sentence says the same for people).
REASON_NOT_RUNNING = "not-running"
REASON_PORT_HELD = "port-held"
REASON_VLLM_RUNNING = "vllm-running"
REASON_NO_GPU = "no-gpu"
REASON_NO_USABLE_GPU = "no-usable-gpu"
REASON_NOT_EXPERIMENTAL = "not-experimental"
REASON_VRAM_TOO_SMALL = "vram-too-small"
REASON_OLLAMA_NOT_INSTALLED = "ollama-not-installed"
REASON_OLLAMA_TOO_OLD = "ollama-too-old"

#: Managed vLLM is offered without NEMOCLAW_EXPERIMENTAL on these GPU profiles (NemoClaw PR #5345).
DEFAULT_ON_PROFILES = frozenset({PROFILE_DGX_SPARK, PROFILE_DGX_STATION})
NO_VLLM_PROFILE = "No vLLM install profile available for this host."


# --- values ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """One model an option can serve: a vLLM slug, a NIM catalog name, an Ollama tag or a served id."""

    id: str
    label: str
    default: bool = False
    gated: bool = False
    token_variables: tuple[str, ...] = ()
    context_window: int | None = None
    installed: bool | None = None  # Ollama: already pulled; None where it does not apply
    fits: bool | None = None  # fits the host's memory; None when unknown or not applicable
    detail: str | None = None  # the HF id, NIM image or memory need
    fit_reason: str | None = None  # vLLM: the fit engine's one line (why it fits, does not, or is unknown)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "token_variables": list(self.token_variables)}


@dataclass(frozen=True)
class LocalOption:
    """One menu entry. ``key`` is the stable ``NEMOCLAW_PROVIDER`` value; ``label`` is what NemoClaw shows."""

    key: str
    runtime: str  # vllm | nim | ollama
    label: str
    suggested: bool = False
    running: bool = False  # a server already answers: nothing to install or start
    experimental: bool = False
    models: tuple[ModelChoice, ...] = ()
    default_model: str | None = None
    needs_token: bool = False  # the default model needs a token (which variables: token_variables)
    token_variables: tuple[str, ...] = ()
    token_set: bool = False  # one of token_variables holds a value (never the value itself)
    base_url: str | None = None  # OpenAI-compatible base URL, where known before anything starts
    port: int | None = None
    context_window: int | None = None
    image: str | None = None
    image_present: bool | None = None  # None: the engine is not reachable, so it is unknown
    profile: str | None = None  # the vLLM host profile's name ("DGX Spark", ...)
    notes: tuple[str, ...] = ()

    def model(self, model_id: str) -> ModelChoice | None:
        wanted = model_id.strip().lower()
        return next((m for m in self.models if m.id.lower() == wanted), None)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(models=[m.to_dict() for m in self.models], token_variables=list(self.token_variables),
                    notes=list(self.notes))
        return data


@dataclass(frozen=True)
class AbsentOption:
    """An entry this host does not offer, and why (``reason`` is one of the ``REASON_*`` codes)."""

    key: str
    reason: str
    message: str
    remedy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LocalOptions:
    """The menu for this host, plus what it was computed from."""

    options: tuple[LocalOption, ...]
    absent: tuple[AbsentOption, ...]
    gpu_profile: str
    gpu_summary: tuple[str, ...]
    memory_budget_mib: int | None
    experimental: bool
    provider: str | None
    engine_reachable: bool
    engine_error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def suggested(self) -> LocalOption | None:
        return next((o for o in self.options if o.suggested), None)

    def get(self, key: str) -> LocalOption | None:
        return next((o for o in self.options if o.key == key), None)

    def why_absent(self, key: str) -> AbsentOption | None:
        return next((a for a in self.absent if a.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        suggested = self.suggested
        return {
            "host": {"gpu_profile": self.gpu_profile, "gpu_summary": list(self.gpu_summary),
                     "memory_budget_mib": self.memory_budget_mib, "experimental": self.experimental,
                     "provider": self.provider},
            "engine": {"reachable": self.engine_reachable, "error": self.engine_error},
            "suggested": suggested.key if suggested else None,
            "options": [o.to_dict() for o in self.options],
            "absent": [a.to_dict() for a in self.absent],
            "notes": list(self.notes),
        }


__all__ = [
    "AbsentOption", "DEFAULT_ON_PROFILES", "KEYS", "KEY_INSTALL_VLLM", "KEY_NIM", "KEY_OLLAMA", "KEY_VLLM",
    "LocalOption", "LocalOptions", "ModelChoice", "NO_VLLM_PROFILE", "REASON_NOT_EXPERIMENTAL", "REASON_NOT_RUNNING",
    "REASON_NO_GPU", "REASON_NO_USABLE_GPU", "REASON_OLLAMA_NOT_INSTALLED", "REASON_OLLAMA_TOO_OLD", "REASON_PORT_HELD",
    "REASON_VLLM_RUNNING", "REASON_VRAM_TOO_SMALL",
]
