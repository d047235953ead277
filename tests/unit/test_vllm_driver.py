"""The vLLM driver is pure planning: snapshot in, exact ContainerSpec out."""

from __future__ import annotations

from typing import Any

import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import InvalidSetting, MissingToken, NoSuitableGpu, UnknownModel
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.drivers.contract import make_request
from nemoclaw_runtime.runtimes.drivers.vllm import VllmDriver


def _snapshot(product: str, gpus: list[dict[str, Any]], arch: str = "x86_64") -> GpuInventory:
    return GpuInventory.from_snapshot({
        "schema": 1,
        "machine": {"arch": arch, "product_name": product, "memory_total_mib": 131072,
                    "memory_available_mib": 120000},
        "driver_version": "580.95.05",
        "gpus": gpus,
    })


def _gpu(name: str, total: int | None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "name": name, "uuid": f"GPU-{index}", "memory_total_mib": total,
            "memory_free_mib": total, "pci_device_id": None, "mig_enabled": False}


H100 = _snapshot("PowerEdge XE9680", [_gpu("NVIDIA H100 80GB HBM3", 81559)])
SPARK = _snapshot("NVIDIA DGX Spark", [_gpu("NVIDIA GB10", None)], arch="aarch64")
NO_GPU = _snapshot("Some Server", [])


def _plan(inventory: GpuInventory = H100, env: dict[str, str] | None = None, **request: Any) -> Any:
    settings = Settings.from_env({"HOME": "/home/u", **(env or {})})
    return VllmDriver().plan(make_request("vllm", **request), settings, inventory)


def test_generic_linux_default_plan_is_exact() -> None:
    plan = _plan()
    spec = plan.spec
    assert plan.profile == "linux-nvidia" and plan.model == "nemotron-3-nano-4b"
    assert spec.name == "nemoclaw-vllm"
    assert spec.image == "nvcr.io/nvidia/vllm:26.03.post1-py3"
    assert spec.entrypoint is None  # the image's entrypoint is kept
    assert spec.command == (
        "vllm", "serve", "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8", "--port", "8000", "--max-model-len", "262144",
        "--revision", "3fe6dab75665a93884214ad4b1b95cf02717d081", "--gpu-memory-utilization", "0.7", "--load-format",
        "fastsafetensors", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
        "--reasoning-parser", "nemotron_v3")
    assert dict(spec.env) == {"HF_HOME": "/root/.cache/huggingface", "HF_HUB_OFFLINE": "1"}
    assert [(m.source, m.target) for m in spec.mounts] == [("/home/u/.cache/huggingface", "/root/.cache/huggingface")]
    assert [(p.host_ip, p.host_port, p.container_port) for p in spec.ports] == [("127.0.0.1", 8000, 8000)]
    assert (spec.ipc_mode, spec.restart_policy, str(spec.gpus)) == ("host", "unless-stopped", "all")
    assert plan.base_url == "http://127.0.0.1:8000/v1" and plan.ready_timeout_s == 1800
    assert dict(spec.labels)["io.nemoclaw.runtime.weights-revision"] == "3fe6dab75665a93884214ad4b1b95cf02717d081"


def test_spark_profile_defaults() -> None:
    plan = _plan(SPARK)
    assert (plan.profile, plan.model) == ("dgx-spark", "qwen3.6-35b-a3b-nvfp4")
    assert plan.spec.image == "nvcr.io/nvidia/vllm:26.05.post1-py3"
    assert "--speculative-config" not in plan.spec.command  # NemoClaw dropped MTP for the NVFP4 entry (#7127)
    assert plan.spec.command[plan.spec.command.index("--tool-call-parser") + 1] == "qwen3_coder"


def test_gated_model_without_token_names_both_variables() -> None:
    with pytest.raises(MissingToken) as info:
        _plan(model="deepseek-r1-distill-70b")
    assert "HF_TOKEN" in info.value.message and "HUGGING_FACE_HUB_TOKEN" in info.value.message
    assert "https://huggingface.co/deepseek-ai/DeepSeek-R1-Distill-Llama-70B" in (info.value.remedy or "")
    assert info.value.exit_code == 3


def test_prefetch_keeps_the_token_out_of_the_container() -> None:
    plan = _plan(model="deepseek-r1-distill-70b", env={"HF_TOKEN": "hf_verysecret123"})
    assert plan.token_variable == "HF_TOKEN"
    assert "HF_TOKEN" not in plan.spec.env_names()
    assert "hf_verysecret123" not in repr(plan.to_dict())


