"""The Ollama driver's planning (pure: snapshot in, exact ContainerSpec out) and its model-selection rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry import load_registry
from nemoclaw_runtime.runtimes.docker.spec import LABEL_IMAGE, LABEL_MODEL, LABEL_RUNTIME, LABEL_SERVED_MODEL
from nemoclaw_runtime.runtimes.drivers.contract import make_request
from nemoclaw_runtime.runtimes.drivers.ollama import (
    DEFAULT_OLLAMA_IMAGE,
    ModelRules,
    OllamaDriver,
    OllamaPlan,
    choose_model,
    volume_for,
)
from nemoclaw_runtime.runtimes.pipeline import driver_for

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


def _inventory(name: str) -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads((GPU_FIXTURES / f"{name}.json").read_text()))


def _plan(fixture: str = "h100_x8", env: dict[str, str] | None = None, **request: Any) -> OllamaPlan:
    settings = Settings.from_env({"HOME": "/home/u", **(env or {})})
    return OllamaDriver().plan(make_request("ollama", **request), settings, _inventory(fixture))


# --- plan ------------------------------------------------------------------------------------------------------


def test_default_plan_is_exact() -> None:
    plan = _plan()
    spec = plan.spec
    assert (plan.runtime, plan.model, plan.served_model_id, plan.profile) == ("ollama", "auto", "auto", "linux-nvidia")
    assert spec.name == "nemoclaw-ollama" and spec.runtime == "ollama"
    assert spec.image == DEFAULT_OLLAMA_IMAGE == "docker.io/ollama/ollama:0.12.6"
    assert spec.command == () and spec.entrypoint is None  # the image's own `ollama serve`
    assert dict(spec.env) == {"OLLAMA_HOST": "0.0.0.0:11434"}
    assert [(m.source, m.target, m.kind) for m in spec.mounts] == [
        ("nemoclaw-ollama-models", "/root/.ollama", "volume")]
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in spec.ports] == [
        ("127.0.0.1", 11434, 11434, "tcp")]
    assert (str(spec.gpus), spec.restart_policy, spec.ipc_mode, spec.shm_size) == ("all", "unless-stopped", None, None)
    assert dict(spec.labels) == {LABEL_RUNTIME: "ollama", LABEL_IMAGE: DEFAULT_OLLAMA_IMAGE}
    assert plan.base_url == "http://127.0.0.1:11434/v1" and plan.port == 11434
    assert plan.ready_timeout_s == 300 and plan.validate and not plan.prefetch
    assert plan.volume == "nemoclaw-ollama-models"
    rules = plan.rules
    assert rules.explicit is None and rules.memory_mib == 648004 and rules.nvidia_known
    assert rules.starters == ("qwen3.5:9b", "nemotron-3-nano:30b", "qwen3.6:35b")
    assert rules.default_starter == "qwen3.6:35b" and not rules.allow_no_tools and not rules.is_spark


def test_plan_to_dict_carries_the_model_rules() -> None:
    data = _plan(model="qwen3.5:9b", allow_no_tools=True).to_dict()
    assert data["model"] == data["served_model_id"] == "qwen3.5:9b"
    assert data["ollama"]["explicit"] == "qwen3.5:9b" and data["ollama"]["allow_no_tools"] is True
    assert data["ollama"]["volume"] == "nemoclaw-ollama-models"
    assert data["container"]["mounts"][0]["kind"] == "volume"


def test_options_and_settings_override_port_name_image() -> None:
    plan = _plan(port=21434, name="my-ollama", image="mirror.local/ollama/ollama:0.12.6", timeout_s=60)
    assert plan.port == 21434 and plan.spec.ports[0].host_port == 21434 and plan.spec.ports[0].container_port == 11434
    assert plan.base_url == "http://127.0.0.1:21434/v1" and plan.ready_timeout_s == 60
    assert plan.spec.name == "my-ollama" and plan.spec.mounts[0].source == "my-ollama-models"
    assert plan.spec.image == "mirror.local/ollama/ollama:0.12.6" and "image overridden by --image" in plan.notes
    env_plan = _plan(env={"NEMOCLAW_OLLAMA_PORT": "12000", "NEMOCLAW_OLLAMA_IMAGE": "m.local/ollama:1"})
    assert env_plan.port == 12000 and env_plan.spec.image == "m.local/ollama:1"
    assert "image overridden by NEMOCLAW_OLLAMA_IMAGE" in env_plan.notes


def test_volume_name_follows_the_container_name() -> None:
    assert volume_for("nemoclaw-ollama") == "nemoclaw-ollama-models"
    assert volume_for("lab") == "lab-models"


def test_explicit_model_from_option_or_environment() -> None:
    plan = _plan(model=" qwen3.5:9b ")
    assert plan.model == plan.model_id == plan.served_model_id == "qwen3.5:9b"
    assert dict(plan.spec.labels)[LABEL_MODEL] == dict(plan.spec.labels)[LABEL_SERVED_MODEL] == "qwen3.5:9b"
    assert (plan.rules.explicit, plan.rules.source) == ("qwen3.5:9b", "--model")
    from_env = _plan(env={"NEMOCLAW_MODEL": "hf.co/acme/tiny-GGUF:Q4_K_M"})
    assert (from_env.rules.explicit, from_env.rules.source) == ("hf.co/acme/tiny-GGUF:Q4_K_M", "NEMOCLAW_MODEL")
    assert _plan(model="llama3", env={"NEMOCLAW_MODEL": "qwen3.5:9b"}).rules.explicit == "llama3"  # option wins


@pytest.mark.parametrize("tag", ["bad tag", "qwen;rm -rf", "x$(id)", "q\"x", "a\nb"])
def test_unsafe_tag_is_invalid_input(tag: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _plan(model=tag)
    assert caught.value.exit_code == 2 and "--model" in caught.value.message
    with pytest.raises(InvalidInput) as from_env:
        _plan(env={"NEMOCLAW_MODEL": tag.replace("\n", " ")})
    assert "NEMOCLAW_MODEL" in from_env.value.message


def test_no_usable_gpu_runs_on_the_cpu_with_a_note() -> None:
    plan = _plan("no_gpu")
    assert str(plan.spec.gpus) == "none"
    assert any("Ollama runs on the CPU" in note for note in plan.notes)
    assert plan.rules.starters == ("qwen3.5:9b",) and plan.rules.default_starter == "qwen3.5:9b"
    assert not plan.rules.nvidia_known


def test_gpus_none_and_indices_are_kept() -> None:
    assert str(_plan(gpus="none").spec.gpus) == "none"
    assert str(_plan(gpus="0,1").spec.gpus) == "0,1"
    assert not any("CPU" in note for note in _plan(gpus="none").notes)


def test_compute_constrained_host_gets_only_the_small_starter() -> None:
    rules = _plan("jetson_orin").rules
    assert rules.compute_constrained and rules.starters == ("qwen3.5:9b",) and rules.default_starter == "qwen3.5:9b"


def test_spark_rules_carry_the_unified_memory_total() -> None:
    rules = _plan("dgx_spark").rules
    assert rules.is_spark and rules.host_memory_mib == 121000 and rules.memory_mib == 109250


def test_driver_is_wired_into_the_pipeline() -> None:
    assert isinstance(driver_for("ollama"), OllamaDriver)


def test_cli_dry_run_json_and_bad_tag(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPU_FIXTURES / "no_gpu.json"))
    assert run(["up", "ollama", "--dry-run", "--json", "--port", "12345", "--allow-no-tools"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["container"]["gpus"] == "none" and plan["ollama"]["allow_no_tools"] is True
    assert plan["base_url"] == "http://127.0.0.1:12345/v1"
    assert run(["up", "ollama", "--dry-run", "--model", "bad tag!"]) == 2
    assert "Invalid --model" in capsys.readouterr().err


# --- model selection -----------------------------------------------------------------------------------------


REGISTRY = load_registry()


def _rules(memory: int | None = 648004, **changes: Any) -> ModelRules:
    base = ModelRules(memory_mib=memory, nvidia_known=True, starters=("qwen3.5:9b", "nemotron-3-nano:30b"),
                      default_starter="nemotron-3-nano:30b")
    return ModelRules(**{**base.to_dict(), **changes})


def test_explicit_model_is_pulled_only_when_missing() -> None:
    rules = _rules(explicit="llama3", source="--model")
    assert choose_model(rules, ("llama3:latest",), REGISTRY).installed  # a bare name means :latest
    choice = choose_model(rules, ("qwen3.5:9b",), REGISTRY)
    assert (choice.tag, choice.installed) == ("llama3", False) and "--model" in choice.reason


def test_installed_pool_prefers_nemotron_when_it_fits() -> None:
    choice = choose_model(_rules(), ("qwen3.5:9b", "nemotron-3-nano:30b"), REGISTRY)
    assert (choice.tag, choice.installed) == ("nemotron-3-nano:30b", True)


def test_installed_pool_skips_what_does_not_fit() -> None:
    installed = ("qwen3.6:35b", "nemotron-3-nano:30b", "qwen3.5:9b")
    assert choose_model(_rules(memory=16000), installed, REGISTRY).tag == "qwen3.5:9b"
    # an unknown tag counts as a fit (NemoClaw's modelFitsAvailableMemory)
    assert choose_model(_rules(memory=16000), ("qwen3.6:35b", "llama3:8b"), REGISTRY).tag == "llama3:8b"


def test_installed_pool_with_nothing_fitting_keeps_the_first_installed() -> None:
    choice = choose_model(_rules(memory=8000), ("qwen3.6:35b", "nemotron-3-nano:30b"), REGISTRY)
    assert (choice.tag, choice.installed) == ("qwen3.6:35b", True) and "none of the installed" in choice.reason


def test_nothing_installed_pulls_the_default_starter() -> None:
    choice = choose_model(_rules(), (), REGISTRY)
    assert (choice.tag, choice.installed) == ("nemotron-3-nano:30b", False)


def test_nothing_installed_and_no_starter_fits_is_refused() -> None:
    with pytest.raises(InsufficientResources) as caught:
        choose_model(_rules(memory=4000, starters=(), default_starter=None), (), REGISTRY)
    assert caught.value.exit_code == 3 and "--model" in str(caught.value.remedy)


def test_selection_rules_follow_the_host_through_plan() -> None:
    assert choose_model(_plan("jetson_orin").rules, (), REGISTRY).tag == "qwen3.5:9b"
    assert choose_model(_plan("h100_x8").rules, (), REGISTRY).tag == "qwen3.6:35b"
    assert choose_model(_plan("no_gpu").rules, (), REGISTRY).tag == "qwen3.5:9b"
