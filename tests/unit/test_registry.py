"""The packaged registry: exact NemoClaw values, serve argv, lookup, profiles, served ids."""

from __future__ import annotations

import shlex

import pytest

from nemoclaw_runtime.kernel.errors import InvalidInput, UnknownModel
from nemoclaw_runtime.registry import (
    NimModel,
    OllamaStarter,
    Registry,
    VllmModel,
    VllmProfile,
    is_safe_model_id,
    load_registry,
)

# The Hugging Face commits NemoClaw pins (fit-and-scale.md §1/§3); the others follow the hub's main.
PINNED_REVISIONS = {
    "Qwen/Qwen3.6-27B-FP8": "e89b16ebf1988b3d6befa7de50abc2d76f26eb09",
    "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8": "3fe6dab75665a93884214ad4b1b95cf02717d081",
}

# NemoClaw's registry table (vllm-models.ts), modelArgs verbatim as shell text: shlex turns it into the argv
# tokens our data files must hold, so the comparison is token by token against the reference.
NEMOCLAW_TABLE = [
    (
        "qwen3.6-27b",
        "Qwen/Qwen3.6-27B-FP8",
        262144,
        False,
        ("dgx-spark", "dgx-station", "linux-nvidia"),
        (
            "--gpu-memory-utilization 0.7 --max-num-seqs 4 --reasoning-parser qwen3 "
            "--enable-auto-tool-choice --tool-call-parser qwen3_coder --load-format fastsafetensors "
            "--enable-prefix-caching"
        ),
    ),
    (
        "deepseek-r1-distill-70b",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        32768,
        True,
        ("dgx-spark", "dgx-station", "linux-nvidia"),
        (
            "--gpu-memory-utilization 0.7 --max-num-seqs 4 --reasoning-parser deepseek_r1 "
            "--enable-auto-tool-choice --tool-call-parser hermes"
        ),
    ),
    (
        "nemotron-3-nano-4b",
        "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8",
        262144,
        False,
        ("dgx-spark", "dgx-station", "linux-nvidia"),
        (
            "--gpu-memory-utilization 0.7 --load-format fastsafetensors --enable-auto-tool-choice "
            "--tool-call-parser qwen3_coder --reasoning-parser nemotron_v3"  # NemoClaw #6915
        ),
    ),
    (
        "deepseek-v4-flash",
        "deepseek-ai/DeepSeek-V4-Flash",
        1048576,
        False,
        ("dgx-station",),
        (
            "--kv-cache-dtype fp8 --block-size 256 --enable-prefix-caching --gpu-memory-utilization 0.92 "
            '--compilation-config \'{"cudagraph_mode":"FULL_AND_PIECEWISE","custom_ops":["all"]}\' '
            "--attention_config.use_fp4_indexer_cache True --tokenizer-mode deepseek_v4 "
            "--tool-call-parser deepseek_v4 "
            "--enable-auto-tool-choice --reasoning-parser deepseek_v4 --no-disable-hybrid-kv-cache-manager "
            "--disable-uvicorn-access-log --max-cudagraph-capture-size 128 "
            '--speculative-config \'{"method":"mtp","num_speculative_tokens":3}\' '
            "--max-num-batched-tokens 8192 "
            "--max-num-seqs 16 --prefix-cache-retention-interval auto"
        ),
    ),
    (
        "qwen3.6-35b-a3b-nvfp4",
        "nvidia/Qwen3.6-35B-A3B-NVFP4",
        262144,
        False,
        ("dgx-spark",),
        (
            "--gpu-memory-utilization 0.4 --dtype auto --quantization modelopt --kv-cache-dtype fp8 "
            "--attention-backend flashinfer --moe-backend marlin --max-num-seqs 4 "
            "--max-num-batched-tokens 8192 "
            "--enable-chunked-prefill --async-scheduling --enable-prefix-caching --enable-auto-tool-choice "
            "--tool-call-parser qwen3_coder --reasoning-parser qwen3 "  # NemoClaw #6457; no MTP since #7127
            "--load-format fastsafetensors"
        ),
    ),
]
SLUGS = [row[0] for row in NEMOCLAW_TABLE]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def test_registry_is_cached_and_typed(registry: Registry) -> None:
    assert load_registry() is registry
    assert all(isinstance(m, VllmModel) for m in registry.vllm_models)
    assert all(isinstance(p, VllmProfile) for p in registry.vllm_profiles.values())
    assert all(isinstance(m, NimModel) for m in registry.nim_models)
    assert all(isinstance(s, OllamaStarter) for s in registry.ollama_starters)


