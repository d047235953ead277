"""examples/wizard.py runs end to end as a subprocess: a replayed generic Linux NVIDIA snapshot with
NEMOCLAW_EXPERIMENTAL=1, the fake vLLM image from a local registry (NEMOCLAW_VLLM_IMAGE), weights of the registry's
nemotron-3-nano-4b from the fake Hugging Face hub (HF_ENDPOINT), no GPUs for the container, a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.fake_servers.fake_hf import FakeHub, tiny_model_files
from tests.fake_servers.fake_vllm import fake_vllm_files, fake_vllm_image  # noqa: F401  (fixture)
from tests.helpers.docker_env import free_port, removed_after, unique_name
from tests.helpers.images import build_busybox_image, unique_tag
from tests.helpers.registry import LocalRegistry

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
WIZARD = ROOT / "examples" / "wizard.py"
SNAPSHOT = ROOT / "fixtures" / "gpu" / "h100_x8.json"  # profile linux-nvidia: managed vLLM needs EXPERIMENTAL
MODEL_SLUG = "nemotron-3-nano-4b"  # the Linux profile's default; its HF id is what the fake hub serves
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
PINNED = "3fe6dab75665a93884214ad4b1b95cf02717d081"  # the registry's hf_revision for it
WIZARD_TIMEOUT_S = 240
CANCEL_WITHIN_S = 60  # generous: the wizard must exit well before the 60 s load the slow fake vLLM pretends


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique container name (never the shared default ``nemoclaw-vllm``), removed after the test."""
    yield from removed_after(docker_client, "wizard-vllm")


def wizard_env(tmp_path: Path, image: str, hub: FakeHub, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT),
        "NEMOCLAW_EXPERIMENTAL": "1",
        "NEMOCLAW_VLLM_IMAGE": image,
        "NEMOCLAW_VLLM_MODEL": MODEL_SLUG,
        "NEMOCLAW_VLLM_PORT": str(port),
        "NEMOCLAW_OLLAMA_PORT": str(free_port()),
        "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
    }


@pytest.fixture
def image(docker_client: docker.DockerClient, local_registry: LocalRegistry, fake_vllm_image: str) -> str:  # noqa: F811
    repo = unique_name("wizard/fake-vllm")
    local_registry.push(docker_client, fake_vllm_image, repo, "1")
    ref = local_registry.ref(repo, "1")
    docker_client.images.remove(ref)  # untag only (the session tag stays): the wizard must offer "Install"
    return ref


def test_wizard_brings_up_the_fake_vllm_and_prints_the_base_url(
        image: str, name: str, fake_hf: FakeHub, tmp_path: Path, docker_client: docker.DockerClient) -> None:
    fake_hf.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
    port = free_port()
    env = wizard_env(tmp_path, image, fake_hf, port)
    completed = subprocess.run([sys.executable, str(WIZARD), "install-vllm", "--gpus", "none", "--name", name],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=WIZARD_TIMEOUT_S,
                               check=False)
    assert completed.returncode == 0, completed.stderr
    base_url = f"http://127.0.0.1:{port}/v1"
    assert completed.stdout.strip().splitlines()[-1] == base_url
    assert "Install vLLM (Linux + NVIDIA GPU)" in completed.stderr  # the image was not present before
    assert "Pulling" in completed.stderr
    assert "==> " in completed.stderr  # phases rendered from the typed events
    assert fake_hf.requests_to(f"/{MODEL_ID}/resolve/"), "the weights came from the fake hub"
    container = docker_client.containers.get(name)
    assert container.status == "running"
    assert container.attrs["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1",
                                                                          "HostPort": str(port)}]
    container.remove(force=True)  # stop it: the fixture also does, whatever happened


def test_wizard_refuses_provider_vllm_with_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT), "NEMOCLAW_PROVIDER": "vllm",
           "NEMOCLAW_VLLM_PORT": str(free_port()), "NEMOCLAW_OLLAMA_PORT": str(free_port()),
           "NEMOCLAW_STATE_DIR": str(tmp_path / "state")}
    completed = subprocess.run([sys.executable, str(WIZARD)], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=WIZARD_TIMEOUT_S, check=False)
    assert completed.returncode == 3
    assert "no vLLM answers" in completed.stderr
    assert completed.stdout == ""


@pytest.fixture
def slow_image(docker_client: docker.DockerClient, local_registry: LocalRegistry) -> str:
    """A fake vLLM that "loads" for 60 s, pushed to the local registry and untagged locally."""
    tag = unique_tag("fake-vllm-slow")
    build_busybox_image(docker_client, tag, fake_vllm_files(),
                        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "FAKE_VLLM_DELAY_S": "60"},
                        cmd=["vllm", "serve", "fake/model", "--port", "8000", "--max-model-len", "4096"])
    repo = unique_name("wizard/fake-vllm-slow")
    local_registry.push(docker_client, tag, repo, "1")
    ref = local_registry.ref(repo, "1")
    docker_client.images.remove(ref)
    return ref


def test_ctrl_c_cancels_through_the_token_and_leaves_nothing(
        slow_image: str, name: str, fake_hf: FakeHub, tmp_path: Path, docker_client: docker.DockerClient) -> None:
    fake_hf.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
    env = wizard_env(tmp_path, slow_image, fake_hf, free_port())
    wizard = subprocess.Popen([sys.executable, str(WIZARD), "install-vllm", "--gpus", "none", "--name", name],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    waiting = threading.Event()

    def read_stderr() -> None:
        assert wizard.stderr is not None
        for line in wizard.stderr:
            lines.append(line)
            if "Waiting for" in line:
                waiting.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert waiting.wait(WIZARD_TIMEOUT_S), "".join(lines)
        assert docker_client.containers.get(name).status == "running"
        wizard.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = wizard.wait(CANCEL_WITHIN_S)
        assert time.monotonic() - started < CANCEL_WITHIN_S
    finally:
        if wizard.poll() is None:
            wizard.kill()
            wizard.wait()
    reader.join(5)
    output = "".join(lines)
    assert code == 130, output
    assert "Cancelling" in output
    assert wizard.stdout is not None and wizard.stdout.read() == ""  # no base URL
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)  # nothing half-started was left behind


def test_the_wizards_menu_reads_image_presence_from_the_real_engine(busybox_base: str, tmp_path: Path) -> None:
    import httpx

    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes.onboarding.options import local_options

    def menu_for(image: str) -> str | None:
        settings = Settings.from_env({**os.environ, "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT),
                                      "NEMOCLAW_EXPERIMENTAL": "1", "NEMOCLAW_VLLM_IMAGE": image,
                                      "NEMOCLAW_VLLM_PORT": str(free_port()), "NEMOCLAW_OLLAMA_PORT": str(free_port())})
        with httpx.Client(trust_env=False) as http:
            menu = local_options(settings, http=http, which=lambda name: None)  # docker: AUTO, the real engine
        assert menu.engine_reachable, menu.engine_error
        option = menu.get("install-vllm")
        return option.label if option is not None else None

    assert menu_for(busybox_base) == "Start vLLM (Linux + NVIDIA GPU)"
    assert menu_for(unique_tag("not-there")) == "Install vLLM (Linux + NVIDIA GPU)"
