"""``NEMOCLAW_VLLM_EXTRA_ARGS_JSON``: extra ``vllm serve`` arguments, validated before anything is downloaded.

The value is a JSON array of strings; each is trimmed and becomes one argv token appended after the registry
entry's flags. Nothing is shell-quoted because nothing goes through a shell. Error texts follow NemoClaw's
(``must be a JSON array…``, ``[i] must be a string.``, ``[i] must not be empty.``, ``[i] must not contain
control characters.``) and never echo the value: extra args may carry an ``--api-key``.
"""

from __future__ import annotations

import json
import re

from nemoclaw_runtime.kernel.errors import InvalidSetting

__all__ = ["CONTROL_RE", "EXTRA_ARGS_VARIABLE", "RESERVED_FLAGS", "parse_extra_args"]

EXTRA_ARGS_VARIABLE = "NEMOCLAW_VLLM_EXTRA_ARGS_JSON"

CONTROL_RE = re.compile(r"[\u0000-\u001f\u007f]")
#: Where vLLM listens is the serve command's business: on the container port the host port maps onto, on every
#: interface of the container. Extra args may not move it (they may lower --max-model-len: vLLM takes the last).
NETWORK_FLAGS = ("--port", "--host")
#: What a registry entry's own flags may not set: the serve command writes these itself.
RESERVED_FLAGS = (*NETWORK_FLAGS, "--max-model-len")


def parse_extra_args(raw: str | None, *, variable: str = EXTRA_ARGS_VARIABLE) -> tuple[str, ...]:
    """Parse the extra-args JSON: blank → ``()``; else a tuple of trimmed, non-empty, control-free tokens.

    Raises :class:`InvalidSetting` (exit 2) naming ``variable`` and, for a bad element, its index.
    """
    if raw is None or not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _invalid(
            variable,
            f"{variable} must be a JSON array of strings; it is not valid JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno}).",
        ) from None
    if not isinstance(value, list):
        raise _invalid(
            variable, f"{variable} must be a JSON array of strings; got a JSON {_json_kind(value)}."
        )
    return tuple(_token(variable, index, item) for index, item in enumerate(value))


def _token(variable: str, index: int, item: object) -> str:
    if not isinstance(item, str):
        raise _invalid(variable, f"{variable}[{index}] must be a string.", index)
    token = item.strip()
    if not token:
        raise _invalid(variable, f"{variable}[{index}] must not be empty.", index)
    if CONTROL_RE.search(token):
        raise _invalid(variable, f"{variable}[{index}] must not contain control characters.", index)
    for flag in NETWORK_FLAGS:
        if token == flag or token.startswith(flag + "="):
            raise _invalid(
                variable,
                f"{variable}[{index}] must not set {flag}: "
                "vLLM always listens on port 8000, on every interface, inside its container.",
                index,
                remedy="choose the host port with --port / NEMOCLAW_VLLM_PORT and the address with --host instead",
            )
    return token


def _invalid(
    variable: str, message: str, index: int | None = None, *, remedy: str | None = None
) -> InvalidSetting:
    details: dict[str, object] = {"variable": variable}
    if index is not None:
        details["index"] = index
    return InvalidSetting(
        message,
        remedy=remedy
        or f"""set {variable} to a JSON array of strings, e.g. '["--max-num-seqs", "8"]', or unset it""",
        details=details,
    )


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"