def test_vllm_entries_in_registry_order(registry: Registry) -> None:
    assert [m.slug for m in registry.vllm_models] == SLUGS


@pytest.mark.parametrize(
    ("slug", "hf_id", "max_len", "gated", "platforms", "shell_args"), NEMOCLAW_TABLE, ids=SLUGS
)
def test_vllm_entry_matches_nemoclaw(
    registry: Registry,
    slug: str,
    hf_id: str,
    max_len: int,
    gated: bool,
    platforms: tuple[str, ...],
    shell_args: str,
) -> None:
    model = registry.vllm_model(slug)
    assert model.hf_id == hf_id
    assert model.max_model_len == max_len
    assert model.gated is gated
    assert model.platforms == platforms
    assert model.flags == tuple(shlex.split(shell_args))


@pytest.mark.parametrize(
    ("slug", "hf_id", "max_len", "shell_args"),
    [(row[0], row[1], row[2], row[5]) for row in NEMOCLAW_TABLE],
    ids=SLUGS,
)
def test_serve_argv_exact(registry: Registry, slug: str, hf_id: str, max_len: int, shell_args: str) -> None:
    expected = [
        "vllm",
        "serve",
        hf_id,
        "--port",
        "8000",
        "--max-model-len",
        str(max_len),
        *(("--revision", PINNED_REVISIONS[hf_id]) if hf_id in PINNED_REVISIONS else ()),
        *shlex.split(shell_args),
    ]
    assert list(registry.vllm_model(slug).serve_argv()) == expected
    extra = ("--max-num-seqs", "2")
    assert list(registry.vllm_model(slug).serve_argv(extra)) == [*expected, *extra]


def test_json_flag_values_are_single_tokens_without_shell_quotes(registry: Registry) -> None:
    flags = registry.vllm_model("deepseek-v4-flash").flags
    position = flags.index("--compilation-config")
    assert flags[position + 1] == '{"cudagraph_mode":"FULL_AND_PIECEWISE","custom_ops":["all"]}'
    assert not any(token.startswith("'") for model in registry.vllm_models for token in model.flags)


def test_serve_argv_has_no_shell_or_pip(registry: Registry) -> None:
    for model in registry.vllm_models:
        argv = model.serve_argv()
        assert argv[:2] == ("vllm", "serve")
        assert not {"pip", "&&", "bash", "-lc", "export"} & set(argv)


# --- profiles -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu_profile", "name", "image", "default"),
    [
        ("dgx-spark", "DGX Spark", "nvcr.io/nvidia/vllm:26.05.post1-py3", "qwen3.6-35b-a3b-nvfp4"),
        ("dgx-station", "DGX Station", "nvcr.io/nvidia/vllm:26.05.post1-py3", "qwen3.6-27b"),
        ("linux-nvidia", "Linux + NVIDIA GPU", "nvcr.io/nvidia/vllm:26.03.post1-py3", "nemotron-3-nano-4b"),
    ],
)
def test_profiles(registry: Registry, gpu_profile: str, name: str, image: str, default: str) -> None:
    profile = registry.vllm_profiles[gpu_profile]
    assert registry.vllm_profile_for(gpu_profile) is profile
    assert (profile.name, profile.gpu_profile, profile.image, profile.default_slug) == (
        name,
        gpu_profile,
        image,
        default,
    )
    assert (profile.pull_timeout_s, profile.load_timeout_s, profile.container_name) == (
        43200,
        1800,
        "nemoclaw-vllm",
    )
    assert registry.resolve_vllm_model(None, profile=profile).slug == default
    assert registry.resolve_vllm_model("   ", profile=profile).slug == default


def test_profile_keys_and_aliases(registry: Registry) -> None:
    assert set(registry.vllm_profiles) == {"dgx-spark", "dgx-station", "linux-nvidia"}
    assert registry.vllm_profile_for("jetson") is registry.vllm_profiles["linux-nvidia"]
    assert registry.vllm_profile_for("none") is None


