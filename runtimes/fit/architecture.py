"""What a model's ``config.json`` says about its KV cache, layer by layer, as vLLM (v1) allocates it.

:func:`parse_architecture` reads the language model's config (``text_config`` of a multimodal config) into a tuple
of :class:`LayerSpec` — one per decoder layer — and :class:`KvCache` prices them for a tensor-parallel size, a KV
dtype and a context length. The rules are vLLM's ``kv_cache_interface`` specs:

- full attention: ``2 × kv_heads_per_gpu × head_size × dtype_bytes`` per token per layer, where
  ``kv_heads_per_gpu = max(1, num_key_value_heads // tp)`` (heads are replicated when fewer than ``tp``);
- MLA (``kv_lora_rank`` present: DeepSeek V2/V3/R1, Kimi K2): one latent of ``kv_lora_rank + qk_rope_head_dim``
  elements per token per layer, no ×2, not split by tensor parallelism; DeepSeek V3.2's ``fp8_ds_mla`` layout is
  656 bytes, plus its sparse-attention indexer keys (``index_head_dim`` fp8 + a 4-byte scale);
- sliding window: at most ``min(window - 1 + max_num_batched_tokens, max_model_len)`` tokens (+ one block);
- Mamba / SSM / linear attention (Nemotron-H ``M``, Jamba, Qwen3-Next/3.5 ``linear_attention``): a constant state
  per sequence, split over the tensor-parallel ranks;
- DeepSeek V4 compressed attention (``compress_ratios``): a sliding window plus one compressed entry per
  ``ratio`` tokens (and the ratio-4 indexer keys) — an estimate from the config, stated in the assumptions.

Everything is per GPU: the caller sums over the GPUs of a placement.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

FULL = "full_attention"
SLIDING = "sliding_attention"
MLA = "mla"
COMPRESSED = "compressed_attention"
STATE = "state"  # Mamba / SSM / gated-delta-net: a constant per sequence
NONE = "none"  # a layer with no cache (Nemotron-H MLP / MoE layers)

#: Bytes of one element per torch dtype name (config ``torch_dtype`` / ``dtype`` / ``--dtype``).
TORCH_DTYPE_BYTES: dict[str, int] = {
    "float32": 4, "float": 4, "fp32": 4, "float16": 2, "half": 2, "fp16": 2, "bfloat16": 2, "bf16": 2,
    "float64": 8, "double": 8,
}

#: The most decoder layers (``num_hidden_layers``, a hybrid pattern's length, MTP layers) a config may declare: the
#: largest published models have a few hundred; more is a broken or hostile config, refused before pricing.
MAX_LAYERS = 10_000
FP8_DS_MLA_BYTES = 656  # vLLM's fp8_ds_mla page: 512 fp8 + 4×4 scales + 64 bf16 rope + padding, per token
INDEXER_ENTRY_EXTRA = 4  # a float32 scale beside the fp8 indexer key
DEFAULT_BLOCK_SIZE = 16

#: transformers' config-class defaults that published configs leave out (read when the key is absent).
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {"sliding_window_pattern": 6, "vocab_size": 262208, "max_position_embeddings": 131072},
    "gemma2": {"max_position_embeddings": 8192},
}


class ArchitectureError(ValueError):
    """A config this module cannot read a KV layout from; the message names the missing field."""


@dataclass(frozen=True)
class LayerSpec:
    """One decoder layer's cache. Fields not used by a kind stay 0."""

    kind: str
    num_kv_heads: int = 0
    head_size: int = 0
    window: int = 0  # sliding window (tokens); also the window of compressed-attention layers
    compress_ratio: int = 0  # compressed attention: one entry per `compress_ratio` tokens
    indexer_head_size: int = 0  # MLA sparse (V3.2) / V4 ratio-4 indexer keys
    state_elements: tuple[tuple[int, int, int], ...] = ()  # STATE: (elements, split_dim, dtype_bytes) per tensor


