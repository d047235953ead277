"""The ``vllm serve`` flags that change how much memory a model needs, read from an argv.

Only what the fit engine prices is read; everything else is ignored. As with vLLM's own parser the last
occurrence of a flag wins, and both ``--flag value`` and ``--flag=value`` spellings are accepted (vLLM also
accepts ``_`` for ``-`` in flag names).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.errors import InvalidInput

#: vLLM's defaults where a flag is absent.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192  # vLLM's API-server default on GPUs of 70 GiB and more
SMALL_GPU_MAX_NUM_BATCHED_TOKENS = 2048  # ... and below that
SMALL_GPU_BYTES = 70 * 1024**3
DEFAULT_MAX_NUM_SEQS = 256

_VALUE_FLAGS = {
    "--gpu-memory-utilization", "--max-model-len", "--kv-cache-dtype", "--tensor-parallel-size", "-tp",
    "--pipeline-parallel-size", "-pp", "--max-num-seqs", "--max-num-batched-tokens", "--block-size", "--dtype",
    "--quantization", "-q", "--speculative-config", "--revision", "--cpu-offload-gb", "--max-logprobs",
}
_BOOL_FLAGS = {"--enforce-eager", "--language-model-only"}


@dataclass(frozen=True)
class ServeOptions:
    """Memory-relevant ``vllm serve`` options; ``None`` means "not given" (the engine applies the default)."""

    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None
    max_model_len_auto: bool = False
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int = 1
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    dtype: str = "auto"
    quantization: str | None = None
    speculative_method: str | None = None
    speculative_tokens: int = 0
    enforce_eager: bool = False
    language_model_only: bool = False
    revision: str | None = None

    def batched_tokens(self, gpu_bytes: int) -> int:
        """``--max-num-batched-tokens``, or vLLM's default for a GPU of ``gpu_bytes``."""
        if self.max_num_batched_tokens:
            return self.max_num_batched_tokens
        return DEFAULT_MAX_NUM_BATCHED_TOKENS if gpu_bytes >= SMALL_GPU_BYTES else SMALL_GPU_MAX_NUM_BATCHED_TOKENS

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> ServeOptions:
        """Parse the flags of a ``vllm serve`` argv (the model id and unknown flags are skipped)."""
        values: dict[str, str] = {}
        flags: set[str] = set()
        tokens = list(argv)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            name, eq, inline = token.partition("=")
            name = _canonical(name)
            if name in _VALUE_FLAGS:
                if eq:
                    values[name] = inline
                elif i + 1 < len(tokens):
                    values[name] = tokens[i + 1]
                    i += 1
            elif name in _BOOL_FLAGS:
                flags.add(name)
            i += 1
        return cls._build(values, flags)

    @classmethod
    def _build(cls, values: dict[str, str], flags: set[str]) -> ServeOptions:
        kw: dict[str, Any] = {}
        if "--gpu-memory-utilization" in values:
            gmu = _float(values["--gpu-memory-utilization"], "--gpu-memory-utilization")
            if not 0 < gmu <= 1:
                raise _bad("--gpu-memory-utilization", values["--gpu-memory-utilization"], "a fraction in (0, 1]")
            kw["gpu_memory_utilization"] = gmu
        if "--max-model-len" in values:
            raw = values["--max-model-len"].strip().lower()
            if raw in ("auto", "-1"):
                kw["max_model_len_auto"] = True
            else:
                kw["max_model_len"] = _size(raw, "--max-model-len")
        for flag, field in (("--tensor-parallel-size", "tensor_parallel_size"), ("-tp", "tensor_parallel_size"),
                            ("--pipeline-parallel-size", "pipeline_parallel_size"),
                            ("-pp", "pipeline_parallel_size"), ("--max-num-seqs", "max_num_seqs"),
                            ("--max-num-batched-tokens", "max_num_batched_tokens"), ("--block-size", "block_size")):
            if flag in values:
                kw[field] = _size(values[flag], flag)
        if "--kv-cache-dtype" in values:
            kw["kv_cache_dtype"] = values["--kv-cache-dtype"].strip().lower() or "auto"
        if "--dtype" in values:
            kw["dtype"] = values["--dtype"].strip().lower() or "auto"
        for flag in ("--quantization", "-q"):
            if flag in values:
                kw["quantization"] = values[flag].strip().lower() or None
        if "--revision" in values:
            kw["revision"] = values["--revision"].strip() or None
        if "--speculative-config" in values:
            method, n = _speculative(values["--speculative-config"])
            kw["speculative_method"], kw["speculative_tokens"] = method, n
        kw["enforce_eager"] = "--enforce-eager" in flags
        kw["language_model_only"] = "--language-model-only" in flags
        return cls(**kw)


def _canonical(name: str) -> str:
    if name.startswith("--"):
        return "--" + name[2:].replace("_", "-")
    return name


def _speculative(raw: str) -> tuple[str | None, int]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None, 0
    if not isinstance(data, dict):
        return None, 0
    method = data.get("method")
    n = data.get("num_speculative_tokens")
    return (str(method).lower() if method else None), (int(n) if isinstance(n, int) and n > 0 else 0)


def _float(raw: str, flag: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _bad(flag, raw, "a number") from None


def _size(raw: str, flag: str) -> int:
    text = raw.strip().lower()
    scale = 1
    if text.endswith("k"):
        text, scale = text[:-1], 1024  # vLLM reads 32k as 32768 for --max-model-len
    try:
        value = int(float(text) * scale) if "." in text else int(text) * scale
    except ValueError:
        raise _bad(flag, raw, "a positive integer") from None
    if value <= 0:
        raise _bad(flag, raw, "a positive integer")
    return value


def _bad(flag: str, raw: str, what: str) -> InvalidInput:
    return InvalidInput(f"Invalid {flag} value {raw!r}: must be {what}", remedy=f"give {flag} {what}",
                        details={"flag": flag})


__all__ = ["SMALL_GPU_BYTES", "ServeOptions"]
