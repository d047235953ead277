"""local_options: NemoClaw's menu rules on replayed GPU snapshots, with fake vLLM / Ollama servers on free ports,
a FakeDocker (or no engine) for image presence and an injected ``which`` for the Ollama binary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.onboarding.menu import KEY_INSTALL_VLLM, KEY_NIM, KEY_OLLAMA, KEY_VLLM, LocalOptions
from nemoclaw_runtime.runtimes.onboarding.options import local_options
from tests.fake_servers.fake_ollama import FakeOllama, FakeOllamaConfig
from tests.fake_servers.fake_openai import FakeOpenAI
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

GPU = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
LINUX_IMAGE = "nvcr.io/nvidia/vllm:26.03.post1-py3"
SPARK_IMAGE = "nvcr.io/nvidia/vllm:26.05.post1-py3"


def inventory(name: str) -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads((GPU / f"{name}.json").read_text()))


def no_ollama(name: str) -> str | None:
    return None


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        yield client


@pytest.fixture
def vllm_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def options_for(snapshot: str, http: httpx.Client, *, env: dict[str, str] | None = None, vllm_port: int | None = None,
                ollama_port: int | None = None, docker: Any = None, which: Any = no_ollama) -> LocalOptions:
    values = {"NEMOCLAW_VLLM_PORT": str(vllm_port or free_port()),
              "NEMOCLAW_OLLAMA_PORT": str(ollama_port or free_port()), **(env or {})}
    settings = Settings.from_env(values)
    return local_options(settings, inventory=inventory(snapshot), http=http, docker=docker, which=which)


def keys(menu: LocalOptions) -> list[str]:
    return [o.key for o in menu.options]


def reasons(menu: LocalOptions) -> dict[str, str]:
    return {a.key: a.reason for a in menu.absent}


# --- the matrix: snapshot x experimental, nothing running -------------------------------------------------------

MATRIX = [
    ("dgx_spark", False, [KEY_INSTALL_VLLM], {"vllm": "not-running", "nim": "not-experimental",
                                              "ollama": "ollama-not-installed"}),
    ("dgx_spark", True, [KEY_INSTALL_VLLM, KEY_NIM], {"vllm": "not-running", "ollama": "ollama-not-installed"}),
    ("dgx_station", False, [KEY_INSTALL_VLLM], {"vllm": "not-running", "nim": "not-experimental",
                                                "ollama": "ollama-not-installed"}),
    ("dgx_station", True, [KEY_INSTALL_VLLM, KEY_NIM], {"vllm": "not-running", "ollama": "ollama-not-installed"}),
    ("h100_x8", False, [], {"vllm": "not-running", "install-vllm": "not-experimental", "nim": "not-experimental",
                            "ollama": "ollama-not-installed"}),
    ("h100_x8", True, [KEY_INSTALL_VLLM, KEY_NIM], {"vllm": "not-running", "ollama": "ollama-not-installed"}),
    ("no_gpu", False, [], {"vllm": "not-running", "install-vllm": "no-gpu", "nim": "no-gpu",
                           "ollama": "ollama-not-installed"}),
    ("no_gpu", True, [], {"vllm": "not-running", "install-vllm": "no-gpu", "nim": "no-gpu",
                          "ollama": "ollama-not-installed"}),
]


@pytest.mark.parametrize(("snapshot", "experimental", "offered", "absent"), MATRIX)
def test_entries_and_absences_per_snapshot(http: httpx.Client, snapshot: str, experimental: bool,
                                           offered: list[str], absent: dict[str, str]) -> None:
    env = {"NEMOCLAW_EXPERIMENTAL": "1"} if experimental else {}
    menu = options_for(snapshot, http, env=env, docker=FakeDocker())
    assert keys(menu) == offered
    assert reasons(menu) == absent
    assert sum(o.suggested for o in menu.options) == (1 if KEY_INSTALL_VLLM in offered else 0)
    json.dumps(menu.to_dict())  # JSON-ready as it is


@pytest.mark.parametrize(("snapshot", "profile", "default"), [
    ("dgx_spark", "DGX Spark", "qwen3.6-35b-a3b-nvfp4"),
    ("dgx_station", "DGX Station", "qwen3.6-27b"),
    ("h100_x8", "Linux + NVIDIA GPU", "nemotron-3-nano-4b"),
])
def test_install_entry_names_the_profile_and_its_models(http: httpx.Client, snapshot: str, profile: str,
                                                        default: str) -> None:
    menu = options_for(snapshot, http, env={"NEMOCLAW_EXPERIMENTAL": "1"}, docker=FakeDocker())
    option = menu.get(KEY_INSTALL_VLLM)
    assert option is not None
    assert option.label == f"Install vLLM ({profile})"
    assert option.default_model == default
    assert option.models[0].id == default and option.models[0].default
    assert option.experimental is (snapshot == "h100_x8")
    assert option.image_present is False


def test_station_and_spark_models_follow_the_registry_picker(http: httpx.Client) -> None:
    spark = options_for("dgx_spark", http, docker=FakeDocker()).get(KEY_INSTALL_VLLM)
    linux = options_for("h100_x8", http, env={"NEMOCLAW_EXPERIMENTAL": "1"}, docker=FakeDocker()).get(KEY_INSTALL_VLLM)
    assert spark is not None and linux is not None
    assert [m.id for m in spark.models] == ["qwen3.6-35b-a3b-nvfp4", "qwen3.6-27b", "deepseek-r1-distill-70b",
                                            "nemotron-3-nano-4b"]
    assert [m.id for m in linux.models] == ["nemotron-3-nano-4b", "qwen3.6-27b", "deepseek-r1-distill-70b"]
    gated = linux.model("deepseek-r1-distill-70b")
    assert gated is not None and gated.gated and gated.token_variables == ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    assert "gated; requires HF token" in gated.label


def test_provider_install_vllm_offers_it_on_generic_linux_without_experimental(http: httpx.Client) -> None:
    menu = options_for("h100_x8", http, env={"NEMOCLAW_PROVIDER": "install-vllm"}, docker=FakeDocker())
    assert keys(menu) == [KEY_INSTALL_VLLM]
    assert reasons(menu)["nim"] == "not-experimental"


def test_start_label_when_the_pinned_image_is_present(http: httpx.Client) -> None:
    docker = FakeDocker()
    docker.add_image(SPARK_IMAGE)
    option = options_for("dgx_spark", http, docker=docker).get(KEY_INSTALL_VLLM)
    assert option is not None
    assert option.label == "Start vLLM (DGX Spark)"
    assert option.image == SPARK_IMAGE and option.image_present is True


def test_image_override_is_the_image_looked_for(http: httpx.Client) -> None:
    docker = FakeDocker()
    docker.add_image(SPARK_IMAGE)
    env = {"NEMOCLAW_VLLM_IMAGE": "127.0.0.1:5000/mirror/vllm:1"}
    option = options_for("dgx_spark", http, env=env, docker=docker).get(KEY_INSTALL_VLLM)
    assert option is not None
    assert option.image == "127.0.0.1:5000/mirror/vllm:1"
    assert option.label == "Install vLLM (DGX Spark)"


@pytest.mark.parametrize("engine", ["none", "down"])
def test_unreachable_engine_keeps_vllm_and_nim_listed_with_presence_unknown(http: httpx.Client, engine: str) -> None:
    docker: Any = None
    if engine == "down":
        docker = FakeDocker()
        docker.engine_up = False
    menu = options_for("dgx_spark", http, env={"NEMOCLAW_EXPERIMENTAL": "1"}, docker=docker)
    assert keys(menu) == [KEY_INSTALL_VLLM, KEY_NIM]
    assert not menu.engine_reachable
    for option in menu.options:
        assert option.image_present is None
        assert any("not reachable" in note for note in option.notes)
    assert menu.get(KEY_INSTALL_VLLM).label == "Install vLLM (DGX Spark)"  # type: ignore[union-attr]
    assert any("Docker engine not reachable" in note for note in menu.notes)


def test_env_model_bypasses_the_platform_filter(http: httpx.Client) -> None:
    env = {"NEMOCLAW_EXPERIMENTAL": "1", "NEMOCLAW_VLLM_MODEL": "deepseek-v4-flash"}
    option = options_for("h100_x8", http, env=env, docker=FakeDocker()).get(KEY_INSTALL_VLLM)
    assert option is not None
    assert option.default_model == "deepseek-v4-flash"
    assert option.models[0].id == "deepseek-v4-flash"


def test_gated_default_says_which_token(http: httpx.Client) -> None:
    env = {"NEMOCLAW_EXPERIMENTAL": "1", "NEMOCLAW_VLLM_MODEL": "deepseek-r1-distill-70b", "HF_TOKEN": "hf_x" * 4}
    option = options_for("h100_x8", http, env=env, docker=FakeDocker()).get(KEY_INSTALL_VLLM)
    assert option is not None
    assert option.needs_token and option.token_set
    assert option.token_variables == ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    assert "hf_x" not in json.dumps(option.to_dict())


def test_nim_needs_a_gpu_that_fits_and_an_ngc_key(http: httpx.Client) -> None:
    option = options_for("h100_x8", http, env={"NEMOCLAW_EXPERIMENTAL": "1"}, docker=FakeDocker()).get(KEY_NIM)
    assert option is not None
    assert option.label == "Local NVIDIA NIM [experimental]"
    assert option.needs_token and not option.token_set
    assert option.token_variables == ("NGC_API_KEY", "NVIDIA_INFERENCE_API_KEY", "NVIDIA_API_KEY")
    assert not option.suggested
    assert all(m.fits for m in option.models)


def test_nim_vram_too_small(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    small = dataclasses.replace(inventory("h100_x8"), memory_budget_mib=4096, total_vram_mib=4096)
    settings = Settings.from_env({"NEMOCLAW_EXPERIMENTAL": "1", "NEMOCLAW_VLLM_PORT": str(free_port()),
                                  "NEMOCLAW_OLLAMA_PORT": str(free_port())})
    menu = local_options(settings, inventory=small, http=http, docker=FakeDocker(), which=no_ollama)
    absent = menu.why_absent(KEY_NIM)
    assert absent is not None and absent.reason == "vram-too-small"
    assert absent.message == "Local NIM unavailable — GPU VRAM too small"


# --- a vLLM already running ---------------------------------------------------------------------------------------


def test_running_vllm_is_the_suggested_entry(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    menu = options_for("h100_x8", http, vllm_port=vllm_server.port, docker=FakeDocker())
    option = menu.get(KEY_VLLM)
    assert option is not None
    assert option.label == f"Local vLLM [experimental] (localhost:{vllm_server.port}) — running (suggested)"
    assert option.suggested and option.running
    assert option.default_model == "fake/model"
    assert option.context_window == 4096
    assert option.base_url == f"http://127.0.0.1:{vllm_server.port}/v1"
    assert reasons(menu)[KEY_INSTALL_VLLM] == "vllm-running"
    assert menu.suggested is option


def test_running_vllm_context_window_override(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    env = {"NEMOCLAW_CONTEXT_WINDOW": "8192"}
    option = options_for("h100_x8", http, env=env, vllm_port=vllm_server.port, docker=None).get(KEY_VLLM)
    assert option is not None and option.context_window == 8192


def test_a_foreign_server_on_the_vllm_port_is_not_vllm(http: httpx.Client) -> None:
    with FakeOllama(FakeOllamaConfig(foreign=True)) as foreign:
        menu = options_for("dgx_spark", http, vllm_port=foreign.port, docker=FakeDocker())
    assert reasons(menu)[KEY_VLLM] == "port-held"
    option = menu.get(KEY_INSTALL_VLLM)
    assert option is not None
    assert any("held by another server" in note for note in option.notes)


# --- Ollama -------------------------------------------------------------------------------------------------------


def test_running_ollama_lists_installed_models_and_prefers_nemotron(http: httpx.Client) -> None:
    with FakeOllama(models=["qwen3.5:9b", "nemotron-3-nano:30b"]) as ollama:
        menu = options_for("h100_x8", http, ollama_port=ollama.port, docker=FakeDocker())
    option = menu.get(KEY_OLLAMA)
    assert option is not None
    assert option.running and option.suggested
    assert option.label == f"Local Ollama (localhost:{ollama.port}) — running (suggested)"
    assert [m.id for m in option.models] == ["qwen3.5:9b", "nemotron-3-nano:30b"]
    assert all(m.installed for m in option.models)
    assert option.default_model == "nemotron-3-nano:30b"


def test_running_ollama_without_models_offers_fitting_starters(http: httpx.Client) -> None:
    with FakeOllama() as ollama:
        menu = options_for("jetson_orin", http, ollama_port=ollama.port, docker=FakeDocker())
    option = menu.get(KEY_OLLAMA)
    assert option is not None
    assert [m.id for m in option.models] == ["qwen3.5:9b"]  # compute-intensive starters skipped on Jetson
    assert option.default_model == "qwen3.5:9b"
    assert not any(m.installed for m in option.models)
    assert "No local Ollama models are installed yet. Choose one to pull and load now." in option.notes


def test_running_ollama_on_a_big_host_defaults_to_the_largest_starter(http: httpx.Client) -> None:
    with FakeOllama() as ollama:
        option = options_for("h100_x8", http, ollama_port=ollama.port).get(KEY_OLLAMA)
    assert option is not None
    assert [m.id for m in option.models] == ["qwen3.5:9b", "nemotron-3-nano:30b", "qwen3.6:35b"]
    assert option.default_model == "qwen3.6:35b"


def test_running_ollama_without_a_gpu_offers_only_the_fallback(http: httpx.Client) -> None:
    with FakeOllama() as ollama:
        menu = options_for("no_gpu", http, ollama_port=ollama.port)
    option = menu.get(KEY_OLLAMA)
    assert option is not None and option.suggested
    assert [m.id for m in option.models] == ["qwen3.5:9b"]


def test_installed_but_not_running_ollama_is_listed_and_never_run(http: httpx.Client) -> None:
    asked: list[str] = []

    def which(name: str) -> str | None:
        asked.append(name)
        return "/usr/local/bin/ollama"

    menu = options_for("h100_x8", http, which=which)
    option = menu.get(KEY_OLLAMA)
    assert asked == ["ollama"]
    assert option is not None and not option.running and option.suggested
    assert option.label == f"Local Ollama (localhost:{option.port}) — installed, not running (suggested)"
    assert "ollama serve" in option.notes[0]


def test_installed_ollama_is_not_suggested_over_managed_vllm(http: httpx.Client) -> None:
    menu = options_for("dgx_spark", http, which=lambda name: "/usr/bin/ollama", docker=FakeDocker())
    assert menu.suggested is not None and menu.suggested.key == KEY_INSTALL_VLLM
    assert keys(menu) == [KEY_INSTALL_VLLM, KEY_OLLAMA]


def test_running_ollama_is_suggested_over_managed_vllm_but_not_over_running_vllm(
        http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as ollama:
        without = options_for("dgx_spark", http, ollama_port=ollama.port, docker=FakeDocker())
        with_vllm = options_for("dgx_spark", http, ollama_port=ollama.port, vllm_port=vllm_server.port)
    assert without.suggested is not None and without.suggested.key == KEY_OLLAMA
    assert with_vllm.suggested is not None and with_vllm.suggested.key == KEY_VLLM
    ollama_entry = with_vllm.get(KEY_OLLAMA)
    assert ollama_entry is not None and not ollama_entry.suggested and "(suggested)" not in ollama_entry.label


def test_foreign_listener_on_the_ollama_port(http: httpx.Client) -> None:
    with FakeOllama(FakeOllamaConfig(foreign=True)) as foreign:
        menu = options_for("h100_x8", http, ollama_port=foreign.port, which=lambda name: "/usr/bin/ollama")
    absent = menu.why_absent(KEY_OLLAMA)
    assert absent is not None and absent.reason == "port-held"
    assert "is not Ollama" in absent.message


def test_too_old_ollama(http: httpx.Client) -> None:
    with FakeOllama(FakeOllamaConfig(version="0.6.2")) as old:
        menu = options_for("h100_x8", http, ollama_port=old.port)
    absent = menu.why_absent(KEY_OLLAMA)
    assert absent is not None and absent.reason == "ollama-too-old"
    assert absent.remedy is not None and "upgrade" in absent.remedy.lower()


def test_everything_serialises(http: httpx.Client, vllm_server: FakeOpenAI) -> None:
    with FakeOllama(models=["qwen3.5:9b"]) as ollama:
        menu = options_for("dgx_station", http, env={"NEMOCLAW_EXPERIMENTAL": "1"}, vllm_port=vllm_server.port,
                           ollama_port=ollama.port, docker=FakeDocker())
    data = json.loads(json.dumps(menu.to_dict()))
    assert data["suggested"] == "vllm"
    assert [o["key"] for o in data["options"]] == ["vllm", "nim", "ollama"]
    assert {a["key"]: a["reason"] for a in data["absent"]} == {"install-vllm": "vllm-running"}
    assert data["host"]["gpu_profile"] == "dgx-station"


def test_a_given_engine_is_used_and_left_open(http: httpx.Client) -> None:
    docker = FakeDocker()
    menu = options_for("dgx_spark", http, docker=docker)
    assert menu.engine_reachable and menu.engine_error is None
    assert ("ping", "") in docker.calls
    assert [c for c in docker.calls if c[0] == "image_inspect"] == [("image_inspect", SPARK_IMAGE)]
    assert docker.write_calls == []  # listing options never changes the engine
    assert not docker.closed


def test_auto_connects_from_the_settings(http: httpx.Client, tmp_path: Path) -> None:
    settings = Settings.from_env({"DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}",
                                  "NEMOCLAW_VLLM_PORT": str(free_port()), "NEMOCLAW_OLLAMA_PORT": str(free_port())})
    menu = local_options(settings, inventory=inventory("dgx_spark"), http=http, which=no_ollama)
    assert not menu.engine_reachable
    assert menu.engine_error and "none.sock" in menu.engine_error
    assert keys(menu) == [KEY_INSTALL_VLLM]


def test_installed_pool_default_skips_a_preferred_model_that_does_not_fit(http: httpx.Client) -> None:
    import dataclasses

    small = dataclasses.replace(inventory("h100_x8"), available_memory_mib=20_000)
    with FakeOllama(models=["nemotron-3-nano:30b", "qwen3.5:9b"]) as ollama:
        settings = Settings.from_env({"NEMOCLAW_VLLM_PORT": str(free_port()),
                                      "NEMOCLAW_OLLAMA_PORT": str(ollama.port)})
        menu = local_options(settings, inventory=small, http=http, docker=None, which=no_ollama)
    option = menu.get(KEY_OLLAMA)
    assert option is not None
    assert option.default_model == "qwen3.5:9b"
    assert [m.fits for m in option.models] == [False, True]
