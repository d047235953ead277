"""The fit decision (runtimes/fit/engine.py) against the replayed GPU fixtures: DGX Spark, DGX Station, 8×H100, a
24 GB card, mixed GPUs, MIG, no GPU — and the registry's own models from fixtures/fit/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, NoSuitableGpu
from nemoclaw_runtime.registry import load_registry
from nemoclaw_runtime.runtimes.fit import (
    DECISION_DOES_NOT_FIT,
    DECISION_FITS,
    DECISION_REDUCE_CONTEXT,
    DECISION_REFUSED,
    DECISION_TENSOR_PARALLEL,
    DECISION_UNKNOWN,
    DirectoryModelSource,
    FitResult,
    ModelFacts,
    ServeOptions,
    WeightsFacts,
    plan_fit,
    refusal,
)

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "fixtures" / "gpu"
SOURCE = DirectoryModelSource(ROOT / "fixtures" / "fit")
GIB = 1024**3
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
R1_70B = "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"
STABLE = {"model", "weights_bytes", "kv_bytes_per_token", "overhead_bytes", "budget_bytes", "max_model_len",
          "max_model_len_fit", "fits", "tensor_parallel_size", "gpus", "reasons", "assumptions"}


def snapshot(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GPU / f"{name}.json").read_text())
    return data


def inventory(name: str, mutate: Any = None) -> GpuInventory:
    data = copy.deepcopy(snapshot(name))
    if mutate is not None:
        mutate(data)
    return GpuInventory.from_snapshot(data)


def fit(model: str, host: str, *argv: str, **kw: Any) -> FitResult:
    return plan_fit(SOURCE.facts(model), inventory(host), ServeOptions.from_argv(argv), **kw)


# --- 1. fits as asked -----------------------------------------------------------------------------------------


def test_llama_8b_fits_a_24gb_card_at_8k() -> None:
    result = fit(LLAMA_8B, "rtx_4090", "--max-model-len", "8192")

    assert result.decision == DECISION_FITS and result.fits
    assert (result.tensor_parallel_size, result.gpus) == (1, (0,))
    assert result.budget_bytes == int(24564 * 1024**2 * 0.9)
    assert result.kv_bytes_per_token == 131072
    assert result.needed_bytes is not None and result.needed_bytes <= result.budget_bytes
    assert result.needed_bytes >= result.weights_bytes + result.overhead_bytes + 8192 * 131072  # type: ignore[operator]
    assert result.max_model_len_fit > 8192
    assert refusal(result) is None
    assert result.serve_flags() == ("--max-model-len", "8192", "--tensor-parallel-size", "1")


def test_to_dict_carries_the_stable_names() -> None:
    doc = fit(LLAMA_8B, "rtx_4090", "--max-model-len", "8192").to_dict()

    assert STABLE <= set(doc)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["gpus"] == [0] and doc["weights_bytes"] == 8_030_261_248 * 2


def test_one_gpu_is_picked_by_free_memory() -> None:
    def busy_first(data: dict[str, Any]) -> None:
        data["gpus"][0]["memory_free_mib"] = 60000  # another process holds 20 GiB on GPU 0

    result = plan_fit(SOURCE.facts(LLAMA_8B), inventory("h100_x8", busy_first), ServeOptions())

    assert result.fits and result.gpus == (1,)  # GPU 0 cannot pass vLLM's free-memory check at 0.9
    assert any("GPU 0" in a and "free memory" in a for a in result.assumptions)


def test_a_requested_gpu_set_is_respected() -> None:
    assert fit(LLAMA_8B, "h100_x8", "--max-model-len", "8192", gpus=[5]).gpus == (5,)
    with pytest.raises(InvalidInput, match="No GPU with index 9"):
        fit(LLAMA_8B, "h100_x8", gpus=[9])


# --- 2. a shorter context ---------------------------------------------------------------------------------------


def test_llama_8b_at_128k_on_a_24gb_card_needs_a_shorter_context() -> None:
    result = fit(LLAMA_8B, "rtx_4090", "--max-model-len", "131072")

    assert result.decision == DECISION_REDUCE_CONTEXT and not result.fits
    assert 4096 <= result.max_model_len_fit < 131072 and result.max_model_len_fit % 256 == 0
    assert "--max-model-len" in result.reasons[0]
    # the proposed context fits, one more step of 256 does not
    at_fit = fit(LLAMA_8B, "rtx_4090", max_model_len=result.max_model_len_fit)
    beyond = fit(LLAMA_8B, "rtx_4090", max_model_len=result.max_model_len_fit + 256)
    assert at_fit.fits and not beyond.fits
    error = refusal(result)
    assert isinstance(error, InsufficientResources) and error.exit_code == 3
    assert f"--max-model-len {result.max_model_len_fit}" in (error.remedy or "")
    assert result.serve_flags()[:2] == ("--max-model-len", str(result.max_model_len_fit))


def test_published_24gb_outcome_is_never_a_false_fit() -> None:
    """vLLM's log on a 22.07 GiB card at 0.9: weights 14.99 GiB, non-torch 0.05, activations 0.22 → 4.60 GiB of
    KV cache, so 131072 tokens (16 GiB of KV) were refused and at most 37,683 tokens fit."""
    def card(data: dict[str, Any]) -> None:
        data["gpus"][0].update(memory_total_mib=22600, memory_free_mib=22400)

    result = plan_fit(SOURCE.facts(LLAMA_8B), inventory("rtx_4090", card), ServeOptions(max_model_len=131072))

    assert not result.fits
    assert 0 < result.max_model_len_fit <= 37683


# --- 3. tensor parallelism --------------------------------------------------------------------------------------


def test_r1_distill_70b_spreads_over_the_h100s() -> None:
    entry = load_registry().vllm_model("deepseek-r1-distill-70b")
    result = plan_fit(SOURCE.facts(entry.hf_id), inventory("h100_x8"), ServeOptions.from_argv(entry.serve_argv()))

    assert result.decision == DECISION_TENSOR_PARALLEL and result.fits
    assert result.tensor_parallel_size == 4
    assert result.gpus == (0, 1, 2, 3)  # the fixture's GPUs with the most free memory
    assert result.max_model_len == 32768
    assert result.budget_bytes == 4 * int(81559 * 1024**2 * 0.7)
    assert result.kv_bytes_per_token == 80 * 2 * 8 * 128 * 2  # summed over the 4 GPUs (2 KV heads each)


def test_a_requested_tensor_parallel_size_is_respected() -> None:
    result = fit(R1_70B, "h100_x8", "--gpu-memory-utilization", "0.7", "--tensor-parallel-size", "2",
                 "--max-model-len", "32768")

    assert result.decision == DECISION_DOES_NOT_FIT and result.tensor_parallel_size == 2
    assert result.shortfall_bytes > 0 and len(result.gpus) == 2


def test_tensor_parallelism_only_across_gpus_of_one_model() -> None:
    result = fit(R1_70B, "mixed", "--max-model-len", "32768", "--gpu-memory-utilization", "0.7")

    assert not result.fits
    assert set(result.gpus) <= {0, 2}  # the two H100s; never the A100 beside them
    assert result.shortfall_bytes > 0
    assert any("short by" in r for r in result.reasons)


def test_a_reduced_context_still_names_the_tensor_parallel_alternative() -> None:
    result = fit(LLAMA_8B, "h100_x8", "--gpu-memory-utilization", "0.25", "--max-model-len", "131072")

    assert result.decision == DECISION_REDUCE_CONTEXT
    assert result.alternatives and result.alternatives[0]["tensor_parallel_size"] >= 2
    assert "--tensor-parallel-size" in result.reasons[0]


# --- 4. not on this host ----------------------------------------------------------------------------------------


def test_r1_distill_70b_does_not_fit_a_spark() -> None:
    result = fit(R1_70B, "dgx_spark", "--gpu-memory-utilization", "0.7", "--max-model-len", "32768")

    assert result.decision == DECISION_DOES_NOT_FIT and not result.fits
    assert result.max_model_len_fit == 0
    assert result.shortfall_bytes > (131 - 83) * GIB
    assert any("weights alone" in r for r in result.reasons)
    error = refusal(result)
    assert isinstance(error, InsufficientResources)
    assert error.details["shortfall_bytes"] == result.shortfall_bytes


def test_weights_known_but_config_unknown_is_never_a_fit() -> None:
    huge = ModelFacts("acme/huge", weights=WeightsFacts(10**13, "file-sizes"), reasons=("config.json unknown",))
    small = ModelFacts("acme/small", weights=WeightsFacts(10**9, "file-sizes"), reasons=("config.json unknown",))

    assert plan_fit(huge, inventory("h100_x8"), max_model_len=4096).decision == DECISION_DOES_NOT_FIT
    unknown = plan_fit(small, inventory("h100_x8"), max_model_len=4096)
    assert unknown.decision == DECISION_UNKNOWN and not unknown.fits
    assert refusal(unknown) is None
    assert "config.json unknown" in unknown.reasons


def test_registry_nano_4b_has_no_sourced_config_and_stays_unknown() -> None:
    result = fit("nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8", "rtx_4090")

    assert result.decision == DECISION_UNKNOWN and not result.fits
    assert result.weights_bytes == round(4.92 * GIB)


# --- compute capability -----------------------------------------------------------------------------------------


def test_nvfp4_model_is_refused_on_a_station_naming_the_gpus() -> None:
    entry = load_registry().vllm_model("qwen3.6-35b-a3b-nvfp4")
    result = plan_fit(SOURCE.facts(entry.hf_id), inventory("dgx_station"), ServeOptions.from_argv(entry.serve_argv()))

    assert result.decision == DECISION_REFUSED and not result.fits
    assert result.refused_gpus == (0, 1)
    assert "12.1" in result.reasons[0] and "GPU 0 (NVIDIA GB300)" in result.reasons[0] and "10.3" in result.reasons[0]
    error = refusal(result)
    assert isinstance(error, NoSuitableGpu) and error.exit_code == 3


def test_nvfp4_model_fits_the_spark_it_is_made_for() -> None:
    entry = load_registry().vllm_model("qwen3.6-35b-a3b-nvfp4")
    result = plan_fit(SOURCE.facts(entry.hf_id), inventory("dgx_spark"), ServeOptions.from_argv(entry.serve_argv()))

    assert result.fits and result.max_model_len == 262144
    assert result.kv_bytes_per_token == 10 * 2 * 2 * 256  # fp8 KV; no MTP draft layer since NemoClaw #7127


def test_a_gpu_below_the_minimum_is_left_out_when_another_qualifies() -> None:
    result = fit(LLAMA_8B, "mixed", "--max-model-len", "8192", min_compute_capability=(8, 9))

    assert result.fits and result.gpus in ((0,), (2,))
    assert result.refused_gpus == (1,)


def test_deepseek_v4_flash_on_the_station_gb300() -> None:
    entry = load_registry().vllm_model("deepseek-v4-flash")
    result = plan_fit(SOURCE.facts(entry.hf_id), inventory("dgx_station"), ServeOptions.from_argv(entry.serve_argv()))

    assert result.fits and result.gpus == (0,)
    assert any("DeepSeek-V4" in a for a in result.assumptions)


# --- memory rules -----------------------------------------------------------------------------------------------


def test_spark_budget_is_host_memory_and_its_free_check_the_available_memory() -> None:
    ok = fit(LLAMA_8B, "dgx_spark", "--gpu-memory-utilization", "0.4", "--max-model-len", "8192")
    assert ok.fits and ok.budget_bytes == int(121000 * 1024**2 * 0.4)

    busy = fit(LLAMA_8B, "dgx_spark", "--gpu-memory-utilization", "0.95", "--max-model-len", "8192")
    assert not busy.fits and busy.decision == DECISION_DOES_NOT_FIT
    assert any("available host memory" in r and "--gpu-memory-utilization 0.90" in r for r in busy.reasons)


def test_mig_gpu_uses_its_smallest_instance_and_says_so() -> None:
    result = fit(LLAMA_8B, "a100_mig", "--max-model-len", "8192")

    assert result.gpu_budgets[0].budget_bytes == int(19968 * 1024**2 * 0.9)
    assert any("MIG mode" in a and "smallest of 2" in a for a in result.assumptions)


def test_no_gpu_is_refused() -> None:
    result = fit(LLAMA_8B, "no_gpu")

    assert result.decision == DECISION_REFUSED and "No NVIDIA GPU" in result.reasons[0]
    assert isinstance(refusal(result), NoSuitableGpu)


def test_overhead_is_stated_as_an_estimate_and_can_be_given() -> None:
    estimated = fit(LLAMA_8B, "rtx_4090", "--max-model-len", "8192")
    assert any("estimate" in a for a in estimated.assumptions)

    given = fit(LLAMA_8B, "rtx_4090", "--max-model-len", "8192", overhead_bytes=GIB)
    assert given.overhead_bytes == GIB


# --- never a false "fits" ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["dgx_spark", "dgx_station", "h100_x8", "rtx_4090", "mixed", "a100_mig"])
def test_every_registry_model_on_every_host_is_consistent(host: str) -> None:
    for entry in load_registry().vllm_models:
        result = plan_fit(SOURCE.facts(entry.hf_id), inventory(host), ServeOptions.from_argv(entry.serve_argv()))
        if result.fits:
            assert result.needed_bytes is not None and result.needed_bytes <= result.budget_bytes
            assert result.weights_bytes is not None and result.weights_bytes < result.budget_bytes
            assert result.max_model_len_fit >= (result.max_model_len or 0)
        else:
            assert result.reasons
        assert json.loads(json.dumps(result.to_dict()))["model"] == entry.hf_id
