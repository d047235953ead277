"""`up vllm` end to end on the real engine: a replayed GPU snapshot, `--gpus none`, the fake vLLM image from the
local registry, weights from the fake Hugging Face hub. Serve, list, reuse, stop; gated, crash, restart loop,
timeout, port taken, adopt and cancel."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled
from nemoclaw_runtime.kernel.events import Event, PhaseChanged
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from tests.fake_servers.fake_hf import FakeHub, tiny_model_files
from tests.fake_servers.fake_vllm import push_fake_vllm_variants, start_fake_vllm
from tests.helpers.docker_env import removed_after, serve_environment, unique_name
from tests.helpers.registry import LocalRegistry, running_registry

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
MODEL_SLUG = "nemotron-3-nano-4b"
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
PINNED = "3fe6dab75665a93884214ad4b1b95cf02717d081"  # the registry's hf_revision for it
GATED_SLUG = "deepseek-r1-distill-70b"
GATED_ID = "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"
VARIANTS = {
    "ok": {},
    "slow": {"FAKE_VLLM_DELAY_S": "60"},
    "oom": {"FAKE_VLLM_CRASH": "oom"},
    "loop": {"FAKE_VLLM_RESTART_LOOP": "1"},
}


@pytest.fixture(scope="module")
def module_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    with running_registry(tmp_path_factory.mktemp("vllm-registry")) as registry:
        yield registry


@pytest.fixture(scope="module")
def vllm_images(docker_client: docker.DockerClient, module_registry: LocalRegistry,
                test_session_id: str) -> dict[str, str]:
    """One fake vLLM image per behaviour, pushed to the local registry (what `--image` points at)."""
    return push_fake_vllm_variants(docker_client, module_registry, VARIANTS, prefix="vllm", session=test_session_id)


@pytest.fixture
def hub(fake_hf: FakeHub) -> FakeHub:
    fake_hf.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
    fake_hf.add_repo(GATED_ID, tiny_model_files(), gated=True)
    return fake_hf


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    return serve_environment(monkeypatch, hub.url, tmp_path)


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique container name, removed after the test whatever happened."""
    yield from removed_after(docker_client, "nrt-vllm")


def _up(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = run(["up", "vllm", "--gpus", "none", "--json", *args])
    captured = capsys.readouterr()
    try:
        document = json.loads(captured.out)
    except json.JSONDecodeError:
        document = None
    return code, document, captured.err


def test_up_serves_ps_lists_second_up_reuses_stop_removes(
        vllm_images: dict[str, str], env: dict[str, str], name: str, hub: FakeHub,
        docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    port = env["NEMOCLAW_VLLM_PORT"]
    code, result, err = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)
    assert code == 0, err
    assert result["base_url"] == f"http://127.0.0.1:{port}/v1"
    assert result["served_model_id"] == MODEL_ID and result["context_window"] == 262144
    assert result["digest"].startswith("sha256:") and not result["reused"] and not result["adopted"]
    assert result["validated_api"] == "openai-completions"
    assert hub.requests_to(f"/{MODEL_ID}/resolve/"), "weights were prefetched on the host"
    attrs = docker_client.containers.get(name).attrs
    assert attrs["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": port}]
    assert attrs["HostConfig"]["IpcMode"] == "host"
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert "HF_HUB_OFFLINE=1" in attrs["Config"]["Env"]
    assert attrs["Config"]["Cmd"][:3] == ["vllm", "serve", MODEL_ID]
    cmd = attrs["Config"]["Cmd"]
    assert cmd[cmd.index("--revision") + 1] == PINNED and result["weights_revision"] == PINNED
    assert attrs["Config"]["Labels"]["io.nemoclaw.runtime.weights-revision"] == PINNED
    assert attrs["Config"]["Image"].endswith("@" + result["digest"])

    assert run(["ps", "--json"]) == 0
    listed = [c for c in json.loads(capsys.readouterr().out) if c["name"] == name]
    assert listed and listed[0]["runtime"] == "vllm" and listed[0]["state"] == "running"
    assert listed[0]["weights_revision"] == PINNED

    started = time.monotonic()
    code, again, err = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)
    assert code == 0, err
    assert again["reused"] and again["container_id"] == result["container_id"]
    assert time.monotonic() - started < 5  # generous: the engine is shared; bench/ measures the real figure

    assert run(["stop", name]) == 0
    capsys.readouterr()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)


