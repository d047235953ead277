"""The fit for a group of alike hosts (runtimes/fit/group.py): two DGX Sparks (tensor across hosts), two 8×H100
hosts (tensor within, pipeline across), two DGX Stations, explicit layouts, does-not-fit with numbers, a reduced
context, unknown facts and how many hosts a model needs — from the real configs of fixtures/fit/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, NoSuitableGpu
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.runtimes.fit import (
    DECISION_DOES_NOT_FIT,
    DECISION_FITS,
    DECISION_REDUCE_CONTEXT,
    DECISION_REFUSED,
    DECISION_UNKNOWN,
    DirectoryModelSource,
    GroupFit,
    ModelFacts,
    ServeOptions,
    WeightsFacts,
    group_refusal,
    hosts_needed,
    plan_fit,
    plan_group_fit,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = DirectoryModelSource(ROOT / "fixtures" / "fit")
GIB, MIB = 1024**3, 1024**2
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
R1_70B = "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"  # 64 heads, 8 KV heads, 80 layers, bf16: 131.4 GiB
R1 = "deepseek-ai/DeepSeek-R1"  # MLA, 61 layers, FP8: 641 GiB
KIMI = "moonshotai/Kimi-K2-Instruct"
NANO_4B = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"  # no config.json recorded
SPARK_BUDGET = int(121000 * MIB * 0.9)  # unified: the host's memory, one GPU
H100_BUDGET = int(81559 * MIB * 0.9)
GB300_BUDGET = int(284208 * MIB * 0.9)


def inventory(name: str) -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads((ROOT / "fixtures" / "gpu" / f"{name}.json").read_text()))


def group(model: str, host: str, nodes: int, *argv: str,
          min_compute_capability: tuple[int, int] | None = None) -> GroupFit:
    return plan_group_fit(SOURCE.facts(model), inventory(host), nodes, ServeOptions.from_argv(argv),
                          min_compute_capability=min_compute_capability)


def layout(fit: GroupFit) -> tuple[int, int, int]:
    return fit.tensor_parallel_size, fit.pipeline_parallel_size, fit.gpus_per_node


# --- the layouts --------------------------------------------------------------------------------------------------


def test_two_sparks_split_a_70b_model_by_tensor_parallelism_across_the_hosts() -> None:
    fit = group(R1_70B, "dgx_spark", 2)

    assert fit.decision == DECISION_FITS and fit.fits
    assert layout(fit) == (2, 1, 1) and fit.gpus == (0,)
    assert fit.serve_flags() == ("--tensor-parallel-size", "2", "--pipeline-parallel-size", "1")
    assert fit.budget_bytes_per_gpu == SPARK_BUDGET
    assert fit.weights_bytes == 70_553_706_496 * 2
    # per GPU: half the weights + 2 × (8/2 KV heads) × 128 × 2 bytes × 80 layers × 131072 tokens = 20 GiB + overhead
    overhead = fit.needed_bytes_per_gpu - math.ceil(fit.weights_bytes / 2) - 20 * GIB  # type: ignore[operator]
    assert GIB // 2 <= overhead <= 6 * GIB
    assert fit.reasons[0].startswith(f"{R1_70B} fits 2 hosts × 1 GPU (tensor 2 × pipeline 1) at --max-model-len "
                                     f"131072: {format_bytes(fit.needed_bytes_per_gpu)} of 106 GiB per GPU")
    # one Spark alone cannot hold it
    assert group(R1_70B, "dgx_spark", 1).decision == DECISION_DOES_NOT_FIT


def test_three_sparks_pipeline_when_the_heads_do_not_divide_by_three() -> None:
    fit = group(R1_70B, "dgx_spark", 3)

    assert layout(fit) == (1, 3, 1) and fit.fits
    assert any("does not divide the heads" in a for a in fit.assumptions)


def test_two_eight_gpu_hosts_tensor_within_and_pipeline_across() -> None:
    fit = group(R1, "h100_x8", 2)

    assert fit.decision == DECISION_FITS and fit.fits
    assert layout(fit) == (8, 2, 8) and fit.gpus == tuple(range(8))
    assert fit.serve_flags() == ("--tensor-parallel-size", "8", "--pipeline-parallel-size", "2")
    assert fit.budget_bytes_per_gpu == H100_BUDGET
    # the weights over 16 GPUs; the MLA cache (576 bf16 elements × 61 layers a token, not split by tensor
    # parallelism) over the 2 pipeline stages
    kv_per_stage = 576 * 2 * 61 * 163840 // 2
    overhead = fit.needed_bytes_per_gpu - math.ceil(fit.weights_bytes / 16) - kv_per_stage  # type: ignore[operator]
    assert GIB // 2 <= overhead <= 6 * GIB
    assert any("pipeline parallelism splits the layers" in a for a in fit.assumptions)
    assert group(R1, "h100_x8", 1).decision == DECISION_DOES_NOT_FIT


def test_two_stations_pipeline_over_their_gb300s_and_leave_the_other_card_out() -> None:
    fit = group(R1_70B, "dgx_station", 2)

    assert layout(fit) == (1, 2, 1) and fit.gpus == (0,) and fit.fits
    assert fit.budget_bytes_per_gpu == GB300_BUDGET
    assert any(a.startswith("GPU 1 (NVIDIA RTX PRO 6000") and "left out" in a for a in fit.assumptions)


def test_a_model_that_fits_one_host_anyway_fits_the_group_and_says_so() -> None:
    fit = group(LLAMA_8B, "dgx_spark", 2)

    assert fit.decision == DECISION_FITS and layout(fit) == (2, 1, 1)
    assert fit.max_model_len == fit.max_model_len_fit == 131072
    assert "fits one such host alone too (tensor 1" in fit.reasons[1]
    assert fit.hosts_needed is None and group_refusal(fit) is None


# --- explicit layouts ---------------------------------------------------------------------------------------------


def test_a_layout_in_the_flags_is_respected() -> None:
    pipelined = group(R1_70B, "dgx_spark", 2, "--tensor-parallel-size", "1", "--pipeline-parallel-size", "2")
    assert layout(pipelined) == (1, 2, 1) and pipelined.fits
    assert pipelined.serve_flags() == ("--tensor-parallel-size", "1", "--pipeline-parallel-size", "2")

    half = group(R1, "h100_x8", 2, "-tp", "4", "-pp", "2")
    assert layout(half) == (4, 2, 4) and half.gpus == (0, 1, 2, 3)
    assert "the layout given uses 8 of the group's 16 GPUs" in half.assumptions


@pytest.mark.parametrize(("host", "argv", "needle"), [
    ("dgx_spark", ("-tp", "4"), "needs 4 GPUs; 2 host(s) × 1 GPU(s) offer 2"),
    ("h100_x8", ("-tp", "16"), "spans more than one host's 8 GPUs"),
    ("h100_x8", ("-tp", "3", "-pp", "2"), "does not divide"),
])
def test_a_layout_the_group_cannot_run_is_invalid_input(host: str, argv: tuple[str, ...], needle: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        group(R1_70B, host, 2, *argv)
    assert needle in str(caught.value) and caught.value.remedy


def test_no_hosts_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="at least one host"):
        group(LLAMA_8B, "dgx_spark", 0)


# --- does not fit, reduced context --------------------------------------------------------------------------------


def test_does_not_fit_two_stations_with_the_numbers_and_the_hosts_that_would_do() -> None:
    fit = group(R1, "dgx_station", 2)

    assert fit.decision == DECISION_DOES_NOT_FIT and not fit.fits
    assert layout(fit) == (1, 2, 1)
    assert fit.needed_bytes_per_gpu is not None and fit.needed_bytes_per_gpu > fit.budget_bytes_per_gpu
    short = fit.needed_bytes_per_gpu - GB300_BUDGET
    assert fit.reasons[0] == (f"{R1} does not fit 2 hosts × 1 GPU (tensor 1 × pipeline 2): needs 329 GiB per GPU at "
                              f"163840 tokens, budget 250 GiB — short by {format_bytes(short)} per GPU")
    assert fit.hosts_needed == 3
    assert any(r.startswith("3 such hosts would hold it at --max-model-len 163840 (tensor 1 × pipeline 3)")
               for r in fit.reasons)
    assert fit.serve_flags() == ()
    error = group_refusal(fit)
    assert isinstance(error, InsufficientResources) and "3 such hosts" in (error.remedy or "")


def test_no_group_of_sparks_holds_kimi_k2() -> None:
    fit = group(KIMI, "dgx_spark", 2)

    assert fit.decision == DECISION_DOES_NOT_FIT and fit.max_model_len_fit == 0 and fit.hosts_needed is None
    assert "the weights alone" in fit.reasons[1]
    assert "no group of up to 8 such hosts holds it at --max-model-len 131072" in fit.reasons


def test_reduce_context_the_largest_that_fits() -> None:
    fit = group(R1_70B, "dgx_spark", 2, "--gpu-memory-utilization", "0.7")

    assert fit.decision == DECISION_REDUCE_CONTEXT and not fit.fits
    n = fit.max_model_len_fit
    assert 4096 <= n < 131072 and n % 256 == 0
    assert fit.reasons[0].startswith(f"{R1_70B} fits 2 hosts × 1 GPU (tensor 2 × pipeline 1) only with "
                                     f"--max-model-len {n} (asked 131072): needs 88.4 GiB per GPU at 131072 tokens, "
                                     "budget 82.7 GiB")
    assert fit.serve_flags()[-2:] == ("--max-model-len", str(n))
    # the largest: n fits, n + 256 does not
    assert group(R1_70B, "dgx_spark", 2, "--gpu-memory-utilization", "0.7", "--max-model-len", str(n)).fits
    assert not group(R1_70B, "dgx_spark", 2, "--gpu-memory-utilization", "0.7", "--max-model-len", str(n + 256)).fits
    assert isinstance(group_refusal(fit), InsufficientResources)

    auto = group(R1_70B, "dgx_spark", 2, "--gpu-memory-utilization", "0.7", "--max-model-len", "auto")
    assert auto.decision == DECISION_REDUCE_CONTEXT and auto.fits and auto.max_model_len_fit == n
    assert group_refusal(auto) is None


# --- unknown, refused -------------------------------------------------------------------------------------------


def test_unknown_facts_give_unknown_with_the_layout_never_an_exception() -> None:
    bare = plan_group_fit(ModelFacts("acme/mystery"), inventory("dgx_spark"), 2)
    assert bare.decision == DECISION_UNKNOWN and not bare.fits and bare.needed_bytes_per_gpu is None
    assert bare.serve_flags() == ("--tensor-parallel-size", "2", "--pipeline-parallel-size", "1")
    assert group_refusal(bare) is None

    no_config = group(NANO_4B, "h100_x8", 2)  # weights known, config not
    assert no_config.decision == DECISION_UNKNOWN and layout(no_config) == (8, 2, 8)
    assert any("no config.json recorded" in r for r in no_config.reasons)


def test_weights_alone_too_big_for_the_group_is_does_not_fit_even_without_a_config() -> None:
    facts = ModelFacts("acme/huge", weights=WeightsFacts(10**13, "file-sizes"), reasons=("config.json unknown",))
    fit = plan_group_fit(facts, inventory("dgx_spark"), 2)

    assert fit.decision == DECISION_DOES_NOT_FIT and "its weights alone need" in fit.reasons[0]


def test_no_usable_gpu_is_refused() -> None:
    fit = group(LLAMA_8B, "no_gpu", 2)
    assert fit.decision == DECISION_REFUSED and fit.serve_flags() == () and layout(fit) == (0, 0, 0)
    assert isinstance(group_refusal(fit), NoSuitableGpu)

    old = group(LLAMA_8B, "dgx_spark", 2, min_compute_capability=(13, 0))
    assert old.decision == DECISION_REFUSED and "compute capability 12.1 is below the 13.0" in old.reasons[0]


# --- how many hosts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "host", "most", "expected"), [
    (R1, "dgx_station", 8, 3),
    (R1, "dgx_station", 2, None),
    (KIMI, "dgx_station", 8, 4),
    (R1, "h100_x8", 8, 2),
    (LLAMA_8B, "dgx_spark", 8, 2),
    (KIMI, "dgx_spark", 8, None),
    (NANO_4B, "dgx_spark", 8, None),  # unknown never counts as a fit
])
def test_hosts_needed(model: str, host: str, most: int, expected: int | None) -> None:
    assert hosts_needed(SOURCE.facts(model), inventory(host), most=most) == expected


def test_the_group_agrees_with_the_single_host_engine_on_one_gpu() -> None:
    single = plan_fit(SOURCE.facts(R1_70B), inventory("dgx_station"), ServeOptions(), gpus=[0])
    one = group(R1_70B, "dgx_station", 1)

    assert one.fits and single.fits and single.needed_bytes is not None  # a judged fit, not two unknowns
    assert one.budget_bytes_per_gpu == single.budget_bytes
    assert one.needed_bytes_per_gpu == single.needed_bytes
    assert one.max_model_len_fit == single.max_model_len_fit


def test_to_dict_is_json() -> None:
    doc = group(R1, "dgx_station", 2).to_dict()

    assert json.loads(json.dumps(doc)) == doc
    assert doc["tensor_parallel_size"] == 1 and doc["pipeline_parallel_size"] == 2 and doc["hosts_needed"] == 3
    assert isinstance(doc["reasons"], list) and doc["decision"] == DECISION_DOES_NOT_FIT


def test_the_layout_without_facts_follows_the_same_rule() -> None:
    """``up --nodes --gpus none`` (nothing to judge) splits as the group fit would with the heads unknown."""
    from nemoclaw_runtime.kernel.errors import InvalidInput
    from nemoclaw_runtime.runtimes.fit import ServeOptions, choose_layout

    assert choose_layout(ServeOptions(), 2, 1) == (2, 1)  # one GPU a host: tensor across the hosts
    assert choose_layout(ServeOptions(), 2, 8) == (8, 2)  # several: tensor within, pipeline across
    assert choose_layout(ServeOptions(), 3, 6) == (4, 3)  # a power of two of one host's GPUs
    assert choose_layout(ServeOptions.from_argv(("vllm", "serve", "m", "--pipeline-parallel-size", "2")), 2, 1) \
        == (1, 2)
    with pytest.raises(InvalidInput, match="needs 16 GPUs"):
        choose_layout(ServeOptions.from_argv(("vllm", "serve", "m", "--tensor-parallel-size", "8",
                                              "--pipeline-parallel-size", "2")), 2, 1)
