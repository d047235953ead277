"""Which image `up` runs — and so what `pull` pre-pulls: the driver decides, once, for both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.gpu import GpuInventory, detect_gpus
from nemoclaw_runtime.kernel.errors import InsufficientResources
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.drivers.ollama import DEFAULT_OLLAMA_IMAGE

GPU = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


def _inventory(name: str) -> GpuInventory:
    return detect_gpus(Settings.from_env({"NEMOCLAW_GPU_SNAPSHOT": str(GPU / f"{name}.json")}))


def _image(runtime: str, inventory: str, env: dict[str, str] | None = None, **request: Any) -> str:
    return pipeline.driver_for(runtime).image_for(pipeline.make_request(runtime, **request),
                                                  Settings.from_env(env or {}), _inventory(inventory))


def test_profile_images_and_the_fallback_without_a_profile() -> None:
    assert _image("vllm", "dgx_spark") == "nvcr.io/nvidia/vllm:26.05.post1-py3"
    assert _image("vllm", "dgx_station") == "nvcr.io/nvidia/vllm:26.05.post1-py3"
    assert _image("vllm", "h100_x8") == "nvcr.io/nvidia/vllm:26.03.post1-py3"
    assert _image("vllm", "no_gpu") == "nvcr.io/nvidia/vllm:26.03.post1-py3"  # what `--gpus none` would run
    assert _image("ollama", "no_gpu") == DEFAULT_OLLAMA_IMAGE
    assert _image("nim", "h100_x8") == "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b:latest"
    assert _image("nim", "h100_x8", model="meta/llama-3.1-8b-instruct") == \
        "nvcr.io/nim/meta/llama-3.1-8b-instruct:latest"


def test_flag_beats_variable_beats_registry() -> None:
    for runtime, variable in (("vllm", "NEMOCLAW_VLLM_IMAGE"), ("nim", "NEMOCLAW_NIM_IMAGE"),
                              ("ollama", "NEMOCLAW_OLLAMA_IMAGE")):
        assert _image(runtime, "h100_x8", {variable: "mirror/x:1"}) == "mirror/x:1"
        assert _image(runtime, "h100_x8", {variable: "mirror/x:1"}, image="local/y:2") == "local/y:2"


def test_the_plan_runs_the_image_the_driver_names() -> None:
    settings = Settings.from_env({"NGC_API_KEY": "nvapi-x"})
    for runtime in ("vllm", "nim", "ollama"):
        request = pipeline.make_request(runtime, model="qwen3.6-27b" if runtime == "vllm" else None)
        plan = pipeline.plan(request, settings=settings, inventory=_inventory("h100_x8"))
        assert plan.spec.image == pipeline.driver_for(runtime).image_for(request, settings, _inventory("h100_x8"))


def test_nim_model_too_big_for_the_host_is_refused_before_any_pull() -> None:
    with pytest.raises(InsufficientResources):
        _image("nim", "h100_x8", gpus="0", model="llama-3.1-nemotron-70b-instruct")


def test_pull_asks_the_driver_and_needs_no_model_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_pull_image(ref: str, settings: Settings, **kw: Any) -> PulledImage:
        seen.update(ref=ref, arch=kw["arch"])
        return PulledImage(ref=ref, digest="sha256:" + "a" * 64, platform="linux/arm64", pulled=True)

    monkeypatch.setattr("nemoclaw_runtime.runtimes.transfer.image_pull.pull_image", fake_pull_image)
    # A gated model: its image can be pulled before the licence is accepted (no HF token involved).
    result = pipeline.pull("vllm", settings=Settings.from_env({}), model="deepseek-r1-distill-70b",
                           inventory=_inventory("dgx_spark"))
    assert seen == {"ref": "nvcr.io/nvidia/vllm:26.05.post1-py3", "arch": "aarch64"} and result.pulled
