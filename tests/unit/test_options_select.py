"""select_option: NEMOCLAW_PROVIDER / NEMOCLAW_MODEL / NEMOCLAW_VLLM_MODEL (or a wizard's key) against the menu,
with exit 2 for names nothing knows and exit 3 for choices that do not fit the host."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import (
    InsufficientResources,
    InvalidInput,
    MissingToken,
    PreflightRefused,
    UnknownModel,
)
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.drivers.contract import UpRequest
from nemoclaw_runtime.runtimes.onboarding.menu import NO_VLLM_PROFILE, LocalOptions
from nemoclaw_runtime.runtimes.onboarding.options import local_options
from nemoclaw_runtime.runtimes.onboarding.selection import Selection, select_option
from tests.fake_servers.fake_ollama import FakeOllama
from tests.fake_servers.fake_openai import FakeOpenAI
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

GPU = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        yield client


@pytest.fixture
def vllm_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def menu_and_settings(snapshot: str, http: httpx.Client, env: dict[str, str] | None = None, *,
                      vllm_port: int | None = None, ollama_port: int | None = None,
                      which: Any = lambda name: None) -> tuple[LocalOptions, Settings]:
    values = {"NEMOCLAW_VLLM_PORT": str(vllm_port or free_port()),
              "NEMOCLAW_OLLAMA_PORT": str(ollama_port or free_port()), **(env or {})}
    settings = Settings.from_env(values)
    inv = GpuInventory.from_snapshot(json.loads((GPU / f"{snapshot}.json").read_text()))
    return local_options(settings, inventory=inv, http=http, docker=FakeDocker(), which=which), settings


def select(snapshot: str, http: httpx.Client, env: dict[str, str] | None = None, *, key: str | None = None,
           **kw: Any) -> Selection:
    menu, settings = menu_and_settings(snapshot, http, env, **kw)
    return select_option(menu, settings, key=key)


# --- no provider: the suggestion -----------------------------------------------------------------------------------


def test_without_provider_the_suggested_option_is_chosen(http: httpx.Client) -> None:
    choice = select("dgx_spark", http)
    assert (choice.key, choice.runtime, choice.model, choice.source) == (
        "install-vllm", "vllm", "qwen3.6-35b-a3b-nvfp4", "suggested")
    assert choice.install and not choice.running
    assert choice.model_source == "default"


def test_without_any_option_exit_3(http: httpx.Client) -> None:
    with pytest.raises(PreflightRefused) as caught:
        select("no_gpu", http)
    assert caught.value.exit_code == 3
    assert "No local inference option" in caught.value.message
    assert "install-vllm" in (caught.value.remedy or "")


def test_only_nim_offered_is_chosen_as_the_only_option(http: httpx.Client) -> None:
    menu, settings = menu_and_settings("h100_x8", http, {"NEMOCLAW_EXPERIMENTAL": "1", "NGC_API_KEY": "nvapi-x"})
    only_nim = dataclasses.replace(menu, options=tuple(o for o in menu.options if o.key == "nim"))
    choice = select_option(only_nim, settings)
    assert (choice.key, choice.source, choice.model) == ("nim", "only", "nvidia/nemotron-3-super-120b-a12b")


# --- NEMOCLAW_PROVIDER=vllm ----------------------------------------------------------------------------------------


def test_provider_vllm_uses_the_running_server(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    choice = select("h100_x8", http, {"NEMOCLAW_PROVIDER": "vllm"}, vllm_port=vllm_server.port)
    assert (choice.key, choice.model, choice.source, choice.model_source) == (
        "vllm", "fake/model", "NEMOCLAW_PROVIDER", "served")
    assert choice.running and choice.base_url == f"http://127.0.0.1:{vllm_server.port}/v1"


def test_provider_vllm_never_installs(http: httpx.Client) -> None:
    with pytest.raises(PreflightRefused) as caught:
        select("dgx_spark", http, {"NEMOCLAW_PROVIDER": "vllm"})
    assert caught.value.exit_code == 3
    assert caught.value.message.startswith("NEMOCLAW_PROVIDER=vllm, but no vLLM answers on localhost:")


def test_running_vllm_model_must_be_served(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    env = {"NEMOCLAW_PROVIDER": "vllm", "NEMOCLAW_VLLM_MODEL": "qwen3.6-27b"}
    with pytest.raises(PreflightRefused) as caught:
        select("h100_x8", http, env, vllm_port=vllm_server.port)
    assert caught.value.exit_code == 3
    assert "fake/model" in caught.value.message


def test_running_vllm_model_matches_the_served_id_in_any_case(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    env = {"NEMOCLAW_PROVIDER": "vllm", "NEMOCLAW_VLLM_MODEL": "FAKE/Model"}
    choice = select("h100_x8", http, env, vllm_port=vllm_server.port)
    assert (choice.model, choice.model_source) == ("fake/model", "NEMOCLAW_VLLM_MODEL")


# --- NEMOCLAW_PROVIDER=install-vllm --------------------------------------------------------------------------------


def test_install_vllm_with_a_running_vllm_uses_it_with_a_note(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    choice = select("dgx_spark", http, {"NEMOCLAW_PROVIDER": "install-vllm"}, vllm_port=vllm_server.port)
    assert choice.key == "vllm" and choice.running
    assert "already answers" in choice.notes[0]


def test_install_vllm_without_a_profile_exit_3(http: httpx.Client) -> None:
    with pytest.raises(PreflightRefused) as caught:
        select("no_gpu", http, {"NEMOCLAW_PROVIDER": "install-vllm"})
    assert caught.value.message == NO_VLLM_PROFILE == "No vLLM install profile available for this host."
    assert caught.value.exit_code == 3


def test_install_vllm_on_generic_linux_needs_no_experimental_when_asked_by_provider(http: httpx.Client) -> None:
    choice = select("h100_x8", http, {"NEMOCLAW_PROVIDER": "install-vllm"})
    assert (choice.key, choice.model) == ("install-vllm", "nemotron-3-nano-4b")


def test_a_wizard_key_for_an_experimental_option_exit_3(http: httpx.Client) -> None:
    with pytest.raises(PreflightRefused) as caught:
        select("h100_x8", http, key="install-vllm")
    assert caught.value.exit_code == 3
    assert "experimental" in caught.value.message
    assert caught.value.remedy is not None and "NEMOCLAW_EXPERIMENTAL=1" in caught.value.remedy


def test_vllm_model_slug_bypasses_the_platform_filter(http: httpx.Client) -> None:
    env = {"NEMOCLAW_PROVIDER": "install-vllm", "NEMOCLAW_VLLM_MODEL": "DeepSeek-V4-Flash"}
    choice = select("h100_x8", http, env)
    assert (choice.model, choice.model_source) == ("deepseek-v4-flash", "NEMOCLAW_VLLM_MODEL")


def test_vllm_model_full_hf_id_maps_to_its_slug(http: httpx.Client) -> None:
    env = {"NEMOCLAW_PROVIDER": "install-vllm", "NEMOCLAW_VLLM_MODEL": "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"}
    assert select("h100_x8", http, env).model == "nemotron-3-nano-4b"


def test_unknown_vllm_model_exit_2(http: httpx.Client) -> None:
    with pytest.raises(UnknownModel) as caught:
        select("dgx_spark", http, {"NEMOCLAW_VLLM_MODEL": "no-such-model"})
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("Unknown NEMOCLAW_VLLM_MODEL='no-such-model'. Recognised values: ")


def test_gated_model_without_token_exit_3(http: httpx.Client) -> None:
    with pytest.raises(MissingToken) as caught:
        select("dgx_spark", http, {"NEMOCLAW_VLLM_MODEL": "deepseek-r1-distill-70b"})
    assert caught.value.exit_code == 3
    assert caught.value.details["variables"] == ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]


def test_gated_model_with_token(http: httpx.Client) -> None:
    env = {"NEMOCLAW_VLLM_MODEL": "deepseek-r1-distill-70b", "HUGGING_FACE_HUB_TOKEN": "hf_abcdefgh12345678"}
    assert select("dgx_spark", http, env).model == "deepseek-r1-distill-70b"


def test_gated_model_without_token_when_the_caller_asks_for_it_later(http: httpx.Client) -> None:
    menu, settings = menu_and_settings("dgx_spark", http, {"NEMOCLAW_VLLM_MODEL": "deepseek-r1-distill-70b"})
    choice = select_option(menu, settings, check_token=False)
    assert choice.model == "deepseek-r1-distill-70b"


# --- NIM and Ollama ------------------------------------------------------------------------------------------------


def test_nim_not_experimental_exit_3(http: httpx.Client) -> None:
    with pytest.raises(PreflightRefused) as caught:
        select("dgx_spark", http, {"NEMOCLAW_PROVIDER": "nim", "NGC_API_KEY": "nvapi-x"})
    assert caught.value.exit_code == 3
    assert caught.value.message == "NEMOCLAW_PROVIDER=nim does not fit this host: Local NIM is experimental"


def test_nim_model_from_env(http: httpx.Client) -> None:
    env = {"NEMOCLAW_PROVIDER": "nim", "NEMOCLAW_EXPERIMENTAL": "1", "NGC_API_KEY": "nvapi-x",
           "NEMOCLAW_MODEL": "meta/llama-3.1-8b-instruct"}
    choice = select("h100_x8", http, env)
    assert (choice.key, choice.model, choice.model_source) == ("nim", "meta/llama-3.1-8b-instruct", "NEMOCLAW_MODEL")


@pytest.mark.parametrize("wanted", ["nvidia/nemotron-3-nano-30b-a3b", "nemotron-3-nano-30b-a3b"])
def test_nim_full_catalog_name_from_env(http: httpx.Client, wanted: str) -> None:
    """Issue 11: NemoClaw's catalog name was refused with exit 2; the short name stays an alias."""
    env = {"NEMOCLAW_PROVIDER": "nim", "NEMOCLAW_EXPERIMENTAL": "1", "NGC_API_KEY": "nvapi-x",
           "NEMOCLAW_MODEL": wanted}
    choice = select("h100_x8", http, env)
    assert (choice.key, choice.model) == ("nim", "nvidia/nemotron-3-nano-30b-a3b")


