"""``NEMOCLAW_VLLM_EXTRA_ARGS_JSON``: extra ``vllm serve`` arguments, validated before anything is downloaded.

The value is a JSON array of strings; each is trimmed and becomes one argv token appended after the registry
entry's flags. Nothing is shell-quoted because nothing goes through a shell. Error texts follow NemoClaw's
(``must be a JSON array…``, ``[i] must be a string.``, ``[i] must not be empty.``, ``[i] must not contain
control characters.``) and never echo the value: extra args may carry an ``--api-key``.

The flags the serve command manages (:data:`MANAGED_FLAGS`: the model, and where vLLM listens) are refused in any
spelling vLLM's parser would accept: ``--port 9000``, ``--port=9000``, ``--port_x`` underscores for dashes, an
abbreviation (``--po``), or flag and value packed into one element (``"--port 9000"``). The document is bounded
(:data:`MAX_EXTRA_ARGS_BYTES`, and nesting: :func:`~nemoclaw_runtime.kernel.text.loads_json`).
"""

from __future__ import annotations

import json
import re

from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.kernel.text import JsonTooDeep, has_unsafe, loads_json

__all__ = ["EXTRA_ARGS_VARIABLE", "MANAGED_FLAGS", "RESERVED_FLAGS", "parse_extra_args"]

EXTRA_ARGS_VARIABLE = "NEMOCLAW_VLLM_EXTRA_ARGS_JSON"
MAX_EXTRA_ARGS_BYTES = 64 * 1024
MAX_EXTRA_ARGS = 512

#: Where vLLM listens is the serve command's business: on the container port the host port maps onto, on every
#: interface of the container. Extra args may not move it (they may lower --max-model-len: vLLM takes the last).
NETWORK_FLAGS = ("--port", "--host", "--uds")
#: Flags the serve command writes itself, which extra args may not set: where vLLM listens, and the model (the
#: positional argument; ``--model`` would be refused by vLLM only after every download).
MANAGED_FLAGS = (*NETWORK_FLAGS, "--model")
_WHY = {
    "--model": "the model is the serve command's positional argument (choose it with --model / NEMOCLAW_VLLM_MODEL)",
    "--uds": "vLLM always listens on port 8000, on every interface, inside its container.",
}
_REMEDY = {"--model": "choose the model with `up vllm --model` or NEMOCLAW_VLLM_MODEL, and drop it from "
                      f"{EXTRA_ARGS_VARIABLE}"}
#: What a registry entry's own flags may not set: the serve command writes these itself.
RESERVED_FLAGS = (*MANAGED_FLAGS, "--max-model-len")


def parse_extra_args(raw: str | None, *, variable: str = EXTRA_ARGS_VARIABLE) -> tuple[str, ...]:
    """Parse the extra-args JSON: blank → ``()``; else a tuple of trimmed, non-empty, control-free tokens.

    Raises :class:`InvalidSetting` (exit 2) naming ``variable`` and, for a bad element, its index.
    """
    if raw is None or not raw.strip():
        return ()
    if len(raw) > MAX_EXTRA_ARGS_BYTES:
        raise _invalid(variable, f"{variable} must be a JSON array of strings; it is longer than "
                                 f"{MAX_EXTRA_ARGS_BYTES} characters.")
    try:
        value = loads_json(raw)
    except JsonTooDeep:
        raise _invalid(variable, f"{variable} must be a JSON array of strings; it is nested too deeply.") from None
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
    if len(value) > MAX_EXTRA_ARGS:
        raise _invalid(variable, f"{variable} must be a JSON array of at most {MAX_EXTRA_ARGS} strings.")
    return tuple(_token(variable, index, item) for index, item in enumerate(value))


def _managed_flag(token: str) -> str | None:
    """The managed flag ``token`` sets, in any spelling vLLM's parser accepts (``=value``, ``_`` for ``-``, an
    unambiguous abbreviation, a value packed into the same element); None when it sets none."""
    if not token.startswith("--"):
        return None
    name = re.split(r"[=\s]", token, maxsplit=1)[0].replace("_", "-").lower()
    for flag in MANAGED_FLAGS:
        if name == flag or (len(name) >= 4 and flag.startswith(name)):
            return flag
    return None


def _token(variable: str, index: int, item: object) -> str:
    if not isinstance(item, str):
        raise _invalid(variable, f"{variable}[{index}] must be a string.", index)
    token = item.strip()
    if not token:
        raise _invalid(variable, f"{variable}[{index}] must not be empty.", index)
    if has_unsafe(token):  # kernel/text.py's one rule: controls, escapes, bidi and invisible marks
        raise _invalid(variable, f"{variable}[{index}] must not contain control characters.", index)
    flag = _managed_flag(token)
    if flag is not None:
        raise _invalid(
            variable,
            f"{variable}[{index}] must not set {flag}: "
            + _WHY.get(flag, "vLLM always listens on port 8000, on every interface, inside its container."),
            index,
            remedy=_REMEDY.get(flag, "choose the host port with --port / NEMOCLAW_VLLM_PORT and the address with "
                                     "--host instead"),
        )
    if token.startswith("-") and re.search(r"\s", token):
        raise _invalid(
            variable, f"{variable}[{index}] must be one argv token: a flag and its value are two elements.", index,
            remedy=f"""write them as two strings, e.g. '["--max-num-seqs", "8"]' in {variable}""")
    if index == 0 and not token.startswith("-"):
        raise _invalid(
            variable, f"{variable}[0] must be a flag: a value before any flag would be read as a second model.", 0)
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