def test_gated_model_without_token_is_refused_before_anything(
        vllm_images: dict[str, str], env: dict[str, str], name: str, hub: FakeHub,
        docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, document, _ = _up(capsys, "--model", GATED_SLUG, "--image", vllm_images["ok"], "--name", name)
    assert code == 3 and document["error"] == "MissingToken"
    assert "HF_TOKEN" in document["message"] and "HUGGING_FACE_HUB_TOKEN" in document["message"]
    assert hub.requests == [] and not docker_client.containers.list(all=True, filters={"name": name})


def test_gated_model_with_a_refused_token_names_the_licence_page(
        vllm_images: dict[str, str], env: dict[str, str], name: str, hub: FakeHub,
        monkeypatch: pytest.MonkeyPatch, docker_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrong123")
    code, document, err = _up(capsys, "--model", GATED_SLUG, "--image", vllm_images["ok"], "--name", name)
    assert code == 3 and document["error"] == "AccessDenied"
    assert GATED_ID in (document["remedy"] or "") + document["message"]
    assert "hf_wrongwrongwrong123" not in json.dumps(document) + err
    assert not docker_client.containers.list(all=True, filters={"name": name})


def test_oom_crash_fails_fast_with_cause_and_keeps_the_container(
        vllm_images: dict[str, str], env: dict[str, str], name: str,
        docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, document, _ = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["oom"], "--name", name,
                            "--timeout", "300")
    assert code == 5 and document["cause"] == "cuda-oom"
    assert any("CUDA out of memory" in line for line in document["log_tail"])
    assert time.monotonic() - started < 60  # fail fast: nowhere near the 300 s timeout
    assert docker_client.containers.get(name).status in ("exited", "created")
    assert run(["logs", name, "--tail", "5"]) == 0
    assert run(["stop", name]) == 0


def test_restart_loop_fails_fast(vllm_images: dict[str, str], env: dict[str, str], name: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, document, _ = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["loop"], "--name", name,
                            "--timeout", "300")
    assert code == 5 and document["error"] == "ContainerExited"
    assert time.monotonic() - started < 90


def test_timeout_is_exit_5_with_the_log_tail(vllm_images: dict[str, str], env: dict[str, str], name: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, document, _ = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["slow"], "--name", name,
                            "--timeout", "4")
    assert code == 5 and document["error"] == "ReadinessTimeout"
    assert document["log_tail"]


def test_port_held_by_a_foreign_server_is_refused(
        vllm_images: dict[str, str], env: dict[str, str], name: str, busybox_base: str,
        docker_client: docker.DockerClient, test_labels: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    port = int(env["NEMOCLAW_VLLM_PORT"])
    foreign = docker_client.containers.run(
        busybox_base, ["sh", "-c", "while true; do echo -e 'HTTP/1.0 200 OK\\r\\n\\r\\nhello' | nc -l -p 8000; done"],
        detach=True, ports={"8000/tcp": ("127.0.0.1", port)}, labels=test_labels, name=unique_name("foreign"))
    try:
        _wait_port(port)
        code, document, _ = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)
        assert code == 3 and document["error"] == "PortInUse"
        assert str(port) in document["message"]
        foreign.reload()
        assert foreign.status == "running"  # never touched
    finally:
        foreign.remove(force=True)


def test_a_foreign_vllm_serving_the_model_is_adopted(
        vllm_images: dict[str, str], env: dict[str, str], name: str, docker_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    port = int(env["NEMOCLAW_VLLM_PORT"])
    foreign = start_fake_vllm(docker_client, vllm_images["ok"], model=MODEL_ID, port=port, max_model_len=32768)
    try:
        _wait_models(port)
        code, document, err = _up(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)
        assert code == 0, err
        assert document["adopted"] and document["context_window"] == 32768 and document["name"] is None
        assert not docker_client.containers.list(all=True, filters={"name": name})
    finally:
        foreign.remove(force=True)


def test_cancel_during_the_wait_leaves_no_container(
        vllm_images: dict[str, str], env: dict[str, str], name: str,
        docker_client: docker.DockerClient) -> None:
    settings = Settings.from_env()
    cancel = CancelToken()

    def cancel_when_waiting(event: Event) -> None:
        if isinstance(event, PhaseChanged) and event.phase == "wait":
            threading.Timer(1.0, cancel.cancel).start()

    request = pipeline.make_request("vllm", model=MODEL_SLUG, image=vllm_images["slow"], name=name, gpus="none")
    with pytest.raises(Cancelled):
        pipeline.up(request, settings=settings, events=cancel_when_waiting, cancel=cancel)
    assert not docker_client.containers.list(all=True, filters={"name": name})


def _wait_port(port: int, seconds: float = 20) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


def _wait_models(port: int, seconds: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the fake vLLM on {port} never answered")


def test_ctrl_c_during_the_wait_exits_130_and_leaves_nothing(
        vllm_images: dict[str, str], env: dict[str, str], name: str, docker_client: docker.DockerClient) -> None:
    import os
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "nemoclaw_runtime.cli.main", "up", "vllm", "--gpus", "none", "--model",
               MODEL_SLUG, "--image", vllm_images["slow"], "--name", name]
    process = subprocess.Popen(command, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not docker_client.containers.list(filters={"name": name}):
            time.sleep(0.2)
        assert docker_client.containers.list(filters={"name": name}), "the container never started"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert not docker_client.containers.list(all=True, filters={"name": name})
