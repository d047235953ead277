"""``up ollama`` in container mode, through the CLI in-process, with the fake Ollama image pulled (digest-pinned)
from a session registry: managed container with a model volume, streamed model pull, validation, reuse, ``ps``,
the unload hook and ``stop``; refusals and failures with the container left as the pipeline promises.

The containers are created by the product (no test-session label), so every test removes its own by name, with
its model volume (``<name>-models``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, ContainerState
from nemoclaw_runtime.runtimes.drivers.ollama import unload_before_stop
from tests.fake_servers.fake_ollama_image import (  # noqa: F401  (fixture)
    FakeOllamaRegistry,
    fake_ollama_registry,
    remove_ollama_container,
    unique_ollama_name,
)
from tests.helpers.docker_env import free_port

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
INSTALLED = {"FAKE_OLLAMA_MODELS": "qwen3.5:9b"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPU_FIXTURES / "no_gpu.json"))  # → --gpus none, CPU note
    monkeypatch.setenv("NEMOCLAW_PULL_STALL_TIMEOUT", "2")


@pytest.fixture
def images(fake_ollama_registry: FakeOllamaRegistry) -> FakeOllamaRegistry:  # noqa: F811 (the fixture)
    """The session's fake Ollama variants (built and pushed on first use)."""
    return fake_ollama_registry


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique container name; the container and its volume are removed afterwards whatever happened."""
    chosen = unique_ollama_name()
    yield chosen
    remove_ollama_container(docker_client, chosen)


def up(capsys: pytest.CaptureFixture[str], image: str, name: str, port: int,
       *extra: str) -> tuple[int, Any, list[dict[str, Any]]]:
    code = run(["up", "ollama", "--image", image, "--name", name, "--port", str(port), "--json", *extra])
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    return code, json.loads(captured.out), events


def test_container_mode_end_to_end(capsys: pytest.CaptureFixture[str], docker_client: docker.DockerClient,
                                   images: FakeOllamaRegistry, name: str) -> None:
    image, port = images.ref(), free_port()
    code, result, events = up(capsys, image, name, port)
    assert code == 0, result
    assert (result["name"], result["image"], result["adopted"], result["reused"]) == (name, image, False, False)
    assert result["digest"].startswith("sha256:") and result["container_id"]
    assert result["model"] == result["served_model_id"] == "qwen3.5:9b"  # no GPU, nothing installed: the fallback
    assert result["base_url"] == f"http://127.0.0.1:{port}/v1" and result["validated_api"] == "ollama-generate"
    progress = [e for e in events if e["event"] == "progress" and e["task"] == "model"]
    assert progress and progress[-1]["done_bytes"] == progress[-1]["total_bytes"] == 4000

    attrs = docker_client.containers.get(name).attrs
    assert [(m["Type"], m["Name"], m["Destination"]) for m in attrs["Mounts"]] == [
        ("volume", f"{name}-models", "/root/.ollama")]
    assert "OLLAMA_HOST=0.0.0.0:11434" in attrs["Config"]["Env"]
    assert attrs["HostConfig"]["PortBindings"] == {"11434/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert not attrs["HostConfig"].get("DeviceRequests")  # no usable GPU: runs on the CPU

    # Same spec again: reused, and the model is in the volume now, so nothing is pulled.
    code, again, events = up(capsys, image, name, port)
    assert code == 0 and again["reused"] is True and again["container_id"] == result["container_id"]
    assert not [e for e in events if e["event"] == "progress" and e["task"] == "model"]

    assert run(["ps", "--json", "--runtime", "ollama"]) == 0
    listed = {view["name"]: view for view in json.loads(capsys.readouterr().out)}
    assert listed[name]["runtime"] == "ollama" and listed[name]["state"] == "running"

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert [m["name"] for m in http.get(f"{base}/api/ps").json()["models"]] == ["qwen3.5:9b"]
        info = ContainerInfo(id=result["container_id"], name=name, image=image, state=ContainerState("running"),
                             labels=docker_client.containers.get(name).labels)
        unload_before_stop(http=http)(info)
        assert http.get(f"{base}/api/ps").json()["models"] == []

    assert run(["stop", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": [name]}
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})


def test_no_tools_exits_3_then_allowed(capsys: pytest.CaptureFixture[str], docker_client: docker.DockerClient,
                                       images: FakeOllamaRegistry, name: str) -> None:
    image, port = images.ref({**INSTALLED, "FAKE_OLLAMA_NO_TOOLS": "1"}), free_port()
    code, error, _ = up(capsys, image, name, port)
    assert code == 3 and error["error"] == "UnsupportedRuntime"
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})  # refused: nothing left
    code, result, _ = up(capsys, image, name, port, "--allow-no-tools")
    assert code == 0, result
    assert result["model"] == "qwen3.5:9b"


def test_runner_crash_exits_5_and_keeps_the_container_for_logs(
        capsys: pytest.CaptureFixture[str], docker_client: docker.DockerClient,
        images: FakeOllamaRegistry, name: str) -> None:
    image = images.ref({**INSTALLED, "FAKE_OLLAMA_CRASH": "1"})
    code, error, _ = up(capsys, image, name, free_port())
    assert code == 5 and error["error"] == "ValidationFailed" and error["cause"] == "ollama-runner-crash"
    assert docker_client.containers.get(name).status == "exited"  # stopped, kept for `logs`
    assert run(["logs", name]) == 0
    assert "llama runner process has terminated" in capsys.readouterr().out


def test_stalled_model_pull_exits_4(capsys: pytest.CaptureFixture[str], images: FakeOllamaRegistry,
                                    name: str) -> None:
    image = images.ref({"FAKE_OLLAMA_PULL_STALL": "1"})
    code, error, _ = up(capsys, image, name, free_port())
    assert code == 4 and error["error"] == "PullStalled"