def test_nim_model_too_big_exit_3(http: httpx.Client) -> None:
    env = {"NEMOCLAW_PROVIDER": "nim", "NEMOCLAW_EXPERIMENTAL": "1", "NGC_API_KEY": "nvapi-x",
           "NEMOCLAW_MODEL": "nvidia/llama-3.1-nemotron-70b-instruct"}
    with pytest.raises(InsufficientResources) as caught:
        select("jetson_orin", http, env)
    assert caught.value.exit_code == 3


def test_nim_unknown_model_exit_2(http: httpx.Client) -> None:
    env = {"NEMOCLAW_PROVIDER": "nim", "NEMOCLAW_EXPERIMENTAL": "1", "NGC_API_KEY": "nvapi-x",
           "NEMOCLAW_MODEL": "nope"}
    with pytest.raises(UnknownModel) as caught:
        select("h100_x8", http, env)
    assert caught.value.exit_code == 2


def test_nim_without_ngc_key_exit_3(http: httpx.Client) -> None:
    with pytest.raises(MissingToken) as caught:
        select("h100_x8", http, {"NEMOCLAW_PROVIDER": "nim", "NEMOCLAW_EXPERIMENTAL": "1"})
    assert "NGC_API_KEY" in caught.value.message


def test_ollama_not_installed_exit_3(http: httpx.Client) -> None:
    with pytest.raises(PreflightRefused) as caught:
        select("h100_x8", http, {"NEMOCLAW_PROVIDER": "ollama"})
    assert caught.value.exit_code == 3
    assert "Ollama is not installed" in caught.value.message
    assert caught.value.details["reason"] == "ollama-not-installed"


