"""The fake vLLM image plays a Ray cluster: head and workers (same image, network_mode=host) join over a line
protocol, `ray status` answers in Ray's format, and `vllm serve --distributed-executor-backend ray` checks the
cluster's GPUs before serving. Two containers on one engine share the host network: the head listens on
127.0.0.1:<free port> and the worker connects there, as a worker on a second engine of the same machine would."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.fake_servers.fake_vllm import (
    build_fake_vllm_image,
    fake_vllm_image,  # noqa: F401  (fixture)
    ray_head_command,
    ray_worker_command,
    start_fake_ray,
)
from tests.helpers.docker_env import free_port

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

GENEROUS_S = 60.0  # bounds for "happened soon": far above any noisy machine, far below the defaults' worst case
MODEL = "acme/tiny-model"
VARIANTS = {
    "worker-exit": {"FAKE_RAY_FAIL": "worker-exit", "FAKE_RAY_FAIL_AFTER_S": "2"},
    "join": {"FAKE_RAY_FAIL": "join"},
    "head-exit": {"FAKE_RAY_FAIL": "head-exit", "FAKE_RAY_FAIL_AFTER_S": "2"},
}


@pytest.fixture(scope="module")
def variant_images(docker_client: docker.DockerClient, test_session_id: str) -> dict[str, str]:
    """One image per failure switch, the switch baked into the image's env (as the lead's tests do)."""
    tags = {}
    for variant, env in VARIANTS.items():
        tag = f"nemoclaw-test/fake-vllm-ray-{variant}:{test_session_id[:12]}"
        build_fake_vllm_image(docker_client, tag, env)
        tags[variant] = tag
    return tags


@pytest.fixture
def image(fake_vllm_image: str) -> str:  # noqa: F811  (the fixture)
    """The plain fake vLLM image (no switch)."""
    return fake_vllm_image


@pytest.fixture
def node(docker_client: docker.DockerClient) -> Iterator[Callable[..., Any]]:
    """Start host-network containers of the image; every one is removed afterwards."""
    started: list[Any] = []

    def run(image: str, command: list[str], **env: str) -> Any:
        container = start_fake_ray(docker_client, image, command, env=env)
        started.append(container)
        return container

    yield run
    for container in started:
        container.remove(force=True)


def _logs(container: Any) -> str:
    return container.logs().decode("utf-8", "replace")


def _until(what: str, check: Callable[[], Any], *, within_s: float = GENEROUS_S) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        time.sleep(0.2)


def _status(container: Any) -> tuple[int, str]:
    result = container.exec_run(["ray", "status"])
    return result.exit_code, result.output.decode("utf-8", "replace")


def _gpus(text: str) -> float | None:
    match = re.search(r"^ [\d.]+/([\d.]+) GPU$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _active(text: str) -> list[str]:
    section = text.split("Active:\n", 1)[1].split("Pending:", 1)[0]
    return [line for line in section.splitlines() if line.strip()]


def _cluster_gpus(head: Any) -> float | None:
    code, text = _status(head)
    return _gpus(text) if code == 0 else None


def _exited(container: Any) -> dict[str, Any]:
    return container.wait(timeout=GENEROUS_S)


def _head(node: Callable[..., Any], image: str, **env: str) -> tuple[Any, str]:
    port = free_port()
    head = node(image, ray_head_command(port), **env)
    _until("the head says it started", lambda: "Ray runtime started." in _logs(head))
    return head, f"127.0.0.1:{port}"


# --- head and workers --------------------------------------------------------------------------------------------


def test_a_worker_joins_and_ray_status_counts_its_gpus(node: Callable[..., Any], image: str) -> None:
    head, address = _head(node, image)  # --num-gpus omitted: FAKE_RAY_GPUS, default 1
    worker = node(image, ray_worker_command(address, gpus=1))

    _until("2.0 GPUs in ray status", lambda: _cluster_gpus(head) == 2.0)
    code, text = _status(head)

    assert code == 0
    assert re.match(r"======== Autoscaler status: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ========\n", text)
    active = _active(text)
    assert len(active) == 2 and all(re.fullmatch(r" 1 node_[0-9a-f]{56}", line) for line in active)
    assert "Pending:\n (no pending nodes)\nRecent failures:\n (no failures)\n" in text
    assert "\nResources\n" in text and " 0.0/16.0 CPU\n 0.0/2.0 GPU\n" in text
    head_logs = _logs(head)
    assert "Local node IP: 127.0.0.1" in head_logs and "Ray runtime started." in head_logs
    assert "Ray runtime started." in _logs(worker)
    assert head.exec_run(["cat", "/tmp/ray/nodes"]).output.decode().splitlines()[0].startswith("127.0.0.1 1 ")

    worker.stop(timeout=10)  # a graceful stop leaves the cluster at once
    assert _exited(worker)["StatusCode"] == 0
    _until("1.0 GPU once the worker left", lambda: _cluster_gpus(head) == 1.0)


def test_gpu_counts_from_flags_and_env(node: Callable[..., Any], image: str) -> None:
    port = free_port()
    head = node(image, ray_head_command(port, gpus=4))
    _until("the head says it started", lambda: "Ray runtime started." in _logs(head))
    node(image, ray_worker_command(f"127.0.0.1:{port}"), FAKE_RAY_GPUS="3")

    _until("7.0 GPUs in ray status", lambda: _cluster_gpus(head) == 7.0)


def test_ray_status_without_a_head_is_a_connection_error(node: Callable[..., Any], image: str) -> None:
    idle = node(image, ["sleep", "60"])

    code, text = _status(idle)

    assert code == 1
    assert "ConnectionError: Could not find any running Ray instance." in text


def test_a_worker_without_a_head_gives_up_after_the_join_timeout(node: Callable[..., Any],
                                                                 image: str) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    worker = node(image, ray_worker_command(address), FAKE_RAY_JOIN_TIMEOUT_S="2")

    started = time.monotonic()
    status = _exited(worker)

    assert status["StatusCode"] == 1
    assert time.monotonic() - started < 30
    assert f"ConnectionError: Unable to connect to GCS at {address}" in _logs(worker)
    assert "Ray runtime started." not in _logs(worker)


def test_a_worker_started_before_the_head_joins_when_it_comes(node: Callable[..., Any],
                                                             image: str) -> None:
    port = free_port()
    worker = node(image, ray_worker_command(f"127.0.0.1:{port}"))
    time.sleep(2)
    head = node(image, ray_head_command(port))

    _until("2.0 GPUs in ray status", lambda: _cluster_gpus(head) == 2.0)
    assert "Ray runtime started." in _logs(worker)


# --- failure switches --------------------------------------------------------------------------------------------


def test_worker_exit_kills_the_worker_and_not_the_head(node: Callable[..., Any],
                                                       variant_images: dict[str, str]) -> None:
    image = variant_images["worker-exit"]  # the same image on both nodes: the head ignores the switch
    head, address = _head(node, image, FAKE_RAY_NODE_TIMEOUT_S="2")
    worker = node(image, ray_worker_command(address))

    status = _exited(worker)

    assert status["StatusCode"] == 1
    logs = _logs(worker)
    assert "Ray runtime started." in logs
    assert "RuntimeError: NCCL error: unhandled system error (run with NCCL_DEBUG=INFO for details)" in logs
    head.reload()
    assert head.status == "running"
    _until("the dead worker out of the GPU total", lambda: _cluster_gpus(head) == 1.0)
    code, text = _status(head)
    assert code == 0 and len(_active(text)) == 1
    assert re.search(r"^Recent failures:\n node_[0-9a-f]{56}: NodeTerminated \(ip: 127\.0\.0\.1\)$", text,
                     re.MULTILINE)


def test_join_switch_fails_the_worker_at_once(node: Callable[..., Any], image: str,
                                              variant_images: dict[str, str]) -> None:
    head, address = _head(node, image)
    worker = node(variant_images["join"], ray_worker_command(address))

    started = time.monotonic()
    status = _exited(worker)

    assert status["StatusCode"] == 1
    assert time.monotonic() - started < 20  # not the 30 s join timeout
    assert f"ConnectionError: Unable to connect to GCS at {address}" in _logs(worker)
    assert _cluster_gpus(head) == 1.0


def test_head_exit_switch(node: Callable[..., Any], variant_images: dict[str, str]) -> None:
    head, _ = _head(node, variant_images["head-exit"])

    status = _exited(head)

    assert status["StatusCode"] == 1
    assert "ray.exceptions.RaySystemError: GCS server exited" in _logs(head)


# --- vllm serve on Ray -------------------------------------------------------------------------------------------


def _serve(node: Callable[..., Any], image: str, port: int, *, tp: int, pp: int = 1, **env: str) -> Any:
    return node(image, ["vllm", "serve", MODEL, "--port", str(port), "--host", "127.0.0.1", "--max-model-len", "4096",
                        "--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp),
                        "--distributed-executor-backend", "ray"], **env)


def _get_models(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2.0)
    except httpx.TransportError:
        return None


def test_serve_on_ray_listens_on_the_host_port(node: Callable[..., Any], image: str) -> None:
    head, address = _head(node, image)
    node(image, ray_worker_command(address))
    _until("2.0 GPUs in ray status", lambda: _cluster_gpus(head) == 2.0)
    port = free_port()

    serve = _serve(node, image, port, tp=2, RAY_ADDRESS=address)
    response = _until("the model list on the host port", lambda: _get_models(port))

    assert response.status_code == 200 and response.json()["data"][0]["id"] == MODEL
    logs = _logs(serve)
    assert ("Initializing a V1 LLM engine" in logs
            and "tensor_parallel_size=2, pipeline_parallel_size=1, distributed_executor_backend=ray" in logs)
    assert f"Starting vLLM API server 0 on http://127.0.0.1:{port}" in logs


def test_serve_on_ray_refuses_too_few_gpus(node: Callable[..., Any], image: str) -> None:
    _, address = _head(node, image, FAKE_RAY_GPUS="2")

    serve = _serve(node, image, free_port(), tp=2, pp=2, RAY_ADDRESS=address)

    assert _exited(serve)["StatusCode"] == 1
    assert ("ValueError: The number of required GPUs exceeds the total number of available GPUs in the placement "
            "group.") in _logs(serve)


def test_serve_on_ray_without_a_cluster_is_a_connection_error(node: Callable[..., Any],
                                                             image: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    unreachable = _serve(node, image, free_port(), tp=1, RAY_ADDRESS=address,
                         FAKE_VLLM_RAY_CONNECT_TIMEOUT_S="2")
    unset = _serve(node, image, free_port(), tp=1)

    assert _exited(unreachable)["StatusCode"] == 1
    assert f"ConnectionError: Could not connect to Ray cluster at {address}" in _logs(unreachable)
    assert _exited(unset)["StatusCode"] == 1
    assert "ConnectionError: Could not connect to Ray cluster at" in _logs(unset)


def test_serve_on_ray_dies_when_a_worker_dies(node: Callable[..., Any], image: str) -> None:
    head, address = _head(node, image, FAKE_RAY_NODE_TIMEOUT_S="2")
    worker = node(image, ray_worker_command(address))
    _until("2.0 GPUs in ray status", lambda: _cluster_gpus(head) == 2.0)
    port = free_port()
    serve = _serve(node, image, port, tp=2, RAY_ADDRESS=address)
    _until("the model list on the host port", lambda: _get_models(port))

    worker.kill()  # no goodbye: the head notices the missing heartbeats

    assert _exited(serve)["StatusCode"] == 1
    assert "Engine core proc EngineCore_0 died unexpectedly" in _logs(serve)