def test_unknown_gpu_profile_is_an_error(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match="Unknown GPU profile 'n1x'"):
        registry.vllm_profile_for("n1x")


@pytest.mark.parametrize(
    ("gpu_profile", "expected"),
    [
        (
            "dgx-spark",
            ["qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b", "qwen3.6-35b-a3b-nvfp4"],
        ),
        (
            "dgx-station",
            ["qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b", "deepseek-v4-flash"],
        ),
        ("linux-nvidia", ["qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b"]),
        ("jetson", ["qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b"]),
    ],
)
def test_models_for_profile_registry_order(registry: Registry, gpu_profile: str, expected: list[str]) -> None:
    profile = registry.vllm_profile_for(gpu_profile)
    assert [m.slug for m in registry.vllm_models_for(profile)] == expected
    picker = [m.slug for m in registry.vllm_picker_order(profile)]
    assert profile is not None and picker[0] == profile.default_slug
    assert sorted(picker) == sorted(expected)


def test_models_for_no_profile_is_empty(registry: Registry) -> None:
    assert registry.vllm_models_for(None) == ()
    assert registry.vllm_picker_order(None) == ()


# --- lookup -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "qwen3.6-27b",
        "QWEN3.6-27B",
        "  qwen3.6-27b  ",
        "\tQwen3.6-27b\n",
        "Qwen/Qwen3.6-27B-FP8",
        "qwen/qwen3.6-27b-fp8",
        "  QWEN/QWEN3.6-27B-FP8 ",
    ],
)
def test_lookup_by_slug_or_hf_id_any_case_trimmed(registry: Registry, text: str) -> None:
    assert registry.resolve_vllm_model(text, profile=None).slug == "qwen3.6-27b"


@pytest.mark.parametrize(("slug", "hf_id"), [(row[0], row[1]) for row in NEMOCLAW_TABLE], ids=SLUGS)
def test_every_entry_resolves_by_both_names(registry: Registry, slug: str, hf_id: str) -> None:
    assert registry.resolve_vllm_model(slug.upper(), profile=None).hf_id == hf_id
    assert registry.resolve_vllm_model(f" {hf_id.lower()} ", profile=None).slug == slug


def test_env_value_bypasses_platform_filter(registry: Registry) -> None:
    linux = registry.vllm_profiles["linux-nvidia"]
    assert registry.resolve_vllm_model("deepseek-v4-flash", profile=linux).slug == "deepseek-v4-flash"
    station = registry.vllm_profile_for("dgx-station")
    assert registry.resolve_vllm_model(None, profile=station).slug == "qwen3.6-27b"  # the specification's default
    assert registry.resolve_vllm_model("deepseek-v4-flash", profile=station).slug == "deepseek-v4-flash"


def test_unknown_slug_message_lists_all_five(registry: Registry) -> None:
    with pytest.raises(UnknownModel) as caught:
        registry.resolve_vllm_model("llama-9000", profile=registry.vllm_profiles["dgx-spark"])
    error = caught.value
    assert error.message == (
        "Unknown NEMOCLAW_VLLM_MODEL='llama-9000'. Recognised values: 'qwen3.6-27b', "
        "'deepseek-r1-distill-70b', 'nemotron-3-nano-4b', 'deepseek-v4-flash', 'qwen3.6-35b-a3b-nvfp4' "
        "(or the full Hugging Face model id)."
    )
    assert error.exit_code == 2
    assert error.remedy is not None and "nemoclaw-runtime models" in error.remedy
    assert error.details["recognised"] == SLUGS


def test_unknown_slug_from_option_names_the_option(registry: Registry) -> None:
    with pytest.raises(UnknownModel, match=r"^Unknown --model 'nope'\. Recognised values: 'qwen3\.6-27b'"):
        registry.resolve_vllm_model("nope", profile=None, source="--model")


def test_no_text_and_no_profile_is_invalid_input(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match="No default vLLM model without a GPU profile") as caught:
        registry.resolve_vllm_model(None, profile=None)
    assert not isinstance(caught.value, UnknownModel)
    assert caught.value.remedy is not None and "NEMOCLAW_VLLM_MODEL" in caught.value.remedy


