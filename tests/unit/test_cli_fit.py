"""The fit at the CLI and library edge: `fit vllm` (JSON names, table, exit codes), `models --json` and `options`
with `fits` per vLLM model, and `up --dry-run` showing the fit. Facts from fixtures/fit; no network, no engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import nemoclaw_runtime as nr
from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.fit import DirectoryModelSource, ModelFacts, hub
from tests.helpers.docker_env import free_port

ROOT = Path(__file__).resolve().parents[2]
GPUS = ROOT / "fixtures" / "gpu"
FACTS = DirectoryModelSource(ROOT / "fixtures" / "fit")
STABLE = ["model", "weights_bytes", "kv_bytes_per_token", "overhead_bytes", "budget_bytes", "max_model_len",
          "max_model_len_fit", "fits", "tensor_parallel_size", "gpus", "reasons", "assumptions"]


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")  # nothing here needs an engine
    monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(free_port()))
    monkeypatch.setenv("NEMOCLAW_OLLAMA_PORT", str(free_port()))
    monkeypatch.setattr(hub, "default_model_source", lambda settings, **kw: FACTS)


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str, *args: str,
        **env: str) -> tuple[int, str, str]:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPUS / f"{snapshot}.json"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- fit -----------------------------------------------------------------------------------------------------------


def test_fit_json_has_the_stable_names_and_exit_0(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "h100_x8", "fit", "vllm", "--model", "qwen3.6-27b", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert list(document)[:len(STABLE)] == STABLE
    assert document["fits"] is True and document["decision"] == "fits" and document["gpus"] == [0]
    assert document["model"] == "Qwen/Qwen3.6-27B-FP8" and document["max_model_len"] == 262144
    assert document["weights_bytes"] > 28 * 1024**3 and document["kv_bytes_per_token"] == 65536


def test_fit_that_does_not_fit_is_exit_3_with_the_result(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", "fit", "vllm", "--model", "qwen3.6-27b", "--json")
    assert code == 3
    document = json.loads(out)
    assert document["fits"] is False and document["decision"] == "does-not-fit" and document["shortfall_bytes"] > 0
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", "fit", "vllm", "--model", "qwen3.6-35b-a3b-nvfp4", "--json")
    assert code == 3 and json.loads(out)["decision"] == "refused"


def test_fit_overrides_and_auto(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["fit", "vllm", "--model", "Qwen/Qwen3-8B", "--json"]
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", *args, "--max-model-len", "40960")
    assert code == 3 and json.loads(out)["decision"] == "reduce-context"
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", *args, "--max-model-len", "auto")
    document = json.loads(out)
    assert code == 0 and document["auto_context"] and 4096 <= document["max_model_len_fit"] < 40960
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", *args)  # a bare HF id: the context comes from the fit
    assert code == 0 and json.loads(out)["auto_context"]
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", *args, "--kv-cache-dtype", "fp8",
                       "--gpu-memory-utilization", "0.95", "--max-model-len", "40960")
    document = json.loads(out)
    assert code == 0 and document["kv_cache_dtype"] == "fp8" and document["gpu_memory_utilization"] == 0.95


def test_fit_table_reads_in_five_seconds(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(capsys, monkeypatch, "h100_x8", "fit", "vllm", "--model", "deepseek-r1-distill-70b",
                       HF_TOKEN="hf_test_token_123")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("✓ deepseek-ai/DeepSeek-R1-Distill-Llama-70B fits with "
                                             "--tensor-parallel-size 4 on GPUs 0,1,2,3")
    assert any(line.split()[:1] == ["needed"] and "per GPU × 4" in line for line in lines)
    assert any(line.startswith("  GPUs 0,1,2,3,4,5,6,7: NVIDIA H100 80GB HBM3") for line in lines)


@pytest.mark.parametrize(("args", "error"), [
    (["--model", "qwen3.6-27b", "--max-model-len", "lots"], "InvalidInput"),
    (["--model", "qwen3.6-27b", "--gpus", "none"], "InvalidInput"),
    (["--model", "qwen3.6-27b", "--gpus", "9"], "InvalidInput"),
    (["--model", "llama-9000"], "UnknownModel"),
    (["--model", "hf:not an id"], "InvalidInput"),
])
def test_fit_bad_input_is_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                 args: list[str], error: str) -> None:
    code, out, err = cli(capsys, monkeypatch, "h100_x8", "fit", "vllm", *args, "--json")
    assert code == 2 and json.loads(out)["error"] == error and "Traceback" not in err


def test_fit_of_another_runtime_is_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli(capsys, monkeypatch, "h100_x8", "fit", "nim", "--model", "x")
    assert code == 2 and "fit judges vLLM only" in err


def test_fit_unknown_is_exit_0_with_a_warning(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "h100_x8", "fit", "vllm", "--model", "nemotron-3-nano-4b")
    assert code == 0 and out.startswith("? Cannot tell whether") and "Warning: Cannot tell whether" in err


def test_fit_is_in_the_command_table_and_help_explains_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    assert " fit " in capsys.readouterr().out
    assert run(["fit", "--help"]) == 0
    text = capsys.readouterr().out
    assert "What is measured" in text and "What is assumed" in text and "Exit codes" in text


def test_library_fit_takes_its_collaborators() -> None:
    inventory = GpuInventory.from_snapshot(json.loads((GPUS / "dgx_spark.json").read_text()))
    result = nr.fit("qwen3.6-35b-a3b-nvfp4", settings=Settings.from_env({}), inventory=inventory,
                    model_source=FACTS)
    assert result.fits and nr.refusal(result) is None and result.to_dict()["min_compute_capability"] == "12.1"


# --- models and options ------------------------------------------------------------------------------------------


def test_models_json_has_fits_per_vllm_model(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "rtx_4090", "models", "--runtime", "vllm", "--all", "--json",
                         HF_TOKEN="hf_test_token_123")
    assert code == 0, err
    entries = {e["slug"]: e for e in json.loads(out)["vllm"]["entries"]}
    assert entries["qwen3.6-27b"]["fits"] is False and "does not fit" in entries["qwen3.6-27b"]["fit_reason"]
    assert entries["nemotron-3-nano-4b"]["fits"] is None and entries["nemotron-3-nano-4b"]["fit_reason"]
    assert entries["qwen3.6-35b-a3b-nvfp4"]["fits"] is False
    assert entries["qwen3.6-35b-a3b-nvfp4"]["fit"]["decision"] == "refused"
    code, out, _ = cli(capsys, monkeypatch, "h100_x8", "models", "--runtime", "vllm", "--all", "--json")
    entries = {e["slug"]: e for e in json.loads(out)["vllm"]["entries"]}
    assert entries["qwen3.6-27b"]["fits"] is True
    assert entries["deepseek-r1-distill-70b"]["fits"] is True
    assert entries["deepseek-r1-distill-70b"]["fit"]["tensor_parallel_size"] == 4
    code, out, _ = cli(capsys, monkeypatch, "h100_x8", "models", "--runtime", "vllm", "--all")
    assert code == 0 and "fits (tp 4)" in out and "fit unknown" in out


def test_models_fits_are_null_with_the_reason_when_the_hub_cannot_be_asked(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "default_model_source",
                        lambda settings, **kw: hub.HubModelSource(settings, offline=True, **kw))
    code, out, err = cli(capsys, monkeypatch, "h100_x8", "models", "--runtime", "vllm", "--json",
                         HF_HUB_OFFLINE="1")
    assert code == 0 and "Traceback" not in err
    for entry in json.loads(out)["vllm"]["entries"]:
        assert entry["fits"] is None and "offline" in entry["fit_reason"]


class SlowSource:
    def facts(self, model_id: str, *, revision: str | None = None) -> ModelFacts:
        import time

        time.sleep(2)
        return ModelFacts(model_id)


def test_models_stay_bounded_when_the_hub_hangs() -> None:
    import time

    inventory = GpuInventory.from_snapshot(json.loads((GPUS / "h100_x8.json").read_text()))
    from nemoclaw_runtime.registry import load_registry
    from nemoclaw_runtime.runtimes.fit.verdicts import judge_models

    started = time.monotonic()
    verdicts = judge_models(load_registry().vllm_models, inventory, Settings.from_env({}), source=SlowSource(),
                            timeout_s=0.3)
    assert time.monotonic() - started < 1.5  # in parallel, one deadline
    assert verdicts["qwen3.6-27b"].fits is None and "did not answer within 0.3 s" in (verdicts["qwen3.6-27b"].reason
                                                                                       or "")
    assert verdicts["deepseek-v4-flash"].fits is False  # refused from the inventory alone


def test_options_carry_fits_for_the_install_entry(tmp_path: Path) -> None:
    inventory = GpuInventory.from_snapshot(json.loads((GPUS / "dgx_spark.json").read_text()))
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))) as http:
        menu = nr.local_options(Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_VLLM_PORT": str(free_port()),
                                                   "NEMOCLAW_OLLAMA_PORT": str(free_port()),
                                                   "DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"}),
                                inventory=inventory, http=http, which=lambda name: None, model_source=FACTS)
    install = menu.get("install-vllm")
    assert install is not None
    fits: dict[str, Any] = {m.id: (m.fits, m.fit_reason) for m in install.models}
    assert fits["qwen3.6-35b-a3b-nvfp4"][0] is True and fits["qwen3.6-27b"][0] is True
    assert fits["deepseek-r1-distill-70b"][0] is False and "does not fit" in fits["deepseek-r1-distill-70b"][1]
    assert fits["nemotron-3-nano-4b"][0] is None and fits["nemotron-3-nano-4b"][1]  # no config.json recorded
    assert install.to_dict()["models"][0]["fit_reason"]


# --- up --dry-run -----------------------------------------------------------------------------------------------


def test_up_dry_run_shows_the_fit(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "h100_x8", "up", "vllm", "--model", "qwen3.6-27b", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["fit"]["decision"] == "fits"
    code, out, _ = cli(capsys, monkeypatch, "h100_x8", "up", "vllm", "--model", "qwen3.6-27b", "--dry-run")
    assert "  fit:       fits · GPU 0 · tp 1 ·" in out


def test_up_dry_run_refuses_with_exit_3(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(capsys, monkeypatch, "rtx_4090", "up", "vllm", "--model", "qwen3.6-27b", "--dry-run", "--json")
    assert code == 3 and json.loads(out)["error"] == "InsufficientResources"
    code, out, err = cli(capsys, monkeypatch, "rtx_4090", "up", "vllm", "--model", "qwen3.6-27b", "--dry-run",
                         "--no-fit-check")
    assert code == 0 and "Warning: --no-fit-check" in err
    code, _, err = cli(capsys, monkeypatch, "rtx_4090", "up", "vllm", "--model", "qwen3.6-35b-a3b-nvfp4",
                       "--dry-run")
    assert code == 3 and "GPU 0 (NVIDIA GeForce RTX 4090) has compute capability 8.9" in err


@pytest.mark.parametrize("share", ["inf", "nan", "0", "1.5", "٠.٩", "1e400"])
def test_fit_gpu_memory_utilization_is_a_finite_ascii_share(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch, share: str) -> None:
    code, _, err = cli(capsys, monkeypatch, "h100_x8", "fit", "vllm", "--model", "qwen3.6-27b",
                       f"--gpu-memory-utilization={share}")
    assert code == 2 and "--gpu-memory-utilization" in err and "Traceback" not in err


@pytest.mark.parametrize("options", [
    {"model": "acme/tiny\x1b[2J"},
    {"model": "acme/\u202etiny"},
    {"kv_cache_dtype": "fp8\n--trust-remote-code"},
    {"gpu_memory_utilization": float("nan")},
    {"gpu_memory_utilization": float("inf")},
    {"gpu_memory_utilization": 0},
    {"gpu_memory_utilization": 1.5},
    {"gpu_memory_utilization": "٠.٩"},
])
def test_library_fit_checks_its_input_first(monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]) -> None:
    """The library's fit checks like make_request does, before any GPU is read or anything fetched."""
    from nemoclaw_runtime import api
    from nemoclaw_runtime.kernel.errors import InvalidInput

    def no_gpus(*_: Any, **__: Any) -> Any:
        raise AssertionError("the GPUs were read before the input was checked")

    monkeypatch.setattr(api, "detect_gpus", no_gpus)
    options.setdefault("model", "qwen3.6-27b")
    with pytest.raises(InvalidInput):
        nr.fit(settings=Settings.from_env({}), model_source=FACTS, **options)
