"""Health mapping: what each runtime's answers (and silences) mean, against real sockets on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from nemoclaw_runtime.kernel.clock import SystemClock
from nemoclaw_runtime.runtimes.status.probe import (
    HEALTHY,
    STARTING,
    UNHEALTHY,
    UNKNOWN,
    UNRESPONSIVE,
    Budget,
    probe_nim,
    probe_ollama,
    probe_unmanaged,
    probe_vllm,
)
from tests.fake_servers.fake_status import FakeStatusServer, HungServer, NotHttpServer
from tests.helpers.docker_env import free_port


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


def budget(seconds: float = 2.0, read_s: float = 0.6) -> Budget:
    clock = SystemClock()
    return Budget(clock, clock.monotonic() + seconds, read_s=read_s)


def test_vllm_healthy_with_model_context_and_metrics(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", served="acme/tiny", max_model_len=32768) as server:
        outcome = probe_vllm(http, server.base, budget(), served_hint="acme/tiny")
    assert (outcome.health, outcome.reason) == (HEALTHY, None)
    assert outcome.served_id == "acme/tiny" and outcome.context_window == 32768
    assert outcome.metrics is not None and outcome.metrics.values["prompt_tokens"] == 1000.0
    assert outcome.metrics_reason is None and outcome.runtime == "vllm"


def test_vllm_503_is_an_engine_that_died(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", health=503) as server:
        outcome = probe_vllm(http, server.base, budget())
    assert outcome.health == UNHEALTHY and outcome.reason == "engine dead: /health answered 503"
    assert outcome.metrics is not None  # its /metrics still answers: shown as it is


def test_vllm_other_status_is_unhealthy_with_the_code(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", health=500) as server:
        outcome = probe_vllm(http, server.base, budget())
    assert outcome.health == UNHEALTHY and "HTTP 500" in (outcome.reason or "")


def test_garbage_metrics_are_reported_not_raised(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", metrics="garbage") as server:
        outcome = probe_vllm(http, server.base, budget())
    assert outcome.health == HEALTHY and outcome.metrics is None
    assert outcome.metrics_reason is not None and outcome.metrics_reason.startswith("/metrics: not Prometheus text")


def test_empty_metrics_say_so(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", metrics="empty") as server:
        outcome = probe_vllm(http, server.base, budget())
    assert outcome.metrics_reason is not None and "no vLLM metrics" in outcome.metrics_reason


def test_garbage_models_keep_the_label_and_leave_a_note(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", models_body="<html>nope</html>") as server:
        outcome = probe_vllm(http, server.base, budget(), served_hint="ours")
    assert outcome.health == HEALTHY and outcome.served_id == "ours" and outcome.context_window is None
    assert any("without a data list" in note for note in outcome.notes)


def test_an_unsafe_served_id_is_never_echoed(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", served="evil model;<script>") as server:
        outcome = probe_vllm(http, server.base, budget())
    assert outcome.served_id is None and "<script>" not in repr(outcome)


def test_nim_ready_reads_v1_metrics_without_prefix(http: httpx.Client) -> None:
    with FakeStatusServer("nim", served="meta/llama-3.1-8b-instruct", max_model_len=131072) as server:
        outcome = probe_nim(http, server.base, budget())
    assert outcome.health == HEALTHY and outcome.served_id == "meta/llama-3.1-8b-instruct"
    assert outcome.context_window == 131072
    assert outcome.metrics is not None and outcome.metrics.values["kv_cache_usage"] == 0.25


def test_nim_live_but_not_ready_is_starting(http: httpx.Client) -> None:
    with FakeStatusServer("nim", ready=False) as server:
        outcome = probe_nim(http, server.base, budget())
    assert outcome.health == STARTING and "503" in (outcome.reason or "")


def test_ollama_version_and_loaded_models(http: httpx.Client) -> None:
    loaded = [{"name": "qwen3:8b", "model": "qwen3:8b", "size": 6_000_000_000, "size_vram": 5_500_000_000,
               "expires_at": "2026-01-02T03:19:05Z", "context_length": 8192}]
    with FakeStatusServer("ollama", loaded=loaded) as server:
        outcome = probe_ollama(http, server.base, budget(), served_hint="qwen3:8b")
    assert outcome.health == HEALTHY and outcome.context_window == 8192
    assert outcome.ollama is not None and outcome.ollama.version == "0.12.6"
    [model] = outcome.ollama.loaded or ()
    assert (model.name, model.size_vram_bytes, model.expires_at) == ("qwen3:8b", 5_500_000_000,
                                                                     "2026-01-02T03:19:05Z")


def test_ollama_garbage_ps_is_a_reason(http: httpx.Client) -> None:
    with FakeStatusServer("ollama", ps_body="{{{") as server:
        outcome = probe_ollama(http, server.base, budget())
    assert outcome.health == HEALTHY
    assert outcome.ollama is not None and outcome.ollama.loaded is None and "models list" in (
        outcome.ollama.reason or "")


def test_something_else_on_the_ollama_port_is_not_ollama(http: httpx.Client) -> None:
    with FakeStatusServer("vllm") as server:  # /api/version answers 404
        outcome = probe_ollama(http, server.base, budget())
    assert outcome.health == UNHEALTHY and "not Ollama" in (outcome.reason or "")


def test_hung_server_is_unresponsive_within_the_read_timeout(http: httpx.Client) -> None:
    with HungServer() as server:
        started = time.monotonic()
        outcome = probe_vllm(http, server.base, budget(read_s=0.3))
        took = time.monotonic() - started
    assert outcome.health == UNRESPONSIVE and outcome.answered
    assert took < 1.0


def test_closed_port_is_starting_and_nothing_answered(http: httpx.Client) -> None:
    outcome = probe_vllm(http, f"http://127.0.0.1:{free_port()}", budget())
    assert outcome.health == STARTING and not outcome.answered


def test_a_server_that_does_not_speak_http(http: httpx.Client) -> None:
    with NotHttpServer() as server:
        outcome = probe_vllm(http, server.base, budget())
    assert outcome.health == UNHEALTHY and "not in HTTP" in (outcome.reason or "")


def test_a_spent_budget_sends_nothing(http: httpx.Client) -> None:
    with FakeStatusServer("vllm") as server:
        outcome = probe_vllm(http, server.base, budget(seconds=-1))
        assert server.requests == []
    assert outcome.health == UNRESPONSIVE


def test_slow_metrics_do_not_outlive_the_budget(http: httpx.Client) -> None:
    with FakeStatusServer("vllm", delay_s=0.3) as server:
        started = time.monotonic()
        outcome = probe_vllm(http, server.base, budget(seconds=0.5))
        took = time.monotonic() - started
    assert outcome.health == HEALTHY and outcome.metrics is None
    assert took < 0.9


# --- servers that are not ours ----------------------------------------------------------------------------------


def test_unmanaged_nim_on_the_vllm_port_is_recognised(http: httpx.Client) -> None:
    with FakeStatusServer("nim") as server:
        outcome = probe_unmanaged(http, server.base, budget(), ollama_port=False)
    assert outcome.runtime == "nim" and outcome.health == HEALTHY


def test_unmanaged_unknown_server_is_unknown(http: httpx.Client) -> None:
    with FakeStatusServer("ollama") as server:  # 404 on /health and on /v1/health/ready
        outcome = probe_unmanaged(http, server.base, budget(), ollama_port=False)
    assert outcome.health == UNKNOWN and outcome.runtime is None and outcome.answered


def test_unmanaged_nothing_listening_is_absent(http: httpx.Client) -> None:
    outcome = probe_unmanaged(http, f"http://127.0.0.1:{free_port()}", budget(), ollama_port=True)
    assert not outcome.answered


def test_unmanaged_vllm_on_the_ollama_port_is_unknown(http: httpx.Client) -> None:
    with FakeStatusServer("vllm") as server:
        outcome = probe_unmanaged(http, server.base, budget(), ollama_port=True)
    assert outcome.health == UNKNOWN and "not like Ollama" in (outcome.reason or "")