def test_ollama_model_from_env(http: httpx.Client) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as ollama:
        choice = select("h100_x8", http, {"NEMOCLAW_PROVIDER": "ollama", "NEMOCLAW_MODEL": "llama3.2:3b"},
                        ollama_port=ollama.port)
    assert (choice.key, choice.model, choice.model_source) == ("ollama", "llama3.2:3b", "NEMOCLAW_MODEL")


def test_ollama_default_model(http: httpx.Client) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as ollama:
        choice = select("h100_x8", http, {"NEMOCLAW_PROVIDER": "ollama"}, ollama_port=ollama.port)
    assert (choice.model, choice.model_source, choice.running) == ("qwen3.5:9b", "default", True)


# --- keys and requests ---------------------------------------------------------------------------------------------


def test_unknown_key_exit_2(http: httpx.Client) -> None:
    with pytest.raises(InvalidInput) as caught:
        select("dgx_spark", http, key="lmstudio")
    assert caught.value.exit_code == 2
    assert "install-vllm" in (caught.value.remedy or "")


def test_unknown_provider_in_the_environment_exit_2() -> None:
    with pytest.raises(InvalidInput) as caught:
        Settings.from_env({"NEMOCLAW_PROVIDER": "lmstudio"})
    assert caught.value.exit_code == 2


def test_key_wins_over_the_provider(http: httpx.Client) -> None:
    with FakeOllama() as ollama:
        choice = select("dgx_spark", http, {"NEMOCLAW_PROVIDER": "install-vllm"}, key="ollama",
                        ollama_port=ollama.port)
    assert (choice.key, choice.source) == ("ollama", "key")


def test_up_request_from_a_selection(http: httpx.Client) -> None:
    choice = select("h100_x8", http, {"NEMOCLAW_EXPERIMENTAL": "1"})
    request = choice.up_request(gpus="none", port=18123)
    assert isinstance(request, UpRequest)
    assert (request.runtime, request.model, request.port, request.gpus.mode) == (
        "vllm", "nemotron-3-nano-4b", 18123, "none")


def test_up_request_for_a_running_ollama(http: httpx.Client) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as ollama:
        choice = select("h100_x8", http, key="ollama", ollama_port=ollama.port)
    request = choice.up_request(port=ollama.port)
    assert (request.runtime, request.model, request.port) == ("ollama", "qwen3.5:9b", ollama.port)


def test_invalid_ollama_tag_exit_2(http: httpx.Client) -> None:
    with FakeOllama() as ollama, pytest.raises(InvalidInput) as caught:
        select("h100_x8", http, {"NEMOCLAW_MODEL": "bad tag!"}, key="ollama", ollama_port=ollama.port)
    assert caught.value.exit_code == 2


def test_up_request_refuses_a_served_model_the_registry_does_not_know(http: httpx.Client,
                                                                       vllm_server: FakeOpenAI) -> None:
    running = select("h100_x8", http, key="vllm", vllm_port=vllm_server.port)
    with pytest.raises(InvalidInput, match="not a registry model"):
        running.up_request()


def test_selection_serialises(http: httpx.Client) -> None:
    data = json.loads(json.dumps(select("dgx_station", http).to_dict()))
    assert data["key"] == "install-vllm" and data["model"] == "qwen3.6-27b"
    assert data["option"]["label"] == "Install vLLM (DGX Station)"
