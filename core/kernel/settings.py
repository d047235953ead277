"""The one settings catalogue: every environment variable nemoclaw-runtime reads, with its parser and default.

Settings are read at call time from an injected mapping (``Settings.from_env(os.environ)`` at the CLI edge, any
mapping in tests and in library callers); nothing here reads ``os.environ`` on import and nothing writes it.
A value that cannot be parsed raises :class:`InvalidSetting` naming the variable (exit 2) — except the few
variables NemoClaw documents as "bad value → default with a warning", which are collected in
``Settings.warnings`` instead. Secret values are wrapped in :class:`Secret` so no repr can leak them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.kernel.secret import Secret

_PORT_RE = re.compile(r"^\d+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


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


def _text(variable: str, raw: str) -> str | None:
    value = raw.strip()
    return value or None


def _secret(variable: str, raw: str) -> Secret | None:
    value = raw.strip()  # whitespace-only tokens are ignored, as NemoClaw does
    return Secret(value) if value else None


def _flag(variable: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidSetting(
        f'Invalid {variable}="{raw}" — must be 1/0, true/false, yes/no or on/off',
        remedy=f"set {variable}=1 to enable it or unset it",
        details={"variable": variable},
    )


def _port(variable: str, raw: str) -> int:
    value = raw.strip()
    if not _PORT_RE.match(value) or not 1024 <= int(value) <= 65535:
        raise InvalidSetting(
            f'Invalid port: {variable}="{raw}" — must be an integer between 1024 and 65535',
            remedy=f"set {variable} to a free port such as 8000, or unset it",
            details={"variable": variable},
        )
    return int(value)


def _seconds(variable: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidSetting(
            f'Invalid {variable}="{raw}" — must be a positive number of seconds',
            remedy=f"set {variable} to a number of seconds such as 600, or unset it",
            details={"variable": variable},
        )
    return value


def _path(variable: str, raw: str) -> Path | None:
    value = raw.strip()
    return Path(value).expanduser() if value else None


def _provider(variable: str, raw: str) -> str | None:
    value = raw.strip().lower()
    allowed = ("vllm", "install-vllm", "nim", "ollama")
    if not value:
        return None
    if value not in allowed:
        raise InvalidSetting(
            f'Invalid {variable}="{raw}" — must be one of: {", ".join(allowed)}',
            remedy=f"set {variable} to one of {', '.join(allowed)}, or unset it",
            details={"variable": variable},
        )
    return value


def _api(variable: str, raw: str) -> str | None:
    value = raw.strip().lower()
    allowed = ("openai-completions", "openai-responses")
    if not value:
        return None
    if value not in allowed:
        raise InvalidSetting(
            f'Invalid {variable}="{raw}" — must be openai-completions or openai-responses',
            remedy=f"set {variable}=openai-completions, or unset it",
            details={"variable": variable},
        )
    return value


def _s(variable: str, fld: str, default: Any, doc: str, parse: Callable[[str, str], Any], **kw: Any) -> Setting:
    return Setting(variable, fld, default, doc, parse, **kw)


CATALOGUE: tuple[Setting, ...] = (
    # --- general -------------------------------------------------------------------------------------------------
    _s("NEMOCLAW_DEBUG", "debug", False, "show tracebacks for errors", _flag),
    _s("NEMOCLAW_GPU_SNAPSHOT", "gpu_snapshot", None,
       "replay a `gpus --json` snapshot file instead of reading NVML", _path),
    _s("NEMOCLAW_EXPERIMENTAL", "experimental", False,
       "offer experimental options (managed vLLM on generic Linux, local NIM)", _flag),
    _s("NEMOCLAW_PROVIDER", "provider", None,
       "non-interactive provider choice: vllm, install-vllm, nim, ollama", _provider),
    _s("NEMOCLAW_MODEL", "model", None, "model for NIM / Ollama (and the wizard)", _text),
    _s("NEMOCLAW_CONTEXT_WINDOW", "context_window", None,
       "context window to report instead of the server's max_model_len", _text),
    _s("NEMOCLAW_PREFERRED_API", "preferred_api", None,
       "openai-completions (default) or openai-responses for validation", _api),
    _s("NEMOCLAW_LOCAL_INFERENCE_TIMEOUT", "local_inference_timeout", 180.0,
       "validation probe budget in seconds (bad value: default + warning)", _seconds, lenient=True),
    _s("NEMOCLAW_STATE_DIR", "state_dir_override", None,
       "state directory for locks (default $XDG_STATE_HOME/nemoclaw-runtime)", _path),
    # --- image pulls ---------------------------------------------------------------------------------------------
    _s("NEMOCLAW_PULL_STALL_TIMEOUT", "pull_stall_timeout", 120.0,
       "seconds without byte progress, while bytes are expected, before a pull is declared stalled", _seconds),
    _s("NEMOCLAW_PULL_QUIET_TIMEOUT", "pull_quiet_timeout", 900.0,
       "longer window for the quiet phases (extracting / verifying large layers)", _seconds),
    _s("NEMOCLAW_PULL_MAX_TIMEOUT", "pull_max_timeout", 43200.0, "overall cap on one image pull (12 h)", _seconds),
    # --- vLLM ----------------------------------------------------------------------------------------------------
    _s("NEMOCLAW_VLLM_MODEL", "vllm_model", None, "vLLM model slug or Hugging Face id", _text),
    _s("NEMOCLAW_VLLM_PORT", "vllm_port", 8000, "host port for vLLM and NIM", _port),
    _s("NEMOCLAW_VLLM_IMAGE", "vllm_image", None, "override the vLLM image (mirror / air-gapped)", _text),
    _s("NEMOCLAW_VLLM_EXTRA_ARGS_JSON", "vllm_extra_args_json", None,
       "JSON array of extra `vllm serve` arguments", _text),
    _s("NEMOCLAW_VLLM_READY_TIMEOUT", "vllm_ready_timeout", 1800.0, "seconds to wait for vLLM readiness", _seconds),
    # --- NIM -----------------------------------------------------------------------------------------------------
    _s("NEMOCLAW_NIM_IMAGE", "nim_image", None, "override the NIM image", _text),
    _s("NEMOCLAW_NIM_READY_TIMEOUT", "nim_ready_timeout", 1200.0, "seconds to wait for NIM readiness", _seconds),
    # --- Ollama --------------------------------------------------------------------------------------------------
    _s("NEMOCLAW_OLLAMA_PORT", "ollama_port", 11434, "host port of Ollama", _port),
    _s("NEMOCLAW_OLLAMA_PROXY_PORT", "ollama_proxy_port", 11435, "port of NemoClaw's Ollama proxy", _port),
    _s("NEMOCLAW_OLLAMA_IMAGE", "ollama_image", None, "override the Ollama image", _text),
    _s("NEMOCLAW_OLLAMA_PULL_TIMEOUT", "ollama_pull_timeout", 1800.0,
       "overall cap on an Ollama model pull in seconds (bad value: default + warning)", _seconds, lenient=True),
    # --- credentials ---------------------------------------------------------------------------------------------
    _s("HF_TOKEN", "hf_token", None, "Hugging Face token (gated models)", _secret, secret=True),
    _s("HUGGING_FACE_HUB_TOKEN", "hugging_face_hub_token", None, "legacy name of HF_TOKEN", _secret, secret=True),
    _s("HF_ENDPOINT", "hf_endpoint", None, "Hugging Face endpoint (mirrors, tests)", _text),
    _s("HF_HOME", "hf_home_override", None, "Hugging Face cache root (default ~/.cache/huggingface)", _path),
    _s("NGC_API_KEY", "ngc_api_key", None, "NGC key for nvcr.io and NIM", _secret, secret=True),
    _s("NVIDIA_INFERENCE_API_KEY", "nvidia_inference_api_key", None, "fallback NGC key", _secret, secret=True),
    _s("NVIDIA_API_KEY", "nvidia_api_key", None, "second fallback NGC key", _secret, secret=True),
    # --- engine --------------------------------------------------------------------------------------------------
    _s("DOCKER_HOST", "docker_host", None, "Docker engine address (default the local socket)", _text),
    _s("DOCKER_CONFIG", "docker_config_dir", None, "Docker config directory (default ~/.docker)", _path),
    # --- locations -----------------------------------------------------------------------------------------------
    _s("HOME", "home_override", None, "home directory", _path),
    _s("XDG_STATE_HOME", "xdg_state_home", None, "XDG state root", _path),
    _s("XDG_CACHE_HOME", "xdg_cache_home", None, "XDG cache root", _path),
)


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed. Build with :meth:`from_env`; override fields with :func:`dataclasses.replace`."""

    debug: bool = False
    gpu_snapshot: Path | None = None
    experimental: bool = False
    provider: str | None = None
    model: str | None = None
    context_window: str | None = None
    preferred_api: str | None = None
    local_inference_timeout: float = 180.0
    state_dir_override: Path | None = None
    pull_stall_timeout: float = 120.0
    pull_quiet_timeout: float = 900.0
    pull_max_timeout: float = 43200.0
    vllm_model: str | None = None
    vllm_port: int = 8000
    vllm_image: str | None = None
    vllm_extra_args_json: str | None = None
    vllm_ready_timeout: float = 1800.0
    nim_image: str | None = None
    nim_ready_timeout: float = 1200.0
    ollama_port: int = 11434
    ollama_proxy_port: int = 11435
    ollama_image: str | None = None
    ollama_pull_timeout: float = 1800.0
    hf_token: Secret | None = None
    hugging_face_hub_token: Secret | None = None
    hf_endpoint: str | None = None
    hf_home_override: Path | None = None
    ngc_api_key: Secret | None = None
    nvidia_inference_api_key: Secret | None = None
    nvidia_api_key: Secret | None = None
    docker_host: str | None = None
    docker_config_dir: Path | None = None
    home_override: Path | None = None
    xdg_state_home: Path | None = None
    xdg_cache_home: Path | None = None
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
        """The Hugging Face token and the variable it came from; ``HF_TOKEN`` wins."""
        for name, value in (("HF_TOKEN", self.hf_token), ("HUGGING_FACE_HUB_TOKEN", self.hugging_face_hub_token)):
            if value:
                return name, value
        return None

    def ngc_key_value(self) -> tuple[str, Secret] | None:
        """The NGC key and its variable: ``NGC_API_KEY``, then ``NVIDIA_INFERENCE_API_KEY``, then ``NVIDIA_API_KEY``."""
        for name, value in (
            ("NGC_API_KEY", self.ngc_api_key),
            ("NVIDIA_INFERENCE_API_KEY", self.nvidia_inference_api_key),
            ("NVIDIA_API_KEY", self.nvidia_api_key),
        ):
            if value:
                return name, value
        return None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
