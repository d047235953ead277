"""How close is the fit engine to vLLM's own figures?

For every model under fixtures/fit/ it prints our ``weights_bytes`` and ``kv_bytes_per_token`` (one GPU, the KV
dtype the registry entry asks for, else ``auto``) next to:

* weights: vLLM's own ``Model loading took X GiB`` where a public log of that checkpoint (or of one with the
  identical architecture and quantisation) exists, else the published stored size — with where each came from;
* KV per token: vLLM's formula (kv_cache_interface: ``2 × kv_heads × head_size × dtype`` per full-attention layer,
  ``(kv_lora_rank + qk_rope_head_dim) × dtype`` per MLA layer; sliding-window and Mamba layers do not grow),
  written out again here from the raw config, independently of runtimes/fit;

as ratios (targets: weights within 2 %, KV per token exact). Then the published start-up outcomes it can be held
to ("never a false fits"), and the decision for every registry model on every replayed GPU fixture.

    python bench/bench_fit.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nemoclaw_runtime.gpu import GpuInventory  # noqa: E402
from nemoclaw_runtime.registry import load_registry  # noqa: E402
from nemoclaw_runtime.runtimes.fit import (  # noqa: E402
    DirectoryModelSource,
    ServeOptions,
    kv_dtype_bytes,
    plan_fit,
)

GIB = 1024**3
FIXTURES = ROOT / "fixtures" / "fit"
GPU_FIXTURES = ROOT / "fixtures" / "gpu"

#: Published weight figures: (GiB, where it comes from, independent of our fixture's own source?).
PUBLISHED_WEIGHTS: dict[str, tuple[float, str, bool]] = {
    "meta-llama/Llama-3.1-8B-Instruct": (14.9888, "vLLM log: 'Loading model weights took 14.9888 GB'", True),
    "Qwen/Qwen3.6-27B-FP8": (28.43, "vLLM log: Qwen3.8-27B-FP8 (same arch + FP8 layout), vision loaded", True),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": (141e9 / GIB, "NemoClaw catalog download 141 GB", True),
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2": (16.57, "reference stored size (= fixture)", False),
    "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8": (4.92, "reference stored size (= fixture)", False),
    "nvidia/Qwen3.6-35B-A3B-NVFP4": (23.5e9 / GIB, "NemoClaw catalog download 23.5 GB (= fixture)", False),
    "deepseek-ai/DeepSeek-V4-Flash": (352.4e9 / GIB, "NemoClaw catalog 352.4 GB (disagrees with headers)", True),
    "google/gemma-3-27b-it": (27_432_406_640 * 2 / GIB, "model card 27.4B params × BF16", True),
    "Qwen/Qwen3-8B": (8_190_735_360 * 2 / GIB, "model card 8.2B params × BF16", True),
}

#: Published start-up outcomes: (model, GPU total MiB, gmu, max_model_len, vLLM's KV pool in tokens, source).
#: vLLM: 22.07 GiB × 0.9 = 19.86 GiB; weights 14.99, non-torch 0.05, activations 0.22 → KV 4.60 GiB
#: = 37,683 tokens of 128 KiB; it refused 131072.
PUBLISHED_OUTCOMES = [
    ("meta-llama/Llama-3.1-8B-Instruct", 22600, 0.9, 131072, 37683,
     "vLLM log on a 22.07 GiB GPU: KV cache 4.60 GiB, 131072 refused"),
    ("meta-llama/Llama-3.1-8B-Instruct", 81040, 0.9, 131072, 449986,
     "vLLM log on a 79.14 GiB GPU: KV cache 54.93 GiB"),
]


def vllm_formula_kv_per_token(config: dict[str, Any], kv_dtype: str) -> int | None:
    """vLLM's per-token KV of the layers that grow with the context, from the raw config (one GPU)."""
    cfg = dict(config.get("text_config") or config)
    for key in ("torch_dtype", "dtype"):
        cfg.setdefault(key, config.get(key))
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    b = kv_dtype_bytes(kv_dtype, 4 if dtype == "float32" else 2)
    layers = int(cfg["num_hidden_layers"])
    if "compress_ratios" in cfg:
        return None  # DeepSeek V4: no closed formula published
    if cfg.get("kv_lora_rank"):
        return int(layers * (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]) * b)
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    per_layer = 2 * kv_heads * head * b
    if "hybrid_override_pattern" in cfg:
        attention = str(cfg["hybrid_override_pattern"]).count("*")
    elif isinstance(cfg.get("layer_types"), list):
        attention = sum(1 for t in cfg["layer_types"] if t == "full_attention")
    elif str(cfg.get("model_type", "")).startswith("gemma3"):
        attention = layers // int(cfg.get("sliding_window_pattern") or 6)
    else:
        attention = layers
    return int(attention * per_layer)


