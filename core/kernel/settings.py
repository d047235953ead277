"""The one settings catalogue: every environment variable nemoclaw-runtime reads, with its parser and default.

Each setting is declared once, as a field of :class:`Settings` (:func:`_setting` attaches the variable, the meaning
and the parser to the field); :data:`CATALOGUE` is derived from those fields, and the README's Environment table
is checked against it (tests/unit/test_settings.py).

Settings are read at call time from an injected mapping (``Settings.from_env(os.environ)`` at the CLI edge, any
mapping in tests and in library callers); nothing here reads ``os.environ`` on import and nothing writes it.
A value that cannot be parsed raises :class:`InvalidSetting` naming the variable (exit 2) — except the few
variables NemoClaw documents as "bad value → default with a warning", which are collected in
``Settings.warnings`` instead. Secret values are wrapped in :class:`Secret` so no repr can leak them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.kernel.names import APIS, HF_TOKEN_VARIABLES, NGC_KEY_VARIABLES, PROVIDERS
from nemoclaw_runtime.kernel.secret import Secret, redact
from nemoclaw_runtime.kernel.text import has_unsafe, json_depth, one_line

_SECRET_RE = re.compile(r"[!-~]{1,4096}")  # one word of printable ASCII: it goes into HTTP headers and env values
MAX_CONTEXT_WINDOW = checks.MAX_CONTEXT_LENGTH  # the kernel's one largest context (requests, settings, probes)
MAX_JSON_SETTING_BYTES = 64 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class Setting:
    """One catalogue entry: the variable, the ``Settings`` field it fills, its default and what it means."""

    variable: str
    field: str
    default: Any
    doc: str
    parse: Callable[[str, str], Any]  # (variable, raw) -> value; raises InvalidSetting
    secret: bool = False
    lenient: bool = False  # bad value -> default + warning instead of exit 2


def _quoted(raw: str) -> str:
    """A bad raw value as messages quote it: one line, credentials redacted, bounded."""
    text = one_line(redact(raw))
    return text if len(text) <= 80 else text[:80] + "…"


def _text(variable: str, raw: str) -> str | None:
    """Plain one-line text: control characters and invisible marks are refused (exit 2)."""
    value = raw.strip()
    return checks.check_plain_text(value, variable, variable=variable) if value else None


def _json_text(variable: str, raw: str) -> str | None:
    """JSON text (line breaks allowed), bounded in size and nesting; the reader of the setting parses it."""
    value = raw.strip()
    if not value:
        return None
    problem = None
    if len(value.encode("utf-8", "surrogatepass")) > MAX_JSON_SETTING_BYTES:
        problem = f"it is larger than {MAX_JSON_SETTING_BYTES} bytes"
    elif json_depth(value) > 8:
        problem = "it is nested more than 8 levels deep"
    if problem:
        example = """'["--max-num-seqs", "8"]'"""
        raise InvalidSetting(f"Invalid {variable}: {problem}",
                             remedy=f"set {variable} to a short JSON array of strings, e.g. {example}",
                             details={"variable": variable})
    return value


def _image(variable: str, raw: str) -> str | None:
    value = raw.strip()
    return checks.check_image_reference(value, variable, variable=variable) if value else None


def _url(variable: str, raw: str) -> str | None:
    value = raw.strip()
    return checks.check_http_url(value, variable, variable=variable) if value else None


def _docker_host(variable: str, raw: str) -> str | None:
    value = raw.strip()
    return checks.check_docker_host(value, variable) if value else None


def _secret(variable: str, raw: str) -> Secret | None:
    value = raw.strip()  # whitespace-only tokens are ignored, as NemoClaw does
    if value and not _SECRET_RE.fullmatch(value):
        raise InvalidSetting(  # never quote the value: it is a credential
            f"Invalid {variable} (its value is not shown): a key is one word of printable ASCII characters (no "
            "spaces, line breaks or control characters, at most 4096)",
            remedy=f"export {variable} again, copied exactly, or unset it", details={"variable": variable})
    return Secret(value) if value else None


def _context_window(variable: str, raw: str) -> str | None:
    """A token count, read by the kernel's one context parser (``32768``, ``32k`` = 32000, ``32K`` = 32768)."""
    if not raw.strip():
        return None
    return str(checks.check_context_length(raw, variable, variable=variable))


