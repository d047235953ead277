"""The fake vLLM image behaves like `vllm serve`, and `wait_ready` handles it for real: ready, crash, restart loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.errors import ContainerExited
from nemoclaw_runtime.kernel.events import Event, Heartbeat
from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine
from nemoclaw_runtime.runtimes.server.probes import VllmModelsProbe
from nemoclaw_runtime.runtimes.server.readiness import wait_ready
from tests.fake_servers.fake_vllm import EngineTarget, fake_vllm_image, start_fake_vllm  # noqa: F401  (fixture)
from tests.helpers.docker_env import free_port

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

MODEL = "acme/tiny-model"
GENEROUS_S = 60.0  # bounds for "failed fast": far below the readiness timeout, far above any noisy machine


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


@pytest.fixture
def run_vllm(docker_client: docker.DockerClient, fake_vllm_image: str  # noqa: F811 (the fixture)
             ) -> Iterator[Callable[..., tuple[Any, int]]]:
    """Start fake vLLM containers on free ports; every one is removed afterwards."""
    started: list[Any] = []

    def run(**kwargs: Any) -> tuple[Any, int]:
        port = free_port()
        container = start_fake_vllm(docker_client, fake_vllm_image, port=port, **{"model": MODEL, **kwargs})
        started.append(container)
        return container, port

    yield run
    for container in started:
        container.remove(force=True)


def _get_until_answered(http: httpx.Client, url: str, *, within_s: float = GENEROUS_S) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return http.get(url, timeout=2.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _logs(container: Any) -> str:
    return container.logs().decode("utf-8", "replace")


# --- the image itself -------------------------------------------------------------------------------------------


def test_serve_lists_the_model_with_max_model_len(run_vllm: Callable[..., tuple[Any, int]],
                                                  http: httpx.Client) -> None:
    container, port = run_vllm(max_model_len=262144, extra=["--trust-remote-code", "--gpu-memory-utilization",
                                                            "0.7", "--enable-prefix-caching"])

    response = _get_until_answered(http, f"http://127.0.0.1:{port}/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["max_model_len"]) for m in body["data"]] == [(MODEL, "model", 262144)]
    assert http.get(f"http://127.0.0.1:{port}/health").status_code == 200
    assert "Starting vLLM API server 0 on http://0.0.0.0:8000" in _logs(container)


def test_chat_completion_is_a_valid_openai_answer(run_vllm: Callable[..., tuple[Any, int]],
                                                  http: httpx.Client) -> None:
    _, port = run_vllm(extra=["--served-model-name", "tiny"])
    _get_until_answered(http, f"http://127.0.0.1:{port}/health")

    response = http.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                         json={"model": "tiny", "messages": [{"role": "user", "content": "Reply: ready"}],
                               "max_tokens": 8})
    wrong = http.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})

    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == "tiny"
    assert answer["choices"][0]["message"] == {"role": "assistant", "reasoning_content": None, "content": "ready",
                                               "tool_calls": []}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert wrong.status_code == 404 and "does not exist" in wrong.json()["message"]


def test_crash_oom_exits_1_with_the_oom_line(run_vllm: Callable[..., tuple[Any, int]]) -> None:
    container, _ = run_vllm(env={"FAKE_VLLM_CRASH": "oom"})

    status = container.wait(timeout=GENEROUS_S)

    assert status["StatusCode"] == 1
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in _logs(container)


def test_delay_keeps_the_port_closed_until_loaded(run_vllm: Callable[..., tuple[Any, int]],
                                                  http: httpx.Client) -> None:
    container, port = run_vllm(env={"FAKE_VLLM_DELAY_S": "3"})

    with pytest.raises(httpx.TransportError):
        http.get(f"http://127.0.0.1:{port}/v1/models", timeout=1.0)
    response = _get_until_answered(http, f"http://127.0.0.1:{port}/v1/models")

    assert response.status_code == 200
    logs = _logs(container)
    assert "Loading safetensors checkpoint shards: 100% Completed | 3/3" in logs
    assert "Loading weights took 3.00 seconds" in logs


# --- wait_ready against real containers -------------------------------------------------------------------------


def _wait(docker_client: docker.DockerClient, container: Any, port: int, http: httpx.Client,
          events: list[Event], *, timeout_s: float = 120.0, heartbeat_s: float = 30.0) -> Any:
    target = EngineTarget(DockerEngine(docker_client), container.name, port)
    return wait_ready(target, VllmModelsProbe(MODEL), timeout_s=timeout_s, clock=SystemClock(), cancel=CancelToken(),
                      events=events.append, http=http, heartbeat_s=heartbeat_s)


def test_wait_ready_returns_when_the_server_answers(docker_client: docker.DockerClient,
                                                    run_vllm: Callable[..., tuple[Any, int]],
                                                    http: httpx.Client) -> None:
    container, port = run_vllm(max_model_len=32768, env={"FAKE_VLLM_DELAY_S": "3"})
    events: list[Event] = []

    result = _wait(docker_client, container, port, http, events, heartbeat_s=1.0)

    assert result.served_id == MODEL and result.max_model_len == 32768
    assert result.payload["data"][0]["id"] == MODEL
    assert result.elapsed_s < GENEROUS_S
    assert [state for state, _ in result.transitions][-2:] == ["http-ready", "ready"]
    beats = [e for e in events if isinstance(e, Heartbeat)]
    assert beats and any("Loading safetensors" in (b.last_log_line or "") for b in beats)


def test_wait_ready_fails_fast_on_oom_exit(docker_client: docker.DockerClient,
                                           run_vllm: Callable[..., tuple[Any, int]],
                                           http: httpx.Client) -> None:
    container, port = run_vllm(env={"FAKE_VLLM_CRASH": "oom"})

    started = time.monotonic()
    with pytest.raises(ContainerExited) as info:
        _wait(docker_client, container, port, http, [], timeout_s=600.0)

    assert time.monotonic() - started < GENEROUS_S  # not the 600 s timeout
    assert info.value.cause == "cuda-oom"
    assert info.value.details["exit_code"] == 1
    assert any("CUDA out of memory" in line for line in info.value.log_tail)
    assert "--gpu-memory-utilization" in (info.value.remedy or "")


def test_wait_ready_fails_fast_on_oom_under_a_restart_policy(docker_client: docker.DockerClient,
                                                             run_vllm: Callable[..., tuple[Any, int]],
                                                             http: httpx.Client) -> None:
    container, port = run_vllm(env={"FAKE_VLLM_CRASH": "oom"}, restart_policy="unless-stopped")

    started = time.monotonic()
    with pytest.raises(ContainerExited) as info:
        _wait(docker_client, container, port, http, [], timeout_s=600.0)

    assert time.monotonic() - started < GENEROUS_S
    assert info.value.cause == "cuda-oom"


def test_wait_ready_fails_fast_on_a_restart_loop(docker_client: docker.DockerClient,
                                                 run_vllm: Callable[..., tuple[Any, int]],
                                                 http: httpx.Client) -> None:
    container, port = run_vllm(env={"FAKE_VLLM_RESTART_LOOP": "1"}, restart_policy="unless-stopped")

    started = time.monotonic()
    with pytest.raises(ContainerExited) as info:
        _wait(docker_client, container, port, http, [], timeout_s=600.0)

    assert time.monotonic() - started < GENEROUS_S
    assert "restart-looping" in info.value.message
    assert info.value.cause == "unknown"
    assert any("Engine core initialization failed" in line for line in info.value.log_tail)


def test_wait_ready_names_a_gated_model_failure(docker_client: docker.DockerClient,
                                                run_vllm: Callable[..., tuple[Any, int]],
                                                http: httpx.Client) -> None:
    container, port = run_vllm(env={"FAKE_VLLM_CRASH": "401"})

    with pytest.raises(ContainerExited) as info:
        _wait(docker_client, container, port, http, [], timeout_s=600.0)

    assert info.value.cause == "hf-gated"
    assert "HF_TOKEN" in (info.value.remedy or "")
