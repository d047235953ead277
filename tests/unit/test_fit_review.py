"""Review findings on the fit engine: flag parsing (ASCII, finite, vLLM's choices), the model's own maximum
context, tensor-parallel sizes vLLM refuses, ``--dtype float32`` and format_bytes in messages."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.checks import MAX_CONTEXT_LENGTH, check_context_length
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.units import format_bytes
from nemoclaw_runtime.runtimes.fit import (
    DECISION_DOES_NOT_FIT,
    DECISION_UNKNOWN,
    DirectoryModelSource,
    FitResult,
    ModelFacts,
    ServeOptions,
    WeightsFacts,
    plan_fit,
)
from nemoclaw_runtime.runtimes.fit.architecture import MAX_LAYERS

ROOT = Path(__file__).resolve().parents[2]
SOURCE = DirectoryModelSource(ROOT / "fixtures" / "fit")
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
QWEN3_8B = "Qwen/Qwen3-8B"


def _inventory(host: str) -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads((ROOT / "fixtures" / "gpu" / f"{host}.json").read_text()))


def fit(model: str, host: str, *argv: str, **kw: Any) -> FitResult:
    return plan_fit(SOURCE.facts(model), _inventory(host), ServeOptions.from_argv(argv), **kw)


@pytest.mark.parametrize(("flag", "raw"), [
    ("--max-num-seqs", "1.0e400"), ("--max-num-seqs", "٣"), ("--block-size", "１６"), ("--max-num-seqs", "1.5"),
    ("--gpu-memory-utilization", "٠.٥"), ("--gpu-memory-utilization", "nan"), ("--gpu-memory-utilization", "1e400"),
    ("--max-model-len", "1e400"), ("--max-model-len", "٣٢k"), ("--max-model-len", "1.5K"),
    ("--tensor-parallel-size", "99999999999999999999999"),
])
def test_bad_numbers_are_exit_2_naming_the_flag(flag: str, raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ServeOptions.from_argv([flag, raw])
    assert caught.value.exit_code == 2 and flag in caught.value.message


def test_context_lengths_read_as_vllm_reads_them() -> None:
    assert check_context_length("32k") == 32000 and check_context_length("32K") == 32768
    assert check_context_length("25.6k") == 25600 and check_context_length("1M") == 1024**2
    assert check_context_length(" 40960 ") == 40960 and check_context_length("auto", allow_auto=True) is None
    for bad in ("auto", "0", str(MAX_CONTEXT_LENGTH + 1), "32kk", True):
        with pytest.raises(InvalidInput):
            check_context_length(bad)


@pytest.mark.parametrize(("flag", "raw"), [("--kv-cache-dtype", "fp9"), ("--kv-cache-dtype", "FP8"),
                                           ("--dtype", "float64"), ("--dtype", "int8")])
def test_unknown_dtypes_are_exit_2(flag: str, raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ServeOptions.from_argv([flag, raw])
    assert caught.value.exit_code == 2 and flag in caught.value.message


def test_known_dtypes_are_accepted() -> None:
    opts = ServeOptions.from_argv(["--kv-cache-dtype", "fp8_e5m2", "--dtype", "bfloat16"])
    assert (opts.kv_cache_dtype, opts.dtype) == ("fp8_e5m2", "bfloat16")


def test_float32_on_a_16_bit_checkpoint_doubles_the_16_bit_weights() -> None:
    plain = fit(LLAMA_8B, "h100_x8", "--max-model-len", "8192")
    wide = fit(LLAMA_8B, "h100_x8", "--max-model-len", "8192", "--dtype", "float32")
    assert plain.weights_bytes and wide.weights_bytes and wide.weights_bytes > 1.9 * plain.weights_bytes
    assert any("float32" in a for a in wide.assumptions)
    assert wide.kv_bytes_per_token == 2 * (plain.kv_bytes_per_token or 0)


def test_a_context_above_the_models_maximum_does_not_fit() -> None:
    result = fit(QWEN3_8B, "h100_x8", "--max-model-len", "200000")
    assert result.decision == DECISION_DOES_NOT_FIT and not result.fits
    assert "40960" in result.reasons[0]


def test_the_models_maximum_bounds_the_fitted_context() -> None:
    result = fit(QWEN3_8B, "h100_x8", "--max-model-len", "40960")
    assert result.fits and result.max_model_len_fit == 40960
    small = fit(QWEN3_8B, "h100_x8", "--max-model-len", "1000")  # not a multiple of 256
    assert small.fits and small.max_model_len_fit >= 1000
    auto = fit(QWEN3_8B, "h100_x8", "--max-model-len", "auto")
    assert auto.max_model_len_fit <= 40960


def test_yarn_scaling_raises_the_maximum() -> None:
    result = fit("deepseek-ai/DeepSeek-R1", "h100_x8", "--max-model-len", "163840")
    assert not any("own maximum" in r for r in result.reasons)


def test_a_tensor_parallel_size_that_does_not_divide_the_heads_is_exit_2() -> None:
    with pytest.raises(InvalidInput) as caught:
        fit(LLAMA_8B, "h100_x8", "--max-model-len", "8192", "--tensor-parallel-size", "3")
    assert caught.value.exit_code == 2 and "32 attention heads" in caught.value.message


def test_messages_format_bytes_like_the_rest_of_the_cli() -> None:
    result = fit("deepseek-ai/DeepSeek-R1", "rtx_4090", "--max-model-len", "8192")
    assert f"needs {format_bytes(result.needed_bytes)} per GPU" in result.reasons[0]
    assert "needs 643 GiB per GPU" in result.reasons[0]  # kernel.units: no decimal from 100 of a unit on


def _huge(layers: int) -> dict[str, Any]:
    return {"model_type": "gemma3_text", "num_hidden_layers": layers, "num_attention_heads": 8,
            "num_key_value_heads": 4, "hidden_size": 512, "sliding_window": 128, "torch_dtype": "bfloat16",
            "max_position_embeddings": 131072}


@pytest.mark.parametrize("config", [_huge(10**6), _huge(10**100),
                                    {**_huge(4), "hybrid_override_pattern": "M*" * 10**6}])
def test_an_absurd_layer_count_is_unknown_with_the_reason_not_a_hang(config: dict[str, Any]) -> None:
    started = time.monotonic()
    facts = ModelFacts("acme/huge", None, config, WeightsFacts(10 * 1024**3, "declared"))
    result = plan_fit(facts, _inventory("h100_x8"), ServeOptions())
    assert time.monotonic() - started < 2
    assert result.decision == DECISION_UNKNOWN and not result.fits
    assert any("10000" in reason and "layers" in reason for reason in result.reasons), result.reasons


def test_a_deep_model_is_priced_by_layer_kind_quickly() -> None:
    started = time.monotonic()
    facts = ModelFacts("acme/deep", None, _huge(MAX_LAYERS), WeightsFacts(10 * 1024**3, "declared"))
    result = plan_fit(facts, _inventory("h100_x8"), ServeOptions.from_argv(["--max-model-len", "auto"]))
    assert time.monotonic() - started < 2 and result.max_model_len_fit > 0


def test_the_refusal_line_is_chosen_from_the_result_not_its_text() -> None:
    from nemoclaw_runtime.runtimes.drivers.vllm_fit import _refusal

    base = fit("deepseek-ai/DeepSeek-R1", "rtx_4090", "--max-model-len", "8192")
    priced = dataclasses.replace(base, reasons=("acme/tiny needs 900 MiB per GPU, budget 512 MiB", "more"))
    assert _refusal(priced).message == "acme/tiny needs 900 MiB per GPU, budget 512 MiB"
    unpriced = dataclasses.replace(priced, reasons=("No GPU can take acme/tiny", "GPU 0: busy"), needed_bytes=None)
    assert _refusal(unpriced).message == "No GPU can take acme/tiny: GPU 0: busy"


def test_the_up_plan_line_formats_bytes_with_the_kernel() -> None:
    from nemoclaw_runtime.cli.up import _fit_line

    line = _fit_line({"decision": "fits", "gpus": [0], "tensor_parallel_size": 1, "needed_bytes": 700 * 1024**2,
                      "budget_bytes": 150 * 1024**3, "max_model_len": 8192, "max_model_len_fit": 9000})
    assert "700 MiB of 150 GiB" in line


def test_one_largest_context_and_one_parser_everywhere() -> None:
    from nemoclaw_runtime.kernel.errors import InvalidSetting
    from nemoclaw_runtime.kernel.settings import MAX_CONTEXT_WINDOW, Settings
    from nemoclaw_runtime.runtimes.drivers.contract import MAX_CONTEXT, parse_max_model_len
    from nemoclaw_runtime.runtimes.server.probes import MAX_MODEL_LEN_CEILING

    assert MAX_CONTEXT == MAX_CONTEXT_WINDOW == MAX_MODEL_LEN_CEILING == MAX_CONTEXT_LENGTH
    assert parse_max_model_len("32k") == (32000, False) and parse_max_model_len("32K") == (32768, False)
    assert parse_max_model_len("auto") == (None, True)
    settings = Settings.from_env({"NEMOCLAW_VLLM_MAX_MODEL_LEN": "32K", "NEMOCLAW_CONTEXT_WINDOW": "8k"})
    assert (settings.vllm_max_model_len, settings.context_window) == ("32768", "8000")
    assert Settings.from_env({"NEMOCLAW_VLLM_MAX_MODEL_LEN": "AUTO"}).vllm_max_model_len == "auto"
    big = str(MAX_CONTEXT_LENGTH + 1)
    for variable in ("NEMOCLAW_VLLM_MAX_MODEL_LEN", "NEMOCLAW_CONTEXT_WINDOW"):
        with pytest.raises(InvalidSetting) as caught:
            Settings.from_env({variable: big})
        assert caught.value.exit_code == 2 and caught.value.details["variable"] == variable
    with pytest.raises(InvalidInput):
        parse_max_model_len(big)


def test_the_models_maximum_and_the_heads_are_checked_even_without_the_weights() -> None:
    facts = dataclasses.replace(SOURCE.facts(QWEN3_8B), weights=None)
    result = plan_fit(facts, _inventory("h100_x8"), ServeOptions.from_argv(["--max-model-len", "200000"]))
    assert result.decision == DECISION_DOES_NOT_FIT and "40960" in result.reasons[0]
    with pytest.raises(InvalidInput):
        plan_fit(facts, _inventory("h100_x8"), ServeOptions.from_argv(["--tensor-parallel-size", "3"]))
