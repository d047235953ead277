"""The registry's values: one frozen dataclass per kind of entry, and the served-model-id rules.

These are plain values built by :mod:`nemoclaw_runtime.registry.loader` from the data files; nothing here
reads a file or the environment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.errors import InvalidInput

# The runtimes and the token variables (preferred first) are declared once, in kernel/names.py; re-exported here.
from nemoclaw_runtime.kernel.names import HF_TOKEN_VARIABLES, NGC_KEY_VARIABLES
from nemoclaw_runtime.kernel.names import RUNTIMES as RUNTIMES

#: NemoClaw's ``isSafeModelId`` (src/lib/validation.ts).
SAFE_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9._:/-]+$")

#: The port vLLM listens on inside its container; the host port is mapped onto it.
VLLM_CONTAINER_PORT = 8000

SERVED_NAME_FLAG = "--served-model-name"

#: ``--model hf:ORG/NAME`` names any Hugging Face model, registry entry or not.
HF_PREFIX = "hf:"
#: A Hugging Face repository id as the hub accepts it: ``org/name``, letters, digits, ``.``, ``_``, ``-``.
HF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMPUTE_CAPABILITY_RE = re.compile(r"^([1-9][0-9]?)\.([0-9])$")


def parse_compute_capability(text: str) -> tuple[int, int] | None:
    """``"8.9"`` → ``(8, 9)``; ``None`` for anything that is not ``MAJOR.MINOR``."""
    found = _COMPUTE_CAPABILITY_RE.match(text.strip()) if isinstance(text, str) else None
    return (int(found.group(1)), int(found.group(2))) if found else None


def format_compute_capability(value: tuple[int, int] | None) -> str | None:
    return f"{value[0]}.{value[1]}" if value else None


def is_safe_model_id(text: object) -> bool:
    """True when ``text`` is a string of ``[A-Za-z0-9._:/-]`` only (NemoClaw's ``isSafeModelId``)."""
    return isinstance(text, str) and SAFE_MODEL_ID_RE.match(text) is not None


def served_name_from_args(tokens: Sequence[str]) -> str | None:
    """The value of ``--served-model-name`` in ``tokens``, or ``None`` when the flag is absent.

    Accepts ``--served-model-name X`` (all following tokens that do not start with ``-`` are its values, as
    vLLM parses them) and ``--served-model-name=X``. Anything but exactly one safe value — several values,
    the flag given twice, no value, an unsafe id — raises :class:`InvalidInput`.
    """
    values: list[str] = []
    occurrences = 0
    for position, token in enumerate(tokens):
        if token == SERVED_NAME_FLAG:
            occurrences += 1
            for following in tokens[position + 1 :]:
                if following.startswith("-"):
                    break
                values.append(following)
        elif token.startswith(SERVED_NAME_FLAG + "="):
            occurrences += 1
            values.append(token[len(SERVED_NAME_FLAG) + 1 :])
    if occurrences == 0:
        return None
    if occurrences > 1 or len(values) != 1 or not is_safe_model_id(values[0]):
        raise InvalidInput(
            f"{SERVED_NAME_FLAG} must specify exactly one safe model ID",
            remedy=f"give {SERVED_NAME_FLAG} once, with one id made of letters, digits and . _ : / -",
            details={"flag": SERVED_NAME_FLAG},
        )
    return values[0]


@dataclass(frozen=True)
class VllmModel:
    """One managed-vLLM entry. ``flags`` are argv tokens for ``vllm serve`` (never shell text).

    ``min_compute_capability`` is the oldest GPU generation the checkpoint runs on (FP8 8.9, NVFP4 12.1, ...), or
    ``None`` when any GPU vLLM supports will do. An entry made from a bare Hugging Face id (:meth:`from_hf_id`,
    ``--model hf:ORG/NAME``) has no ``max_model_len`` (the fit or the model's own maximum decides), no flags and
    ``adhoc`` set; whether it is gated is the hub's to say. ``hf_revision`` is the pinned Hugging Face commit the
    prefetch, the fit's facts and the container serve (``None``: whatever ``main`` points at when resolved).
    """

    slug: str
    hf_id: str
    max_model_len: int | None
    flags: tuple[str, ...]
    gated: bool
    platforms: tuple[str, ...]
    min_compute_capability: tuple[int, int] | None = None
    adhoc: bool = False
    hf_revision: str | None = None  # the pinned commit of the weights (NemoClaw pins some); None: the hub's main

    @classmethod
    def from_hf_id(cls, hf_id: str, platforms: tuple[str, ...]) -> VllmModel:
        """An entry for any Hugging Face model: ``hf:ORG/NAME`` as its slug, vLLM's defaults for everything."""
        return cls(slug=HF_PREFIX + hf_id, hf_id=hf_id, max_model_len=None, flags=(), gated=False,
                   platforms=platforms, adhoc=True)

    def serve_argv(self, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The container command: ``vllm serve <hf_id> --port 8000 --max-model-len N [--revision SHA] <flags>
        <extra>`` (no ``--max-model-len`` when the entry has none, no ``--revision`` when it pins none)."""
        context: tuple[str, ...] = ("--max-model-len", str(self.max_model_len)) if self.max_model_len else ()
        context += ("--revision", self.hf_revision) if self.hf_revision else ()
        return (
            "vllm",
            "serve",
            self.hf_id,
            "--port",
            str(VLLM_CONTAINER_PORT),
            *context,
            *self.flags,
            *extra,
        )

    def served_model_id(self, extra: tuple[str, ...] = ()) -> str:
        """The id ``/v1/models`` will report: the HF id unless ``--served-model-name`` names another."""
        return served_name_from_args((*self.flags, *extra)) or self.hf_id

    @property
    def licence_url(self) -> str:
        """Where to accept the model's licence (gated entries) or read its card."""
        return f"https://huggingface.co/{self.hf_id}"

    @property
    def token_variables(self) -> tuple[str, ...]:
        """The variables one of which must hold a Hugging Face token; empty for ungated entries."""
        return HF_TOKEN_VARIABLES if self.gated else ()

    def serves_on(self, gpu_profile: str) -> bool:
        return gpu_profile in self.platforms

    def matches(self, text: str) -> bool:
        """True when ``text`` (already trimmed) is this entry's slug or HF id, in any case."""
        wanted = text.lower()
        return wanted in (self.slug.lower(), self.hf_id.lower())

    def to_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "hf_id": self.hf_id,
            "max_model_len": self.max_model_len,
            "flags": list(self.flags),
            "gated": self.gated,
            "token_variables": list(self.token_variables),
            "licence_url": self.licence_url,
            "platforms": list(self.platforms),
            "served_model_id": self.served_model_id(),
            "min_compute_capability": format_compute_capability(self.min_compute_capability),
        }


@dataclass(frozen=True)
class VllmProfile:
    """How managed vLLM runs on one kind of host: image, default model, time budgets, container name."""

    name: str
    gpu_profile: str
    image: str
    default_slug: str
    pull_timeout_s: int
    load_timeout_s: int
    container_name: str
    also_for: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "gpu_profile": self.gpu_profile,
            "also_for": list(self.also_for),
            "image": self.image,
            "default_slug": self.default_slug,
            "pull_timeout_s": self.pull_timeout_s,
            "load_timeout_s": self.load_timeout_s,
            "container_name": self.container_name,
        }


