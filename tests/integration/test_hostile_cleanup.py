"""Issue 12 on the real engine: clean-up that a second Ctrl-C cannot cut short, an interrupted create that leaves
no ``Created`` container, and a GPU request on an engine without the NVIDIA container toolkit (exit 3, with the
remedy, before anything is pulled)."""

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

from nemoclaw_runtime.kernel.errors import NoSuitableGpu
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager, gpu_runtime_missing
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest
from tests.fake_servers.fake_hf import FakeHub, tiny_model_files
from tests.fake_servers.fake_vllm import fake_vllm_files
from tests.helpers.docker_env import free_port, unique_name
from tests.helpers.images import build_busybox_image
from tests.helpers.registry import LocalRegistry, running_registry

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
MODEL_SLUG = "nemotron-3-nano-4b"
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
PINNED = "3fe6dab75665a93884214ad4b1b95cf02717d081"  # the registry's hf_revision for it


@pytest.fixture(scope="module")
def slow_vllm(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory,
              test_session_id: str) -> Iterator[str]:
    """A fake vLLM that takes a minute to answer, in a local registry (``up`` pulls it by digest)."""
    with running_registry(tmp_path_factory.mktemp("hostile-registry")) as registry:
        tag = f"nemoclaw-test/fake-vllm-slow-hostile:{test_session_id[:12]}"
        build_busybox_image(docker_client, tag, fake_vllm_files(),
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "FAKE_VLLM_DELAY_S": "60"},
                            cmd=["vllm", "serve", "fake/model", "--port", "8000", "--max-model-len", "4096"])
        _push(registry, docker_client, tag)
        yield registry.ref("fake/vllm-slow-hostile", "1")


def _push(registry: LocalRegistry, client: docker.DockerClient, tag: str) -> None:
    registry.push(client, tag, "fake/vllm-slow-hostile", "1")


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    chosen = unique_name("nrt-hostile")
    yield chosen
    for container in docker_client.containers.list(all=True, filters={"name": chosen}):
        container.remove(force=True)


@pytest.fixture
def env(fake_hf: FakeHub, tmp_path: Path) -> dict[str, str]:
    fake_hf.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
    return {**os.environ, "NEMOCLAW_GPU_SNAPSHOT": str(FIXTURES / "h100_x8.json"), "HF_ENDPOINT": fake_hf.url,
            "HF_HOME": str(tmp_path / "hf"), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
            "NEMOCLAW_VLLM_PORT": str(free_port())}


class Lines:
    """The stderr of a process, line by line, as it comes."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def wait_for(self, text: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_a_second_ctrl_c_during_the_clean_up_still_leaves_nothing(
        slow_vllm: str, env: dict[str, str], name: str, docker_client: docker.DockerClient) -> None:
    command = [sys.executable, "-m", "nemoclaw_runtime.cli.main", "up", "vllm", "--gpus", "none", "--model",
               MODEL_SLUG, "--image", slow_vllm, "--name", name]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    err = Lines(process.stderr)
    try:
        assert err.wait_for("==> Waiting for", 180), err.text
        assert docker_client.containers.list(filters={"name": name}), "the container never started"
        process.send_signal(signal.SIGINT)
        assert err.wait_for("stopping and removing container", 30), err.text  # it says what it does ...
        process.send_signal(signal.SIGINT)  # ... and the impatient second Ctrl-C does not cut it short
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err.text
    assert "Traceback" not in err.text
    assert "was stopped and removed" in err.text
    assert not docker_client.containers.list(all=True, filters={"name": name})


def test_an_interrupted_create_leaves_no_created_container(docker_client: docker.DockerClient, busybox_base: str,
                                                           test_labels: dict[str, str], name: str,
                                                           tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state")})
    engine = wiring.open_docker(settings)
    real_create = engine.create_container

    def create_then_ctrl_c(spec: ContainerSpec) -> str:
        real_create(spec)  # the engine made it ...
        raise KeyboardInterrupt  # ... and Ctrl-C came before its id did

    engine.create_container = create_then_ctrl_c  # type: ignore[method-assign]
    spec = ContainerSpec(name=name, runtime="vllm", image=busybox_base, command=("sleep", "60"),
                         labels=tuple(test_labels.items()), gpus=GpuRequest("none"), restart_policy=None)
    try:
        with pytest.raises(KeyboardInterrupt):
            DockerContainerManager(engine, settings).ensure_running(spec)
    finally:
        engine.close()
    assert not docker_client.containers.list(all=True, filters={"name": name})


@pytest.fixture
def no_toolkit(docker_client: docker.DockerClient) -> None:
    if not gpu_runtime_missing(docker_client.api.info()):
        pytest.skip("this engine has the NVIDIA container toolkit")


def test_a_gpu_request_without_the_toolkit_is_exit_3_before_any_pull(no_toolkit: None, tmp_path: Path,
                                                                     name: str) -> None:
    image = f"127.0.0.1:{free_port()}/never/pulled:1"  # a registry that is not there: a pull would be exit 4
    env = {**os.environ, "NEMOCLAW_GPU_SNAPSHOT": str(FIXTURES / "h100_x8.json"), "HOME": str(tmp_path),
           "NEMOCLAW_STATE_DIR": str(tmp_path / "state")}
    completed = subprocess.run([sys.executable, "-m", "nemoclaw_runtime.cli.main", "up", "ollama", "--image", image,
                                "--name", name, "--port", str(free_port())], env=env, capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL)
    assert completed.returncode == 3, completed.stderr
    assert "NVIDIA container toolkit" in completed.stderr and "nvidia-ctk runtime configure" in completed.stderr
    assert "Pulling" not in completed.stderr


def test_the_engines_own_refusal_of_gpus_is_exit_3_with_the_remedy(
        no_toolkit: None, docker_client: docker.DockerClient, busybox_base: str, test_labels: dict[str, str],
        name: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path)})
    engine = wiring.open_docker(settings)
    spec = ContainerSpec(name=name, runtime="vllm", image=busybox_base, command=("sleep", "1"),
                         labels=tuple(test_labels.items()), gpus=GpuRequest("all"), restart_policy=None)
    try:
        with pytest.raises(NoSuitableGpu) as caught:
            engine.start_container(engine.create_container(spec))
    finally:
        engine.close()
    assert caught.value.exit_code == 3 and caught.value.cause == "gpu-runtime-missing"
    assert "nvidia-container-toolkit" in (caught.value.remedy or "")