def _flag(variable: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidSetting(
        f'Invalid {variable}="{_quoted(raw)}" — must be 1/0, true/false, yes/no or on/off',
        remedy=f"set {variable}=1 to enable it or unset it",
        details={"variable": variable},
    )


def _port(variable: str, raw: str) -> int:
    try:  # kernel/checks.py's rule (ASCII digits only: int() takes any script's), with this message
        return checks.check_port(raw, variable, low=1024, variable=variable)
    except InvalidSetting:
        raise InvalidSetting(
            f'Invalid port: {variable}="{_quoted(raw)}" — must be an integer between 1024 and 65535',
            remedy=f"set {variable} to a free port such as 8000, or unset it",
            details={"variable": variable},
        ) from None


def _seconds(variable: str, raw: str) -> float:
    try:  # kernel/checks.py's rule (ASCII, finite, positive, at most 30 days), with this message
        return checks.check_seconds(raw, variable, variable=variable)
    except InvalidSetting:
        raise InvalidSetting(
            f'Invalid {variable}="{_quoted(raw)}" — must be a positive number of seconds, at most '
            f"{checks.MAX_SECONDS:.0f} (30 days)",
            remedy=f"set {variable} to a number of seconds such as 600, or unset it",
            details={"variable": variable},
        ) from None


def _path(variable: str, raw: str) -> Path | None:
    value = raw.strip()
    if value and ("\x00" in value or has_unsafe(value)):
        raise InvalidSetting(f'Invalid {variable}="{_quoted(raw)}" — a path must not hold control characters',
                             remedy=f"set {variable} to a plain path, or unset it", details={"variable": variable})
    if not value:
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user of a user that does not exist, or no home to expand ~ into
        raise InvalidSetting(f'Invalid {variable}="{_quoted(raw)}" — its ~ names no known home directory',
                             remedy=f"set {variable} to an absolute path, or unset it",
                             details={"variable": variable}) from None


def _directory(variable: str, raw: str) -> Path | None:
    """A directory, or a path where one will be created: a file, device or FIFO there is refused (exit 2)."""
    path = _path(variable, raw)
    return checks.check_directory(path, variable, variable=variable) if path is not None else None


def _file(variable: str, raw: str) -> Path | None:
    """A regular file to read: directories, devices (/dev/zero), FIFOs and sockets are refused unopened."""
    path = _path(variable, raw)
    return checks.check_regular_file(path, variable, variable=variable) if path is not None else None


def _provider(variable: str, raw: str) -> str | None:
    value = raw.strip().lower()
    allowed = PROVIDERS
    if not value:
        return None
    if value not in allowed:
        raise InvalidSetting(
            f'Invalid {variable}="{_quoted(raw)}" — must be one of: {", ".join(allowed)}',
            remedy=f"set {variable} to one of {', '.join(allowed)}, or unset it",
            details={"variable": variable},
        )
    return value


def _api(variable: str, raw: str) -> str | None:
    value = raw.strip().lower()
    if not value:
        return None
    if value not in APIS:
        raise InvalidSetting(
            f'Invalid {variable}="{_quoted(raw)}" — must be {" or ".join(APIS)}',
            remedy=f"set {variable}={APIS[0]}, or unset it",
            details={"variable": variable},
        )
    return value


def _context(variable: str, raw: str) -> str | None:
    """A ``--max-model-len`` for vLLM: ``auto`` (the largest context that fits), or a positive token count."""
    if not raw.strip():
        return None
    tokens = checks.check_context_length(raw, variable, allow_auto=True, variable=variable)
    return "auto" if tokens is None else str(tokens)


_SETTING = "nemoclaw_runtime.setting"  # the dataclass field metadata key that marks a setting


def _setting(variable: str, default: _T, doc: str, parse: Callable[[str, str], _T], *, secret: bool = False,
             lenient: bool = False) -> _T:
    """A :class:`Settings` field read from ``variable``: its default, meaning and parser, declared in one place.

    Typed like :func:`dataclasses.field` (which it returns): the field's annotation must match what ``parse``
    returns and the default, so mypy checks each declaration.
    """
    declared = Setting(variable, "", default, doc, parse, secret=secret, lenient=lenient)  # field: filled below
    return field(default=default, metadata={_SETTING: declared})


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed. Build with :meth:`from_env`; override fields with :func:`dataclasses.replace`."""

    # --- general -------------------------------------------------------------------------------------------------
    debug: bool = _setting("NEMOCLAW_DEBUG", False, "show tracebacks for errors", _flag)
    gpu_snapshot: Path | None = _setting("NEMOCLAW_GPU_SNAPSHOT", None,
                                         "replay a `gpus --json` snapshot file instead of reading NVML", _file)
    experimental: bool = _setting("NEMOCLAW_EXPERIMENTAL", False,
                                  "offer experimental options (managed vLLM on generic Linux, local NIM)", _flag)
    provider: str | None = _setting("NEMOCLAW_PROVIDER", None,
                                    f"non-interactive provider choice: {', '.join(PROVIDERS)}", _provider)
    model: str | None = _setting("NEMOCLAW_MODEL", None, "model for NIM / Ollama (and the wizard)", _text)
    context_window: str | None = _setting("NEMOCLAW_CONTEXT_WINDOW", None,
                                          "context window to report instead of the server's max_model_len",
                                          _context_window)
    preferred_api: str | None = _setting("NEMOCLAW_PREFERRED_API", None,
                                         f"{APIS[0]} (default) or {APIS[1]} for validation", _api)
    local_inference_timeout: float = _setting(
        "NEMOCLAW_LOCAL_INFERENCE_TIMEOUT", 180.0, "validation probe budget in seconds (bad value: default + warning)",
        _seconds, lenient=True)
    state_dir_override: Path | None = _setting(
        "NEMOCLAW_STATE_DIR", None, "state directory for locks (default $XDG_STATE_HOME/nemoclaw-runtime)",
        _directory)
    # --- image pulls ---------------------------------------------------------------------------------------------
    pull_stall_timeout: float = _setting(
        "NEMOCLAW_PULL_STALL_TIMEOUT", 120.0,
        "seconds without byte progress, while bytes are expected, before a pull is declared stalled", _seconds)
    pull_quiet_timeout: float = _setting(
        "NEMOCLAW_PULL_QUIET_TIMEOUT", 900.0,
        "longer window for the quiet phases (extracting / verifying large layers)", _seconds)
    pull_max_timeout: float = _setting("NEMOCLAW_PULL_MAX_TIMEOUT", 43200.0, "overall cap on one image pull (12 h)",
                                       _seconds)
    # --- vLLM ----------------------------------------------------------------------------------------------------
    vllm_model: str | None = _setting("NEMOCLAW_VLLM_MODEL", None, "vLLM model slug or Hugging Face id", _text)
    vllm_port: int = _setting("NEMOCLAW_VLLM_PORT", 8000, "host port for vLLM and NIM", _port)
    vllm_image: str | None = _setting("NEMOCLAW_VLLM_IMAGE", None, "override the vLLM image (mirror / air-gapped)",
                                      _image)
    vllm_extra_args_json: str | None = _setting("NEMOCLAW_VLLM_EXTRA_ARGS_JSON", None,
                                                "JSON array of extra `vllm serve` arguments", _json_text)
    vllm_max_model_len: str | None = _setting(
        "NEMOCLAW_VLLM_MAX_MODEL_LEN", None,
        "vLLM context length: auto (the largest that fits this host) or a token count; default the registry's",
        _context)
    vllm_ready_timeout: float = _setting("NEMOCLAW_VLLM_READY_TIMEOUT", 1800.0, "seconds to wait for vLLM readiness",
                                         _seconds)
    ray_port: int = _setting("NEMOCLAW_RAY_PORT", 6379,
                             "port of the Ray head on the head node's interface (`up --nodes`)", _port)
    # --- NIM -----------------------------------------------------------------------------------------------------
    nim_image: str | None = _setting("NEMOCLAW_NIM_IMAGE", None, "override the NIM image", _image)
    nim_ready_timeout: float = _setting("NEMOCLAW_NIM_READY_TIMEOUT", 1200.0, "seconds to wait for NIM readiness",
                                        _seconds)
    # --- Ollama --------------------------------------------------------------------------------------------------
    ollama_port: int = _setting("NEMOCLAW_OLLAMA_PORT", 11434, "host port of Ollama", _port)
    ollama_proxy_port: int = _setting("NEMOCLAW_OLLAMA_PROXY_PORT", 11435, "port of NemoClaw's Ollama proxy", _port)
    ollama_image: str | None = _setting("NEMOCLAW_OLLAMA_IMAGE", None, "override the Ollama image", _image)
    ollama_pull_timeout: float = _setting(
        "NEMOCLAW_OLLAMA_PULL_TIMEOUT", 1800.0,
        "overall cap on an Ollama model pull in seconds (bad value: default + warning)", _seconds, lenient=True)
    # --- credentials ---------------------------------------------------------------------------------------------
    hf_token: Secret | None = _setting("HF_TOKEN", None, "Hugging Face token (gated models)", _secret, secret=True)
    hugging_face_hub_token: Secret | None = _setting("HUGGING_FACE_HUB_TOKEN", None, "legacy name of HF_TOKEN",
                                                     _secret, secret=True)
    hf_endpoint: str | None = _setting("HF_ENDPOINT", None, "Hugging Face endpoint (mirrors, tests)", _url)
    hf_home_override: Path | None = _setting("HF_HOME", None,
                                             "Hugging Face cache root (default ~/.cache/huggingface)", _directory)
    hf_download_stall_timeout: float = _setting(
        "NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT", 600.0,
        "seconds without a weights byte, while bytes are due, before a Hugging Face download is declared stalled",
        _seconds)
    ngc_api_key: Secret | None = _setting("NGC_API_KEY", None, "NGC key for nvcr.io and NIM", _secret, secret=True)
    nvidia_inference_api_key: Secret | None = _setting("NVIDIA_INFERENCE_API_KEY", None, "fallback NGC key",
                                                       _secret, secret=True)
    nvidia_api_key: Secret | None = _setting("NVIDIA_API_KEY", None, "second fallback NGC key", _secret,
                                             secret=True)
    # --- engine --------------------------------------------------------------------------------------------------
    docker_host: str | None = _setting("DOCKER_HOST", None, "Docker engine address (default the local socket)",
                                       _docker_host)
    docker_config_dir: Path | None = _setting("DOCKER_CONFIG", None, "Docker config directory (default ~/.docker)",
                                              _directory)
    # --- locations -----------------------------------------------------------------------------------------------
    home_override: Path | None = _setting("HOME", None, "home directory", _directory)
    xdg_state_home: Path | None = _setting("XDG_STATE_HOME", None, "XDG state root", _directory)
    xdg_cache_home: Path | None = _setting("XDG_CACHE_HOME", None, "XDG cache root", _directory)
    # --- not settings: what they were read from, and the lenient variables' complaints ---------------------------
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every catalogue variable from ``environ`` (``os.environ`` only when called with ``None``)."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        warnings: list[str] = []
        for setting in CATALOGUE:
            raw = env.get(setting.variable)
            if raw is None or (raw.strip() == "" and not setting.secret):
                continue
            try:
                values[setting.field] = setting.parse(setting.variable, raw)
            except InvalidSetting as exc:
                if not setting.lenient:
                    raise
                warnings.append(f"{exc.message}; using the default {setting.default:g}")
        return cls(**values, environ=env, warnings=tuple(warnings))

    # --- derived values --------------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.home_override or Path.home()

    @property
    def hf_home(self) -> Path:
        return self.hf_home_override or (self.xdg_cache_home or self.home / ".cache") / "huggingface"

    @property
    def state_dir(self) -> Path:
        if self.state_dir_override:
            return self.state_dir_override
        return (self.xdg_state_home or self.home / ".local" / "state") / "nemoclaw-runtime"

    @property
    def docker_config_path(self) -> Path:
        return (self.docker_config_dir or self.home / ".docker") / "config.json"

    def hf_token_value(self) -> tuple[str, Secret] | None:
        """The Hugging Face token and the variable it came from; ``HF_TOKEN`` wins (``HF_TOKEN_VARIABLES``)."""
        return self._first_secret(HF_TOKEN_VARIABLES)

    def ngc_key_value(self) -> tuple[str, Secret] | None:
        """The NGC key and its variable: ``NGC_API_KEY``, then ``NVIDIA_INFERENCE_API_KEY``, then ``NVIDIA_API_KEY``
        (``NGC_KEY_VARIABLES``)."""
        return self._first_secret(NGC_KEY_VARIABLES)

    def _first_secret(self, variables: tuple[str, ...]) -> tuple[str, Secret] | None:
        for variable in variables:
            value = getattr(self, BY_VARIABLE[variable].field)
            if value:
                return variable, value
        return None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


#: Every setting, in declaration order, derived from the fields of :class:`Settings` (declared there, once).
CATALOGUE: tuple[Setting, ...] = tuple(
    dataclasses.replace(f.metadata[_SETTING], field=f.name) for f in dataclasses.fields(Settings)
    if _SETTING in f.metadata)
#: The catalogue by variable name.
BY_VARIABLE: Mapping[str, Setting] = {setting.variable: setting for setting in CATALOGUE}


__all__ = ["BY_VARIABLE", "CATALOGUE", "Setting", "Settings"]