def test_no_prefetch_passes_the_token_by_env_never_argv() -> None:
    plan = _plan(model="deepseek-r1-distill-70b", env={"HUGGING_FACE_HUB_TOKEN": "hf_verysecret123"},
                 prefetch=False)
    env = dict(plan.spec.env)
    assert isinstance(env["HF_TOKEN"], Secret) and env["HF_TOKEN"].reveal() == "hf_verysecret123"
    assert "HF_HUB_OFFLINE" not in env
    assert all("hf_verysecret123" not in arg for arg in plan.spec.command)
    assert plan.to_dict()["container"]["env"]["HF_TOKEN"] == "***"


def test_no_gpu_is_refused_unless_gpus_none() -> None:
    with pytest.raises(NoSuitableGpu):
        _plan(NO_GPU, model="qwen3.6-27b")
    plan = _plan(NO_GPU, model="qwen3.6-27b", gpus="none")
    assert plan.spec.gpus.mode == "none" and plan.spec.image.endswith(":26.03.post1-py3")
    with pytest.raises(NoSuitableGpu, match="no default model"):
        _plan(NO_GPU, gpus="none")


def test_unknown_model_is_exit_2_and_lists_the_slugs() -> None:
    with pytest.raises(UnknownModel) as info:
        _plan(model="llama-9000")
    assert info.value.exit_code == 2 and "'qwen3.6-27b'" in info.value.message


def test_env_model_and_full_hf_id_case_insensitive() -> None:
    assert _plan(env={"NEMOCLAW_VLLM_MODEL": " QWEN3.6-27B "}).model == "qwen3.6-27b"
    assert _plan(model="qwen/qwen3.6-27b-fp8").model == "qwen3.6-27b"


def test_extra_args_are_appended_and_validated() -> None:
    plan = _plan(env={"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": '["--served-model-name", "my-model"]'})
    assert plan.spec.command[-2:] == ("--served-model-name", "my-model")
    assert plan.served_model_id == "my-model"
    with pytest.raises(InvalidSetting, match=r"NEMOCLAW_VLLM_EXTRA_ARGS_JSON.*\[1\]"):
        _plan(env={"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": '["--x", 3]'})


def test_image_and_port_overrides() -> None:
    plan = _plan(env={"NEMOCLAW_VLLM_IMAGE": "127.0.0.1:5000/mirror/vllm:1", "NEMOCLAW_VLLM_PORT": "8100"})
    assert plan.spec.image == "127.0.0.1:5000/mirror/vllm:1" and plan.port == 8100
    plan = _plan(env={"NEMOCLAW_VLLM_IMAGE": "a/b:1"}, image="c/d:2", port=9000, name="mine")
    assert (plan.spec.image, plan.port, plan.spec.name) == ("c/d:2", 9000, "mine")
    assert plan.spec.ports[0].host_port == 9000 and plan.spec.ports[0].container_port == 8000


def test_non_loopback_host_is_noted() -> None:
    plan = _plan(host="0.0.0.0")
    assert plan.spec.ports[0].host_ip == "0.0.0.0"
    assert plan.base_url == "http://127.0.0.1:8000/v1"
    assert any("reachable from other machines" in note for note in plan.notes)


def test_plan_is_json_serialisable() -> None:
    import json

    document = _plan().to_dict()
    assert json.loads(json.dumps(document)) == document


def test_the_pinned_revision_is_prefetched_and_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from nemoclaw_runtime.kernel.clock import CancelToken
    from nemoclaw_runtime.runtimes.fit import ServeOptions
    from nemoclaw_runtime.runtimes.transfer import weights

    pinned = "3fe6dab75665a93884214ad4b1b95cf02717d081"
    plan = _plan()
    asked: dict[str, Any] = {}

    def fake_prefetch(model_id: str, **kw: Any) -> Any:
        asked.update(kw, model_id=model_id)
        return SimpleNamespace(revision=kw["revision"])

    monkeypatch.setattr(weights, "prefetch", fake_prefetch)
    svc = SimpleNamespace(settings=Settings.from_env({"HOME": "/home/u"}))
    revision = VllmDriver().fetch_weights(plan, svc, lambda event: None, CancelToken())  # type: ignore[arg-type]

    assert revision == pinned and asked["revision"] == pinned
    assert ServeOptions.from_argv(plan.spec.command).revision == pinned  # what the fit's facts are read at
    unpinned = _plan(model="deepseek-r1-distill-70b", env={"HF_TOKEN": "hf_x" * 5})
    assert "--revision" not in unpinned.spec.command
    assert "io.nemoclaw.runtime.weights-revision" not in dict(unpinned.spec.labels)
