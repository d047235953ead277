"""Which image `up` runs — and so what `pull` pre-pulls: the driver decides, once, for both.

Expected images come from outside the code under test: the registry data files read here with ``tomllib`` (not
through ``nemoclaw_runtime.registry``), and literal references (README "GPU profiles" table, the pinned Ollama
release). A driver returning the wrong profile's image, or a data file and the README drifting apart, fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from nemoclaw_runtime.gpu import GpuInventory, detect_gpus
from nemoclaw_runtime.kernel.errors import InsufficientResources
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from tests.fakes.fake_docker import FakeDocker

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "fixtures" / "gpu"
DATA = ROOT / "registry" / "data"

#: README "GPU profiles" table: profile -> vLLM image (`linux-nvidia` serves `jetson` too).
README_VLLM_IMAGES = {
    "dgx-spark": "nvcr.io/nvidia/vllm:26.05.post1-py3",
    "dgx-station": "nvcr.io/nvidia/vllm:26.05.post1-py3",
    "linux-nvidia": "nvcr.io/nvidia/vllm:26.03.post1-py3",
    "jetson": "nvcr.io/nvidia/vllm:26.03.post1-py3",
}
#: The pinned Ollama release (README: a managed `ollama/ollama` container); a new pin is a deliberate edit here.
OLLAMA_IMAGE = "docker.io/ollama/ollama:0.12.6"
#: GPU fixture -> the host profile it is detected as.
FIXTURE_PROFILES = {"dgx_spark": "dgx-spark", "dgx_station": "dgx-station", "h100_x8": "linux-nvidia",
                    "jetson_orin": "jetson"}


def _data(runtime: str) -> dict[str, Any]:
    with (DATA / f"{runtime}.toml").open("rb") as handle:
        return tomllib.load(handle)


def _vllm_profile_images() -> dict[str, str]:
    """GPU profile -> image, from registry/data/vllm.toml (``also_for`` profiles share the image)."""
    images: dict[str, str] = {}
    for profile in _data("vllm")["profile"]:
        for name in (profile["gpu_profile"], *profile.get("also_for", ())):
            images[name] = profile["image"]
    return images


def _nim_images() -> dict[str, str]:
    """NIM model name -> image, in catalog order, from registry/data/nim.toml."""
    return {model["name"]: model["image"] for model in _data("nim")["model"]}


def _inventory(name: str) -> GpuInventory:
    return detect_gpus(Settings.from_env({"NEMOCLAW_GPU_SNAPSHOT": str(GPU / f"{name}.json")}))


def _image(runtime: str, inventory: str, env: dict[str, str] | None = None, **request: Any) -> str:
    return pipeline.driver_for(runtime).image_for(pipeline.make_request(runtime, **request),
                                                  Settings.from_env(env or {}), _inventory(inventory))


def test_the_registry_data_and_the_readme_name_the_same_vllm_images() -> None:
    assert _vllm_profile_images() == README_VLLM_IMAGES


@pytest.mark.parametrize("fixture", sorted(FIXTURE_PROFILES))
def test_vllm_runs_the_image_of_the_detected_profile(fixture: str) -> None:
    profile = FIXTURE_PROFILES[fixture]
    assert _inventory(fixture).profile == profile  # the fixture is the host it claims to be
    assert _image("vllm", fixture) == _vllm_profile_images()[profile] == README_VLLM_IMAGES[profile]


def test_vllm_without_a_profile_falls_back_to_the_linux_nvidia_image() -> None:
    assert _inventory("no_gpu").profile == "none"
    # what `--gpus none` would run
    assert _image("vllm", "no_gpu") == _vllm_profile_images()["linux-nvidia"] == README_VLLM_IMAGES["linux-nvidia"]


def test_nim_runs_the_catalog_image_of_the_chosen_model() -> None:
    catalog = _nim_images()
    first = next(iter(catalog))  # no model named: the first catalog entry that fits (8 x H100 fits them all)
    assert _image("nim", "h100_x8") == catalog[first] == "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b:latest"
    assert _image("nim", "h100_x8", model="meta/llama-3.1-8b-instruct") == \
        catalog["meta/llama-3.1-8b-instruct"] == "nvcr.io/nim/meta/llama-3.1-8b-instruct:latest"
    nano = "nvidia/nemotron-3-nano-30b-a3b"
    assert _image("nim", "h100_x8", model=nano) == _image("nim", "h100_x8", model="nemotron-3-nano-30b-a3b") \
        == catalog[nano]


def test_ollama_runs_the_pinned_release() -> None:
    assert _image("ollama", "no_gpu") == _image("ollama", "h100_x8") == OLLAMA_IMAGE
    assert not OLLAMA_IMAGE.endswith(":latest")


def test_flag_beats_variable_beats_registry() -> None:
    for runtime, variable in (("vllm", "NEMOCLAW_VLLM_IMAGE"), ("nim", "NEMOCLAW_NIM_IMAGE"),
                              ("ollama", "NEMOCLAW_OLLAMA_IMAGE")):
        assert _image(runtime, "h100_x8", {variable: "mirror/x:1"}) == "mirror/x:1"
        assert _image(runtime, "h100_x8", {variable: "mirror/x:1"}, image="local/y:2") == "local/y:2"


def test_the_plan_runs_the_registry_image() -> None:
    settings = Settings.from_env({"NGC_API_KEY": "nvapi-x"})
    expected = {"vllm": _vllm_profile_images()["linux-nvidia"], "nim": next(iter(_nim_images().values())),
                "ollama": OLLAMA_IMAGE}
    for runtime, image in expected.items():
        request = pipeline.make_request(runtime, model="qwen3.6-27b" if runtime == "vllm" else None)
        plan = pipeline.plan(request, settings=settings, inventory=_inventory("h100_x8"))
        assert plan.spec.image == image, runtime
        overridden = pipeline.plan(pipeline.make_request(runtime, model=request.model, image="local/y:2"),
                                   settings=settings, inventory=_inventory("h100_x8"))
        assert overridden.spec.image == "local/y:2", runtime


def test_nim_model_too_big_for_the_host_is_refused_before_any_pull() -> None:
    with pytest.raises(InsufficientResources):
        _image("nim", "h100_x8", gpus="0", model="nvidia/llama-3.1-nemotron-70b-instruct")


def test_pull_asks_the_driver_and_needs_no_model_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_pull_image(ref: str, settings: Settings, **kw: Any) -> PulledImage:
        seen.update(ref=ref, arch=kw["arch"], port=kw["port"])
        return PulledImage(ref=ref, digest="sha256:" + "a" * 64, platform="linux/arm64", pulled=True)

    monkeypatch.setattr("nemoclaw_runtime.runtimes.transfer.image_pull.pull_image", fake_pull_image)
    # A gated model: its image can be pulled before the licence is accepted (no HF token involved).
    docker = FakeDocker()  # injected: the pull never opens an engine of its own
    result = pipeline.pull("vllm", settings=Settings.from_env({}), model="deepseek-r1-distill-70b",
                           inventory=_inventory("dgx_spark"), docker=docker)
    assert seen == {"ref": "nvcr.io/nvidia/vllm:26.05.post1-py3", "arch": "aarch64", "port": docker}
    assert result.pulled and not docker.closed
