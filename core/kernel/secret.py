"""A value that must never be shown: tokens and API keys — and the one redactor for text that may hold one.

``Secret`` has no ``__str__`` that reveals it; ``repr`` and ``str`` print ``'***'``. Code that truly needs the value
(the container env, an ``Authorization`` header, a registry login) calls :meth:`Secret.reveal` at that one spot.

:func:`redact` is the one redactor: given values, anything shaped like a token or key, ``NAME=value`` pairs of
credential-like names, the user information of every URL (``scheme://user:password@host`` →
``scheme://***@host``) and the value after any secret-like flag (``--api-key X``, ``--hf-token=X``).
:func:`redact_argv` does the same for an argv list, :func:`redact_data` for a JSON-shaped value, and
:func:`redact_url` for one URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "Secret", "is_secret_flag", "redact", "redact_argv", "redact_data", "redact_url"]

REDACTED = "***"

# The user information of a URL: scheme://user:password@host (a user name alone may be a token too).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*:/{1,2})[^/?#\s@'\"<>]+@")  # ':/' too: a Path folds '//'

# The last word of a secret-like flag (``--api-key``, ``--hf-token``, ``--ssl-keyfile-password``): one rule for the
# redactor's "value after a secret-like flag" and for :func:`is_secret_flag`.
_SECRET_FLAG_WORDS = (r"--?(?:[a-z0-9]+[-_])*(?:api[-_]?key|key|token|secret|password|passwd|pass|auth|"
                      r"authorization|credentials?)")

# What a token or key looks like in text we did not write (server answers, container logs, library messages).
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:hf_[A-Za-z0-9]{10,}|nvapi-[A-Za-z0-9_\-]{6,}|sk-[A-Za-z0-9_\-]{8,})"), REDACTED),
    (re.compile(r"(?i)(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=\-]{8,}"), rf"\g<1>{REDACTED}"),
    (
        re.compile(
            r"(?i)(\b(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN|NGC_API_KEY|NIM_NGC_API_KEY|NVIDIA_API_KEY|"
            r"NVIDIA_INFERENCE_API_KEY|api[_-]?key|token|password|secret|authorization)\b[\"']?\s*[=:]\s*[\"']?)"
            # a placeholder (<your token>, $VAR, ..., ***) or a variable's name (NGC_API_KEY) is no secret
            r"(?![<$*]|\.\.\.|(?-i:[A-Z][A-Z0-9]*_[A-Z0-9_]+)(?![^\s\"',;&}]))[^\s\"',;&}]+"
        ),
        rf"\g<1>{REDACTED}",
    ),
    (_URL_USERINFO, rf"\g<1>{REDACTED}@"),
    # The value after a secret-like flag, as two words or as flag=value.
    (re.compile(r"(?i)(?<![\w-])(" + _SECRET_FLAG_WORDS + r"(?:=|\s+))(?![-<$*]|\.\.\.)[^\s\"',;]+"),
     rf"\g<1>{REDACTED}"),
)

_SECRET_FLAG = re.compile(r"(?i)^" + _SECRET_FLAG_WORDS + r"$")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secret values, and anything shaped like a token, key or credential, as ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_flag(token: str) -> bool:
    """True for a flag whose value is a credential: ``--api-key``, ``--hf-token``, ``--password`` (any spelling
    with ``-`` or ``_``, any case)."""
    return bool(_SECRET_FLAG.match(token.split("=", 1)[0]))


def redact_argv(argv: Iterable[str], secrets: Iterable[str] = ()) -> list[str]:
    """``argv`` with the value of every secret-like flag (next token, or after ``=``) as ``***``, and every other
    token passed through :func:`redact`."""
    values = [s for s in secrets if s]
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next and not token.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        flag, eq, _ = token.partition("=")
        if is_secret_flag(flag):
            if eq:
                out.append(f"{flag}={REDACTED}")
                continue
            hide_next = True
        out.append(redact(token, values))
    return out


def redact_data(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-shaped value (dicts, lists, tuples, strings) with every string passed through :func:`redact`; lists
    of strings are treated as argv (the value after a secret-like flag is hidden too)."""
    values = tuple(s for s in secrets if s)
    if isinstance(value, str):
        return redact(value, values)
    if isinstance(value, Mapping):
        return {key: redact_data(item, values) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            return redact_argv(value, values)
        return [redact_data(item, values) for item in value]
    return value


def redact_url(url: str) -> str:
    """``url`` with its user information (``user:password@``) as ``***@``."""
    return _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", url)


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