@dataclass(frozen=True)
class Architecture:
    """The KV-relevant facts of a model's config."""

    model_type: str
    layers: tuple[LayerSpec, ...]
    num_attention_heads: int
    num_key_value_heads: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    dtype: str
    max_position_embeddings: int | None
    mtp_layers: int
    multimodal: bool
    notes: tuple[str, ...] = ()

    @property
    def dtype_bytes(self) -> int:
        return TORCH_DTYPE_BYTES.get(self.dtype, 2)

    def counts(self) -> dict[str, int]:
        return dict(Counter(layer.kind for layer in self.layers))

    def describe(self) -> str:
        """E.g. ``32 layers: 32 full_attention`` or ``56 layers: 4 full_attention, 27 state, 25 none``."""
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts().items()))
        return f"{len(self.layers)} layers: {parts}"

    def valid_tensor_parallel(self, tp: int) -> bool:
        """vLLM's own checks: attention heads divide by ``tp``; KV heads divide by it or it by them."""
        if tp < 1 or self.num_attention_heads % tp:
            return False
        kv = self.num_key_value_heads
        return kv <= 0 or kv % tp == 0 or tp % kv == 0


# --- parsing ---------------------------------------------------------------------------------------------------


def text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language model's config: ``text_config`` (or ``llm_config``) of a multimodal config, else the config;
    top-level keys such as ``torch_dtype`` and ``quantization_config`` are kept as fallbacks."""
    for key in ("text_config", "llm_config", "language_config"):
        inner = config.get(key)
        if isinstance(inner, Mapping):
            merged = {k: v for k, v in config.items() if k not in (key, "vision_config")}
            merged.update(inner)
            return merged
    return dict(config)


def parse_architecture(config: Mapping[str, Any]) -> Architecture:
    """The KV layout of ``config``; raises :class:`ArchitectureError` when a field it needs is missing."""
    cfg = text_config(config)
    model_type = str(cfg.get("model_type") or config.get("model_type") or "")
    for key, value in _FAMILY_DEFAULTS.get(model_type, {}).items():
        cfg.setdefault(key, value)
    layers_n = _int(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    pattern = cfg.get("hybrid_override_pattern")
    longest = max(layers_n, len(pattern) if isinstance(pattern, str) else 0,
                  _opt_int(cfg, "num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers") or 0)
    if longest > MAX_LAYERS:
        raise ArchitectureError(f"the config declares {longest} layers, more than the {MAX_LAYERS} any model has")
    heads = _int(cfg, "num_attention_heads", "n_head", "num_heads")
    kv_heads = _opt_int(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv") or heads
    hidden = _opt_int(cfg, "hidden_size", "d_model", "n_embd") or 0
    head_dim = _opt_int(cfg, "head_dim", "attention_head_dim", "kv_channels") or (hidden // heads if heads else 0)
    dtype = _dtype(cfg, config)
    dtype_bytes = TORCH_DTYPE_BYTES.get(dtype, 2)
    notes: list[str] = []

    specs: list[LayerSpec]
    if isinstance(cfg.get("compress_ratios"), list):
        specs = _deepseek_v4(cfg, layers_n)
        notes.append("DeepSeek-V4 compressed attention priced from the config (sliding window + one entry per "
                     "compress ratio + indexer keys): an estimate, not vLLM's exact page layout")
    elif cfg.get("kv_lora_rank"):
        rope = _opt_int(cfg, "qk_rope_head_dim") or 64
        indexer = (_opt_int(cfg, "index_head_dim") or 128) if cfg.get("index_topk") else 0
        specs = [LayerSpec(MLA, 1, int(cfg["kv_lora_rank"]) + rope, indexer_head_size=indexer)] * layers_n
        kv_heads = 1  # one latent per token, never split across ranks
    elif isinstance(cfg.get("hybrid_override_pattern"), str):
        specs = _nemotron_h(cfg, kv_heads, head_dim, dtype_bytes)
    elif isinstance(cfg.get("layer_types"), list):
        specs = _layer_types(cfg, layers_n, kv_heads, head_dim, dtype_bytes)
    elif model_type == "jamba" or "attn_layer_period" in cfg:
        specs = _jamba(cfg, layers_n, kv_heads, head_dim, dtype_bytes)
    elif model_type in ("gemma2", "gemma3", "gemma3_text") and cfg.get("sliding_window"):
        period = 2 if model_type == "gemma2" else int(cfg.get("sliding_window_pattern")
                                                      or cfg.get("_sliding_window_pattern") or 6)
        full = LayerSpec(FULL, kv_heads, head_dim)
        sliding = LayerSpec(SLIDING, kv_heads, head_dim, window=int(cfg["sliding_window"]))
        specs = [full if (i + 1) % period == 0 else sliding for i in range(layers_n)]
    elif cfg.get("sliding_window") and cfg.get("use_sliding_window", True) is not False:
        specs = [LayerSpec(SLIDING, kv_heads, head_dim, window=int(cfg["sliding_window"]))] * layers_n
    else:
        specs = [LayerSpec(FULL, kv_heads, head_dim)] * layers_n
    if not specs:
        raise ArchitectureError("the config describes no decoder layers")
    for spec in specs:
        if spec.kind in (FULL, SLIDING, MLA, COMPRESSED) and (spec.head_size <= 0 or spec.num_kv_heads <= 0):
            raise ArchitectureError("the config gives no attention head size (head_dim / hidden_size)")

    mtp = _opt_int(cfg, "num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers") or 0
    intermediate = max(_opt_int(cfg, "intermediate_size", "ffn_hidden_size") or 0,
                       (_opt_int(cfg, "moe_intermediate_size") or 0) * (_opt_int(cfg, "num_experts_per_tok") or 1))
    return Architecture(
        model_type=model_type, layers=tuple(specs), num_attention_heads=heads, num_key_value_heads=kv_heads,
        hidden_size=hidden, intermediate_size=intermediate or 4 * hidden,
        vocab_size=_opt_int(cfg, "vocab_size", "padded_vocab_size") or 0, dtype=dtype,
        max_position_embeddings=_opt_int(cfg, "max_position_embeddings", "max_sequence_length", "seq_length",
                                         "n_positions", "max_seq_len"),
        mtp_layers=mtp, multimodal=isinstance(config.get("vision_config"), Mapping), notes=tuple(notes),
    )


def _nemotron_h(cfg: Mapping[str, Any], kv_heads: int, head_dim: int, dtype_bytes: int) -> list[LayerSpec]:
    """Nemotron-H: ``M`` Mamba-2, ``*`` attention, ``-`` MLP, ``E`` MoE (one character per layer)."""
    state = _mamba2_state(cfg, dtype_bytes)
    kinds = {"M": LayerSpec(STATE, state_elements=state), "*": LayerSpec(FULL, kv_heads, head_dim)}
    return [kinds.get(ch, LayerSpec(NONE)) for ch in str(cfg["hybrid_override_pattern"])]


def _layer_types(cfg: Mapping[str, Any], layers_n: int, kv_heads: int, head_dim: int,
                 dtype_bytes: int) -> list[LayerSpec]:
    """Generic ``layer_types`` lists (Gemma 3, gpt-oss, Qwen3-Next / Qwen3.5, ...)."""
    window = int(cfg.get("sliding_window") or 0)
    full = LayerSpec(FULL, kv_heads, head_dim)
    specs: list[LayerSpec] = []
    for name in list(cfg["layer_types"])[:layers_n]:
        kind = str(name).lower()
        if kind in ("sliding_attention", "sliding", "local", "local_attention", "chunked_attention") and window:
            specs.append(LayerSpec(SLIDING, kv_heads, head_dim, window=window))
        elif kind in ("linear_attention", "mamba", "mamba2", "ssm", "gated_delta_net", "conv"):
            specs.append(LayerSpec(STATE, state_elements=_linear_state(cfg, dtype_bytes)))
        else:
            specs.append(full)
    return specs


def _jamba(cfg: Mapping[str, Any], layers_n: int, kv_heads: int, head_dim: int, dtype_bytes: int) -> list[LayerSpec]:
    period = int(cfg.get("attn_layer_period") or 8)
    offset = int(cfg.get("attn_layer_offset") or 4)
    hidden = int(cfg.get("hidden_size") or 0)
    inner = int(cfg.get("mamba_expand") or 2) * hidden
    d_conv, d_state = int(cfg.get("mamba_d_conv") or 4), int(cfg.get("mamba_d_state") or 16)
    state = ((max(d_conv - 1, 0) * inner, inner, dtype_bytes), (inner * d_state, inner, dtype_bytes))
    return [LayerSpec(FULL, kv_heads, head_dim) if i % period == offset else LayerSpec(STATE, state_elements=state)
            for i in range(layers_n)]


def _mamba2_state(cfg: Mapping[str, Any], dtype_bytes: int) -> tuple[tuple[int, int, int], ...]:
    """Mamba-2 state: conv ``(kernel-1) × (inner + 2·groups·d_state)``, SSM ``heads × head_dim × d_state``."""
    heads = int(cfg.get("mamba_num_heads") or 0)
    head_dim = int(cfg.get("mamba_head_dim") or 0)
    hidden = int(cfg.get("hidden_size") or 0)
    inner = heads * head_dim or int(cfg.get("mamba_expand") or 2) * hidden
    d_state = int(cfg.get("ssm_state_size") or cfg.get("mamba_d_state") or 128)
    groups = int(cfg.get("n_groups") or cfg.get("mamba_n_groups") or 1)
    kernel = int(cfg.get("conv_kernel") or cfg.get("mamba_d_conv") or 4)
    ssm_bytes = _ssm_dtype_bytes(cfg, dtype_bytes)
    conv = (max(kernel - 1, 0) * (inner + 2 * groups * d_state), heads or 1, dtype_bytes)
    ssm = (inner * d_state, heads or 1, ssm_bytes)
    return conv, ssm


def _linear_state(cfg: Mapping[str, Any], dtype_bytes: int) -> tuple[tuple[int, int, int], ...]:
    """Gated DeltaNet (Qwen3-Next / Qwen3.5): conv over q, k, v and a ``value_heads × dk × dv`` recurrent state."""
    if not cfg.get("linear_num_value_heads"):
        return _mamba2_state(cfg, dtype_bytes)
    nk, nv = int(cfg.get("linear_num_key_heads") or 0), int(cfg["linear_num_value_heads"])
    dk, dv = int(cfg.get("linear_key_head_dim") or 128), int(cfg.get("linear_value_head_dim") or 128)
    kernel = int(cfg.get("linear_conv_kernel_dim") or 4)
    conv = (max(kernel - 1, 0) * (2 * nk * dk + nv * dv), nv, dtype_bytes)
    ssm = (nv * dk * dv, nv, _ssm_dtype_bytes(cfg, dtype_bytes))
    return conv, ssm


def _deepseek_v4(cfg: Mapping[str, Any], layers_n: int) -> list[LayerSpec]:
    head = int(cfg.get("head_dim") or 512)
    window = int(cfg.get("sliding_window") or 128)
    indexer = int(cfg.get("index_head_dim") or 128)
    ratios = [int(r) for r in cfg["compress_ratios"]][:layers_n]
    ratios += [0] * (layers_n - len(ratios))
    return [LayerSpec(COMPRESSED, 1, head, window=window, compress_ratio=r,
                      indexer_head_size=indexer if r == 4 else 0) for r in ratios]


def _ssm_dtype_bytes(cfg: Mapping[str, Any], default: int) -> int:
    name = cfg.get("mamba_ssm_cache_dtype") or cfg.get("mamba_ssm_dtype")
    return TORCH_DTYPE_BYTES.get(str(name), default) if name else default


def _dtype(cfg: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    for source in (cfg, config):
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if isinstance(value, str) and value.lower() in TORCH_DTYPE_BYTES:
                return value.lower()
    return "bfloat16"


def _int(cfg: Mapping[str, Any], *keys: str) -> int:
    value = _opt_int(cfg, *keys)
    if value is None:
        raise ArchitectureError(f"the config has no {keys[0]}")
    return value


def _opt_int(cfg: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# --- pricing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KvCache:
    """Prices an :class:`Architecture`'s cache for one GPU of a tensor-parallel group.

    ``kv_dtype_bytes`` is the size of one cache element (``auto`` → the model dtype, ``fp8*`` → 1); ``fp8_ds_mla``
    selects DeepSeek V3.2's 656-byte MLA page. ``extra_layers`` are draft (MTP) layers priced like the model's own.
    """

    arch: Architecture
    kv_dtype_bytes: float
    block_size: int = DEFAULT_BLOCK_SIZE
    max_num_batched_tokens: int = 8192
    fp8_ds_mla: bool = False
    extra_layers: tuple[LayerSpec, ...] = ()

    @property
    def all_layers(self) -> tuple[LayerSpec, ...]:
        return self.arch.layers + self.extra_layers

    @cached_property
    def _layer_counts(self) -> tuple[tuple[LayerSpec, int], ...]:
        """Each distinct layer kind with how many layers have it: pricing is per kind, not per layer."""
        return tuple(Counter(self.all_layers).items())

    def bytes_per_token(self, tp: int = 1) -> int:
        """Per GPU, the bytes each further token of context costs (layers whose cache grows with the context)."""
        return math.ceil(sum(n * self._per_token(layer, tp) for layer, n in self._layer_counts))

    def fixed_bytes(self, tp: int, context: int) -> int:
        """Per GPU, the part that does not grow with the context: SSM states and capped sliding windows."""
        return sum(n * self._fixed(layer, tp, context) for layer, n in self._layer_counts)

    def bytes_for(self, tp: int, context: int) -> int:
        """Per GPU, the cache one sequence of ``context`` tokens needs (rounded up to whole blocks)."""
        tokens = self._blocks(context) * self.block_size
        return math.ceil(self.bytes_per_token(tp) * tokens) + self.fixed_bytes(tp, context)

    def max_context(self, tp: int, kv_budget: int, ceiling: int, multiple: int = 256) -> int:
        """The largest context (a multiple of ``multiple``, at most ``ceiling``) whose cache fits ``kv_budget``."""
        if kv_budget <= 0:
            return 0
        low, high = 0, ceiling // multiple
        while low < high:
            mid = (low + high + 1) // 2
            if self.bytes_for(tp, mid * multiple) <= kv_budget:
                low = mid
            else:
                high = mid - 1
        if low * multiple == 0 and ceiling < multiple and self.bytes_for(tp, ceiling) <= kv_budget:
            return ceiling
        return low * multiple

    # --- per layer ---------------------------------------------------------------------------------------
    def _per_token(self, layer: LayerSpec, tp: int) -> float:
        b = self.kv_dtype_bytes
        if layer.kind == FULL:
            return 2 * kv_heads_per_gpu(layer.num_kv_heads, tp) * layer.head_size * b
        if layer.kind == MLA:
            latent = FP8_DS_MLA_BYTES if self.fp8_ds_mla else layer.head_size * b
            indexer = layer.indexer_head_size + INDEXER_ENTRY_EXTRA if layer.indexer_head_size else 0
            return latent + indexer
        if layer.kind == COMPRESSED and layer.compress_ratio > 0:
            keys = (layer.indexer_head_size + INDEXER_ENTRY_EXTRA) / 4 if layer.indexer_head_size else 0.0
            return layer.head_size * b / layer.compress_ratio + keys
        return 0.0

    def _fixed(self, layer: LayerSpec, tp: int, context: int) -> int:
        b = self.kv_dtype_bytes
        if layer.kind in (SLIDING, COMPRESSED):
            tokens = min(layer.window - 1 + self.max_num_batched_tokens, context)
            copies = 1 if layer.kind == COMPRESSED else 2 * kv_heads_per_gpu(layer.num_kv_heads, tp)
            per_token = layer.head_size * b * copies
            return math.ceil((self._blocks(tokens) + 1) * self.block_size * per_token)
        if layer.kind == STATE:
            return sum(math.ceil(elements / min(tp, split)) * nbytes
                       for elements, split, nbytes in layer.state_elements)
        return 0

    def _blocks(self, tokens: int) -> int:
        return -(-max(tokens, 0) // self.block_size)


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """vLLM: ``max(1, num_kv_heads // tp)`` — heads are replicated when there are fewer than GPUs."""
    return max(1, num_kv_heads // max(tp, 1))


def kv_dtype_bytes(kv_cache_dtype: str, model_dtype_bytes: int) -> float:
    """Bytes per cache element for ``--kv-cache-dtype``: ``auto`` = the model dtype, ``fp8*`` = 1."""
    name = (kv_cache_dtype or "auto").lower()
    if name.startswith("fp8") or name in ("int8", "fp8_ds_mla"):
        return 1.0
    if name in ("nvfp4", "fp4"):
        return 0.5 + 1 / 16  # 4 bits plus one fp8 scale per 16 elements
    if name in TORCH_DTYPE_BYTES:
        return float(TORCH_DTYPE_BYTES[name])
    return float(model_dtype_bytes)


__all__ = [
    "Architecture", "ArchitectureError", "FULL", "KvCache", "LayerSpec", "MAX_LAYERS", "MLA", "kv_dtype_bytes",
    "parse_architecture", "text_config",
]
