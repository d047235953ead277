"""examples/wizard.py runs end to end as a subprocess: a replayed generic Linux NVIDIA snapshot with
NEMOCLAW_EXPERIMENTAL=1, the fake vLLM image from a local registry (NEMOCLAW_VLLM_IMAGE), weights of the registry's
nemotron-3-nano-4b from the fake Hugging Face hub (HF_ENDPOINT), no GPUs for the container, a free port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.docker_env import free_port, unique_name
from tests.support.fake_hf import FakeHub, tiny_model_files
from tests.support.fake_vllm import fake_vllm_image  # noqa: F401  (fixture)
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
WIZARD = ROOT / "examples" / "wizard.py"
SNAPSHOT = ROOT / "fixtures" / "gpu" / "h100_x8.json"  # profile linux-nvidia: managed vLLM needs EXPERIMENTAL
MODEL_SLUG = "nemotron-3-nano-4b"  # the Linux profile's default; its HF id is what the fake hub serves
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
WIZARD_TIMEOUT_S = 240


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique container name (never the shared default ``nemoclaw-vllm``), removed after the test."""
    chosen = unique_name("wizard-vllm")
    yield chosen
    try:
        docker_client.containers.get(chosen).remove(force=True)
    except docker.errors.NotFound:
        pass


@pytest.fixture
def image(docker_client: docker.DockerClient, local_registry: LocalRegistry, fake_vllm_image: str) -> str:  # noqa: F811
    repo = unique_name("wizard/fake-vllm")
    local_registry.push(docker_client, fake_vllm_image, repo, "1")
    ref = local_registry.ref(repo, "1")
    docker_client.images.remove(ref)  # untag only (the session tag stays): the wizard must offer "Install"
    return ref


def test_wizard_brings_up_the_fake_vllm_and_prints_the_base_url(
        image: str, name: str, fake_hf: FakeHub, tmp_path: Path, docker_client: docker.DockerClient) -> None:
    fake_hf.add_repo(MODEL_ID, tiny_model_files())
    port = free_port()
    env = {
        **os.environ,
        "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT),
        "NEMOCLAW_EXPERIMENTAL": "1",
        "NEMOCLAW_VLLM_IMAGE": image,
        "NEMOCLAW_VLLM_MODEL": MODEL_SLUG,
        "NEMOCLAW_VLLM_PORT": str(port),
        "NEMOCLAW_OLLAMA_PORT": str(free_port()),
        "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
        "HF_ENDPOINT": fake_hf.url,
        "HF_HOME": str(tmp_path / "hf"),
    }
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