def test_partial_names_do_not_match(registry: Registry) -> None:
    assert registry.find_vllm_model("qwen3.6") is None
    assert registry.find_vllm_model("") is None
    assert registry.find_vllm_model("Qwen3.6-27B-FP8") is None  # HF id without its org


# --- gating, served ids -------------------------------------------------------------------------------------


def test_gated_entries_carry_token_variables_and_licence(registry: Registry) -> None:
    gated = registry.vllm_model("deepseek-r1-distill-70b")
    assert gated.token_variables == ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    assert gated.licence_url == "https://huggingface.co/deepseek-ai/DeepSeek-R1-Distill-Llama-70B"
    assert [m.slug for m in registry.vllm_models if m.gated] == ["deepseek-r1-distill-70b"]
    assert registry.vllm_model("qwen3.6-27b").token_variables == ()


def test_served_model_id_defaults_to_hf_id(registry: Registry) -> None:
    for model in registry.vllm_models:
        assert model.served_model_id() == model.hf_id
        assert is_safe_model_id(model.served_model_id())


@pytest.mark.parametrize(
    "extra",
    [
        ("--served-model-name", "my-model"),
        ("--served-model-name=my-model",),
        ("--max-num-seqs", "2", "--served-model-name", "my-model", "--enable-chunked-prefill"),
    ],
)
def test_served_model_name_from_extra_args(registry: Registry, extra: tuple[str, ...]) -> None:
    assert registry.vllm_model("qwen3.6-27b").served_model_id(extra) == "my-model"


@pytest.mark.parametrize(
    "extra",
    [
        ("--served-model-name", "a", "b"),
        ("--served-model-name", "a", "--served-model-name", "b"),
        ("--served-model-name=a", "--served-model-name", "a"),
        ("--served-model-name",),
        ("--served-model-name", "--max-num-seqs", "2"),
        ("--served-model-name=",),
        ("--served-model-name", "bad id"),
        ("--served-model-name=bad$id",),
    ],
)
def test_bad_served_model_name(registry: Registry, extra: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInput, match="^--served-model-name must specify exactly one safe model ID$"):
        registry.vllm_model("qwen3.6-27b").served_model_id(extra)


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("nvidia/nemotron-3-nano", True),
        ("Qwen/Qwen3.6-27B-FP8", True),
        ("a:b_c.d-e", True),
        ("", False),
        ("a b", False),
        ("a;rm", False),
        ("a\nb", False),
        ("é", False),
        (None, False),
        (3, False),
    ],
)
def test_is_safe_model_id(text: object, safe: bool) -> None:
    assert is_safe_model_id(text) is safe


def test_to_dict_is_json_ready(registry: Registry) -> None:
    import json

    data = registry.vllm_model("deepseek-r1-distill-70b").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["slug"] == "deepseek-r1-distill-70b"
    assert data["gated"] is True and data["token_variables"] == ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
    assert data["platforms"] == ["dgx-spark", "dgx-station", "linux-nvidia"]
    assert data["max_model_len"] == 32768


def test_entries_are_frozen(registry: Registry) -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.vllm_models[0].slug = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        registry.vllm_profiles["dgx-spark"] = registry.vllm_profiles["dgx-station"]  # type: ignore[index]


def test_public_names_exported_and_sorted() -> None:
    import nemoclaw_runtime.registry as package

    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert hasattr(package, name), name
    for name in (
        "load_registry",
        "Registry",
        "VllmModel",
        "VllmProfile",
        "NimModel",
        "OllamaStarter",
        "parse_extra_args",
        "is_safe_model_id",
    ):
        assert name in package.__all__


def test_clear_registry_cache() -> None:
    from nemoclaw_runtime.registry import clear_registry_cache

    first = load_registry()
    clear_registry_cache()
    second = load_registry()
    assert second is not first and second == first


def test_pinned_revisions_are_the_registrys() -> None:
    registry = load_registry()
    pinned = {m.hf_id: m.hf_revision for m in registry.vllm_models if m.hf_revision}
    assert pinned == PINNED_REVISIONS