def main() -> int:
    source = DirectoryModelSource(FIXTURES)
    registry = {m.hf_id: m for m in load_registry().vllm_models}
    models = sorted(p.name.replace("__", "/", 1) for p in FIXTURES.iterdir() if p.is_dir())
    ok = True

    print("Weights and KV per token (one GPU)")
    head = (f"{'model':44} {'ours GiB':>9} {'vLLM/pub':>9} {'ratio':>7}  {'KV dtype':8} {'ours B/tok':>10} "
            f"{'vLLM B/tok':>10} {'ratio':>6}  weights source / published figure")
    print(head)
    print("-" * len(head))
    for model in models:
        facts = source.facts(model)
        entry = registry.get(model)
        kv_dtype = ServeOptions.from_argv(entry.serve_argv()).kv_cache_dtype if entry else "auto"
        ours_w = facts.weights.total_bytes / GIB if facts.weights else None
        pub = PUBLISHED_WEIGHTS.get(model)
        w_ratio = ours_w / pub[0] if ours_w and pub else None
        ours_kv = vllm_kv = None
        if facts.config is not None:
            options = ServeOptions(kv_cache_dtype=kv_dtype)
            result = plan_fit(facts, _one_big_gpu(), options, max_model_len=4096)
            ours_kv = result.kv_bytes_per_token
            vllm_kv = vllm_formula_kv_per_token(dict(facts.config), kv_dtype)
        kv_ratio = ours_kv / vllm_kv if ours_kv and vllm_kv else None
        if kv_ratio is not None and kv_ratio != 1.0:
            ok = False
        if w_ratio is not None and pub and pub[2] and abs(w_ratio - 1) > 0.02 and "disagrees" not in pub[1]:
            ok = False
        src = facts.weights.source if facts.weights else "unknown"
        print(f"{model:44} {_f(ours_w):>9} {_f(pub[0] if pub else None):>9} {_r(w_ratio):>7}  {kv_dtype:8} "
              f"{_i(ours_kv):>10} {_i(vllm_kv):>10} {_r(kv_ratio):>6}  {src}; {pub[1] if pub else '-'}")

    print()
    print("Published start-up outcomes (never a false 'fits'; our KV pool must not exceed vLLM's)")
    for model, total_mib, gmu, asked, vllm_pool, where in PUBLISHED_OUTCOMES:
        result = plan_fit(source.facts(model), _one_gpu(total_mib), ServeOptions(gpu_memory_utilization=gmu),
                          max_model_len=asked)
        free = result.budget_bytes - (result.weights_bytes or 0) - result.overhead_bytes - result.kv_fixed_bytes
        ours_pool = max(0, free) // (result.kv_bytes_per_token or 1)
        vllm_fits = vllm_pool >= asked
        bad = (result.fits and not vllm_fits) or ours_pool > vllm_pool
        ok = ok and not bad
        print(f"  {model} @ {asked} on {total_mib} MiB x {gmu}: ours fits={result.fits}, KV pool {ours_pool:,} tokens "
              f"({ours_pool / vllm_pool:.2f} of vLLM's {vllm_pool:,}); vLLM fits={vllm_fits} -> "
              f"{'OK' if not bad else 'FALSE FIT'} [{where}]")

    print()
    print("Registry models on the replayed GPU fixtures (registry flags)")
    hosts = ["dgx_spark", "dgx_station", "h100_x8", "rtx_4090", "mixed"]
    print(f"{'slug':26} " + " ".join(f"{h:>22}" for h in hosts))
    for entry in load_registry().vllm_models:
        cells = []
        for host in hosts:
            inv = GpuInventory.from_snapshot(json.loads((GPU_FIXTURES / f"{host}.json").read_text()))
            r = plan_fit(source.facts(entry.hf_id), inv, ServeOptions.from_argv(entry.serve_argv()))
            if r.fits:
                cells.append(f"fits tp{r.tensor_parallel_size} {_ctx(r.max_model_len_fit)}")
            elif r.decision == "reduce-context":
                cells.append(f"ctx {_ctx(r.max_model_len_fit)}")
            else:
                cells.append(r.decision)
        print(f"{entry.slug:26} " + " ".join(f"{c:>22}" for c in cells))
    print()
    print("result:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


def _one_big_gpu() -> GpuInventory:
    return _one_gpu(4 * 1024 * 1024)


def _one_gpu(total_mib: int) -> GpuInventory:
    return GpuInventory.from_snapshot({
        "schema": 1, "machine": {"arch": "x86_64", "product_name": "bench", "memory_total_mib": 65536,
                                 "memory_available_mib": 60000},
        "driver_version": "570", "gpus": [{"index": 0, "name": "NVIDIA bench GPU", "uuid": "GPU-bench",
                                           "memory_total_mib": total_mib, "memory_free_mib": total_mib,
                                           "pci_device_id": None, "mig_enabled": False,
                                           "compute_capability": "12.1"}]})


def _f(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "-"


def _r(x: float | None) -> str:
    return f"{x:.3f}" if x is not None else "-"


def _i(x: int | None) -> str:
    return f"{x:,}" if x is not None else "-"


def _ctx(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n) if n else "0"


if __name__ == "__main__":
    sys.exit(main())