@dataclass(frozen=True)
class NimModel:
    """One NIM catalog entry. ``min_vram_mib`` is compared with the host's summed VRAM."""

    name: str
    image: str
    min_vram_mib: int
    served_id: str
    aliases: tuple[str, ...] = ()  # the short names of earlier releases (``nemotron-3-nano-30b-a3b``)

    def fits(self, budget_mib: int | None) -> bool | None:
        """Whether the entry fits ``budget_mib``; ``None`` when the budget is unknown."""
        if budget_mib is None or budget_mib <= 0:
            return None
        return self.min_vram_mib <= budget_mib

    def matches(self, text: str) -> bool:
        wanted = text.lower()
        return wanted in (self.name.lower(), self.served_id.lower(), self.image.lower(),
                          *(alias.lower() for alias in self.aliases))

    @property
    def token_variables(self) -> tuple[str, ...]:
        """NIM images and containers always need an NGC key."""
        return NGC_KEY_VARIABLES

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "min_vram_mib": self.min_vram_mib,
            "served_id": self.served_id,
            "aliases": list(self.aliases),
            "token_variables": list(self.token_variables),
        }


@dataclass(frozen=True)
class OllamaStarter:
    """One Ollama starter model, offered when nothing is installed yet."""

    tag: str
    required_memory_mib: int
    download_bytes: int
    compute_intensive: bool

    def fits(self, memory_mib: int | None) -> bool:
        """NemoClaw's ``modelFitsAvailableMemory``: unknown memory counts as a fit."""
        if memory_mib is None or memory_mib <= 0:
            return True
        return self.required_memory_mib <= memory_mib

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "required_memory_mib": self.required_memory_mib,
            "download_bytes": self.download_bytes,
            "compute_intensive": self.compute_intensive,
        }


__all__ = [
    "HF_ID_RE", "HF_PREFIX", "HF_TOKEN_VARIABLES", "NGC_KEY_VARIABLES", "NimModel", "OllamaStarter", "RUNTIMES",
    "SAFE_MODEL_ID_RE", "VLLM_CONTAINER_PORT", "VllmModel", "VllmProfile", "format_compute_capability",
    "is_safe_model_id", "parse_compute_capability", "served_name_from_args",
]
