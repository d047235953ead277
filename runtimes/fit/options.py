"""The ``vllm serve`` flags that change how much memory a model needs, read from an argv.

Only what the fit engine prices is read; everything else is ignored. As with vLLM's own parser the last
occurrence of a flag wins, and both ``--flag value`` and ``--flag=value`` spellings are accepted (vLLM also
accepts ``_`` for ``-`` in flag names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.checks import check_context_length, check_int, check_number
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.text import loads_json, shown

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
#: vLLM's choices for ``--kv-cache-dtype`` and ``--dtype``; anything else is exit 2 (vLLM would refuse it too,
#: and pricing it at the model dtype would be a guess).
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla")
MODEL_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
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
                kw["max_model_len"] = check_context_length(values["--max-model-len"], "--max-model-len")
        for flag, field in (("--tensor-parallel-size", "tensor_parallel_size"), ("-tp", "tensor_parallel_size"),
                            ("--pipeline-parallel-size", "pipeline_parallel_size"),
                            ("-pp", "pipeline_parallel_size"), ("--max-num-seqs", "max_num_seqs"),
                            ("--max-num-batched-tokens", "max_num_batched_tokens"), ("--block-size", "block_size")):
            if flag in values:
                kw[field] = _size(values[flag], flag)
        if "--kv-cache-dtype" in values:
            kw["kv_cache_dtype"] = _choice(values["--kv-cache-dtype"], "--kv-cache-dtype", KV_CACHE_DTYPES)
        if "--dtype" in values:
            kw["dtype"] = _choice(values["--dtype"], "--dtype", MODEL_DTYPES)
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
        data = loads_json(raw)
    except ValueError:  # JSONDecodeError or JsonTooDeep
        return None, 0
    if not isinstance(data, dict):
        return None, 0
    method = data.get("method")
    n = data.get("num_speculative_tokens")
    return (str(method).lower() if method else None), (int(n) if isinstance(n, int) and n > 0 else 0)


#: The largest value an integer flag (``--max-num-seqs``, ``--tensor-parallel-size``, ...) may take here; vLLM's own
#: limits are far below, this only keeps absurd values (and overflow) out of the arithmetic.
_MAX_FLAG_INT = 1 << 40


def _float(raw: str, flag: str) -> float:
    """A finite ASCII number (``1e400``, NaN and non-ASCII digits are exit 2, naming ``flag``)."""
    return check_number(raw, flag, low=-1e12, high=1e12, remedy=f"give {flag} a number, e.g. 0.9")


def _size(raw: str, flag: str) -> int:
    """A positive whole number in ASCII digits (``1.0e400``, ``1.5`` and non-ASCII digits are exit 2)."""
    return check_int(raw, flag, low=1, high=_MAX_FLAG_INT, remedy=f"give {flag} a positive whole number")


def _choice(raw: str, flag: str, choices: tuple[str, ...]) -> str:
    text = raw.strip()
    if text not in choices:  # vLLM's choices are case-sensitive
        raise InvalidInput(f"Invalid {flag} value {shown(raw)}: must be one of {', '.join(choices)}",
                           remedy=f"give {flag} one of {', '.join(choices)}", details={"option": flag})
    return text


def _bad(flag: str, raw: str, what: str) -> InvalidInput:
    return InvalidInput(f"Invalid {flag} value {raw!r}: must be {what}", remedy=f"give {flag} {what}",
                        details={"flag": flag})


__all__ = ["KV_CACHE_DTYPES", "MODEL_DTYPES", "SMALL_GPU_BYTES", "ServeOptions"]
