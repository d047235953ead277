"""KV cache per token, per architecture, as vLLM allocates it (runtimes/fit/architecture.py), from the real configs
kept in fixtures/fit/ and a few synthetic ones."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.runtimes.fit import ArchitectureError, KvCache, kv_dtype_bytes, parse_architecture
from nemoclaw_runtime.runtimes.fit.architecture import COMPRESSED, FULL, MLA, NONE, SLIDING, STATE, Architecture

FIT_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fit"


def config(model: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIT_FIXTURES / model.replace("/", "__") / "config.json").read_text())
    return data


def cache(arch: Architecture, kv_dtype: str = "auto", **kw: Any) -> KvCache:
    return KvCache(arch, kv_dtype_bytes(kv_dtype, arch.dtype_bytes), **kw)


# --- dense GQA ---------------------------------------------------------------------------------------------------


def test_llama_8b_dense_gqa() -> None:
    arch = parse_architecture(config("meta-llama/Llama-3.1-8B-Instruct"))
    assert arch.counts() == {FULL: 32}
    assert arch.max_position_embeddings == 131072
    kv = cache(arch)
    assert kv.bytes_per_token(1) == 2 * 8 * 128 * 2 * 32  # 128 KiB, vLLM's figure for Llama 3.1 8B
    assert kv.fixed_bytes(1, 131072) == 0
    assert kv.bytes_for(1, 100) == 131072 * 112  # rounded up to whole 16-token blocks


def test_qwen3_8b_has_explicit_head_dim() -> None:
    arch = parse_architecture(config("Qwen/Qwen3-8B"))
    assert cache(arch).bytes_per_token(1) == 36 * 2 * 8 * 128 * 2
    assert arch.counts() == {FULL: 36}  # use_sliding_window false: the sliding_window key is ignored


def test_head_dim_defaults_to_hidden_over_heads() -> None:
    arch = parse_architecture({"num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
                               "hidden_size": 512, "torch_dtype": "float32"})
    assert arch.layers[0].head_size == 64
    assert cache(arch).bytes_per_token(1) == 2 * 2 * 2 * 64 * 4  # float32 model → 4-byte KV


def test_missing_heads_are_named() -> None:
    with pytest.raises(ArchitectureError, match="num_attention_heads"):
        parse_architecture({"num_hidden_layers": 2, "hidden_size": 64})


# --- KV dtype and tensor parallelism ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [("auto", 2.0), ("fp8", 1.0), ("fp8_e4m3", 1.0), ("fp8_e5m2", 1.0),
                                                ("bfloat16", 2.0), ("float32", 4.0)])
def test_kv_cache_dtype_bytes(name: str, expected: float) -> None:
    assert kv_dtype_bytes(name, 2) == expected


def test_fp8_kv_halves_the_cache() -> None:
    arch = parse_architecture(config("meta-llama/Llama-3.1-8B-Instruct"))
    assert cache(arch, "fp8").bytes_per_token(1) == cache(arch).bytes_per_token(1) // 2


@pytest.mark.parametrize(("tp", "per_gpu"), [(1, 131072), (2, 65536), (4, 32768), (8, 16384), (16, 16384)])
def test_tensor_parallel_splits_kv_heads_and_replicates_below_one(tp: int, per_gpu: int) -> None:
    kv = cache(parse_architecture(config("meta-llama/Llama-3.1-8B-Instruct")))  # 8 KV heads
    assert kv.bytes_per_token(tp) == per_gpu  # 16 GPUs: each still holds one whole KV head


def test_valid_tensor_parallel_sizes() -> None:
    arch = parse_architecture(config("meta-llama/Llama-3.1-8B-Instruct"))  # 32 heads, 8 KV heads
    assert [tp for tp in (1, 2, 3, 4, 8, 16, 32, 64) if arch.valid_tensor_parallel(tp)] == [1, 2, 4, 8, 16, 32]


# --- MLA -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["deepseek-ai/DeepSeek-R1", "moonshotai/Kimi-K2-Instruct"])
def test_mla_one_latent_per_layer_not_split(model: str) -> None:
    arch = parse_architecture(config(model))
    assert arch.counts() == {MLA: 61}
    kv = cache(arch)
    assert kv.bytes_per_token(1) == 61 * (512 + 64) * 2  # no ×2 for K and V
    assert kv.bytes_per_token(8) == kv.bytes_per_token(1)  # the latent is replicated on every rank
    assert cache(arch, "fp8").bytes_per_token(1) == 61 * 576


def test_deepseek_v32_sparse_mla_uses_fp8_ds_mla_and_indexer_keys() -> None:
    cfg = config("deepseek-ai/DeepSeek-R1") | {"index_topk": 2048, "index_head_dim": 128}
    arch = parse_architecture(cfg)
    kv = KvCache(arch, 1.0, fp8_ds_mla=True)
    assert kv.bytes_per_token(1) == 61 * (656 + 128 + 4)


# --- sliding window ---------------------------------------------------------------------------------------------------


def test_gemma3_layer_pattern_from_text_config() -> None:
    arch = parse_architecture(config("google/gemma-3-27b-it"))
    assert arch.counts() == {FULL: 10, SLIDING: 52}  # every 6th layer global
    assert [layer.kind for layer in arch.layers[:6]] == [SLIDING] * 5 + [FULL]
    assert arch.multimodal and arch.max_position_embeddings == 131072 and arch.vocab_size == 262208


def test_sliding_layers_stop_growing_at_the_window() -> None:
    arch = parse_architecture(config("google/gemma-3-27b-it"))
    kv = cache(arch, max_num_batched_tokens=2048)
    per_full_layer = 2 * 16 * 128 * 2
    assert kv.bytes_per_token(1) == 10 * per_full_layer  # only the global layers grow with the context
    window_tokens = min(1024 - 1 + 2048, 131072)
    fixed = 52 * (math.ceil(window_tokens / 16) + 1) * 16 * per_full_layer
    assert kv.fixed_bytes(1, 131072) == fixed
    assert kv.fixed_bytes(1, 65536) == fixed  # beyond the window the sliding part is constant
    assert kv.fixed_bytes(1, 512) < fixed  # a context shorter than the window keeps only itself


def test_mistral_style_sliding_window_on_every_layer() -> None:
    arch = parse_architecture({"model_type": "mistral", "num_hidden_layers": 32, "num_attention_heads": 32,
                               "num_key_value_heads": 8, "hidden_size": 4096, "sliding_window": 4096})
    assert arch.counts() == {SLIDING: 32}
    assert cache(arch).bytes_per_token(1) == 0


def test_layer_types_list() -> None:
    arch = parse_architecture({"num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
                               "hidden_size": 512, "sliding_window": 128,
                               "layer_types": ["sliding_attention", "full_attention"] * 2})
    assert [layer.kind for layer in arch.layers] == [SLIDING, FULL, SLIDING, FULL]


# --- hybrid Mamba / linear attention -----------------------------------------------------------------------------


def test_nemotron_h_only_attention_layers_grow() -> None:
    arch = parse_architecture(config("nvidia/NVIDIA-Nemotron-Nano-9B-v2"))
    assert arch.counts() == {STATE: 27, FULL: 4, NONE: 25}
    kv = cache(arch)
    assert kv.bytes_per_token(1) == 4 * 2 * 8 * 128 * 2
    conv = 3 * (128 * 80 + 2 * 8 * 128) * 2
    ssm = 128 * 80 * 128 * 2
    assert kv.fixed_bytes(1, 4096) == kv.fixed_bytes(1, 131072) == 27 * (conv + ssm)
    assert kv.fixed_bytes(2, 4096) == 27 * (conv + ssm) // 2  # the state's heads split over the ranks


def test_qwen3_6_linear_attention_layers_hold_a_float32_state() -> None:
    arch = parse_architecture(config("Qwen/Qwen3.6-27B-FP8"))  # multimodal: the text_config is read
    assert arch.counts() == {FULL: 16, STATE: 48}
    kv = cache(arch)
    assert kv.bytes_per_token(1) == 16 * 2 * 4 * 256 * 2
    conv = 3 * (2 * 16 * 128 + 48 * 128) * 2
    ssm = 48 * 128 * 128 * 4  # mamba_ssm_dtype float32
    assert kv.fixed_bytes(1, 1) == 48 * (conv + ssm)


def test_jamba_attention_period() -> None:
    arch = parse_architecture({"model_type": "jamba", "num_hidden_layers": 16, "num_attention_heads": 32,
                               "num_key_value_heads": 8, "hidden_size": 4096, "attn_layer_period": 8,
                               "attn_layer_offset": 4, "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2})
    assert [i for i, layer in enumerate(arch.layers) if layer.kind == FULL] == [4, 12]
    kv = cache(arch)
    assert kv.bytes_per_token(1) == 2 * 2 * 8 * 128 * 2
    assert kv.fixed_bytes(1, 10) == 14 * (3 * 8192 + 8192 * 16) * 2


# --- DeepSeek V4 compressed attention ----------------------------------------------------------------------------


def test_deepseek_v4_compressed_attention_is_an_estimate() -> None:
    arch = parse_architecture(config("deepseek-ai/DeepSeek-V4-Flash"))
    assert arch.counts() == {COMPRESSED: 43}
    assert any("estimate" in note for note in arch.notes)
    kv = cache(arch, "fp8")
    ratio4 = sum(1 for layer in arch.layers if layer.compress_ratio == 4)
    ratio128 = sum(1 for layer in arch.layers if layer.compress_ratio == 128)
    assert (ratio4, ratio128) == (21, 20)
    assert kv.bytes_per_token(1) == math.ceil(ratio4 * (512 / 4 + 132 / 4) + ratio128 * 512 / 128)
    assert kv.fixed_bytes(1, 1 << 20) == kv.fixed_bytes(1, 1 << 16)  # the 128-token windows are constant


# --- the largest context -----------------------------------------------------------------------------------------


def test_max_context_is_the_largest_multiple_that_fits() -> None:
    kv = cache(parse_architecture(config("meta-llama/Llama-3.1-8B-Instruct")))
    budget = 131072 * 10_000
    found = kv.max_context(1, budget, 131072)
    assert found % 256 == 0
    assert kv.bytes_for(1, found) <= budget < kv.bytes_for(1, found + 256)
    assert kv.max_context(1, 0, 131072) == 0
    assert kv.max_context(1, 10**15, 131072) == 131072
