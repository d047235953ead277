"""Registry: the per-model minimum compute capability (one source, validated on load) and any Hugging Face model
named by its id (`hf:ORG/NAME` or `ORG/NAME`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.errors import InvalidInput, NemoclawError, UnknownModel
from nemoclaw_runtime.registry import DATA_DIR, Registry, load_registry
from nemoclaw_runtime.runtimes.fit import min_compute_capability_for


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def test_minimum_compute_capabilities_are_nemoclaws(registry: Registry) -> None:
    assert {m.slug: m.min_compute_capability for m in registry.vllm_models} == {
        "qwen3.6-27b": (8, 9), "deepseek-r1-distill-70b": None, "nemotron-3-nano-4b": (8, 9),
        "deepseek-v4-flash": (10, 0), "qwen3.6-35b-a3b-nvfp4": (12, 1)}
    assert registry.vllm_model("qwen3.6-35b-a3b-nvfp4").to_dict()["min_compute_capability"] == "12.1"


def test_the_fit_engine_reads_the_registry_field(registry: Registry) -> None:
    assert min_compute_capability_for("nvidia/Qwen3.6-35B-A3B-NVFP4") == (12, 1)
    assert min_compute_capability_for("deepseek-ai/deepseek-v4-flash") == (10, 0)
    assert min_compute_capability_for("acme/not-in-the-registry") is None


@pytest.mark.parametrize("bad", ['"8"', '"8.x"', '"0.9"', "8.9", '"8.9.1"', '" 8.9"'])
def test_a_bad_compute_capability_names_file_entry_and_field(tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "data"
    shutil.copytree(DATA_DIR, folder)
    path = folder / "vllm.toml"
    path.write_text(path.read_text().replace('min_compute_capability = "12.1"', f"min_compute_capability = {bad}", 1))
    with pytest.raises(NemoclawError) as caught:
        load_registry(folder)
    message = caught.value.message
    assert "vllm.toml" in message and "model 'qwen3.6-35b-a3b-nvfp4'" in message
    assert "min_compute_capability" in message


@pytest.mark.parametrize("text", ["hf:Qwen/Qwen3-8B", "Qwen/Qwen3-8B", " HF:Qwen/Qwen3-8B "])
def test_any_hugging_face_id_is_a_model(registry: Registry, text: str) -> None:
    model = registry.resolve_vllm_model(text, profile=None, source="--model")
    assert (model.slug, model.hf_id, model.adhoc) == ("hf:Qwen/Qwen3-8B", "Qwen/Qwen3-8B", True)
    assert model.flags == () and model.max_model_len is None and not model.gated
    assert model.serve_argv() == ("vllm", "serve", "Qwen/Qwen3-8B", "--port", "8000")
    assert model.served_model_id(("--served-model-name", "mine")) == "mine"
    assert registry.resolve_vllm_model(model.slug, profile=None).hf_id == "Qwen/Qwen3-8B"  # the label resolves


def test_a_registry_id_after_hf_keeps_its_entry(registry: Registry) -> None:
    model = registry.resolve_vllm_model("hf:qwen/qwen3.6-27b-fp8", profile=None)
    assert model.slug == "qwen3.6-27b" and not model.adhoc and "--tool-call-parser" in model.flags


@pytest.mark.parametrize("text", ["hf:", "hf:nope", "hf:a/b/c", "hf:-a/b", "hf:a/..", "hf:a/b c"])
def test_a_bad_id_after_hf_is_invalid_input(registry: Registry, text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        registry.resolve_vllm_model(text, profile=None, source="--model")
    assert caught.value.exit_code == 2 and "hf:ORG/NAME" in (caught.value.remedy or "")


@pytest.mark.parametrize("text", ["llama-9000", "a/b/c", "../x", "a b/c"])
def test_anything_else_is_still_unknown(registry: Registry, text: str) -> None:
    with pytest.raises(UnknownModel):
        registry.resolve_vllm_model(text, profile=None, source="--model")
