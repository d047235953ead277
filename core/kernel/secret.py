"""A value that must never be shown: tokens and API keys.

``Secret`` has no ``__str__`` that reveals it; ``repr`` and ``str`` print ``'***'``. Code that truly needs the value
(the container env, an ``Authorization`` header, a registry login) calls :meth:`Secret.reveal` at that one spot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Secret", "redact"]

REDACTED = "***"

# What a token or key looks like in text we did not write (server answers, container logs, library messages).
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:hf_[A-Za-z0-9]{10,}|nvapi-[A-Za-z0-9_\-]{6,}|sk-[A-Za-z0-9_\-]{8,})"), REDACTED),
    (re.compile(r"(?i)(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=\-]{8,}"), rf"\g<1>{REDACTED}"),
    (
        re.compile(
            r"(?i)(\b(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN|NGC_API_KEY|NIM_NGC_API_KEY|NVIDIA_API_KEY|"
            r"NVIDIA_INFERENCE_API_KEY|api[_-]?key|token|password|secret|authorization)\b[\"']?\s*[=:]\s*[\"']?)"
            r"[^\s\"',;&}]+"
        ),
        rf"\g<1>{REDACTED}",
    ),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secret values, and anything shaped like a token, key or credential, as ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:  # never pickled into a cache or a log by accident
        raise TypeError("Secret values are not serialisable")
