"""The validation probe against a real HTTP server on 127.0.0.1 (tests/fake_servers/fake_openai.py), through real httpx.

Sleeps go through a fake clock, so backoffs cost nothing; only the "slow" cases wait (a fraction of a second) for
a real read timeout.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled, InvalidInput, ValidationFailed
from nemoclaw_runtime.kernel.events import Event, Info, PhaseChanged, Warning
from nemoclaw_runtime.kernel.secret import Secret, redact
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.server.validate import (
    API_COMPLETIONS,
    API_RESPONSES,
    ValidationResult,
    validate_endpoint,
)
from tests.fake_servers.fake_openai import FakeOpenAI, fake_openai_servers
from tests.fakes.clock import FakeClock

Start = Callable[..., FakeOpenAI]
MODEL = "fake/model"
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


@pytest.fixture
def fake_openai() -> Iterator[Start]:
    with fake_openai_servers() as start:
        yield start




def probe(fake: FakeOpenAI, *, timeout: float = 5.0, clock: FakeClock | None = None, **kwargs: object
          ) -> tuple[ValidationResult, list[Event]]:
    events: list[Event] = []
    settings = kwargs.pop("settings", None) or Settings(local_inference_timeout=timeout)
    result = validate_endpoint(fake.base_url, MODEL, settings=settings, clock=clock or FakeClock(),  # type: ignore[arg-type]
                               events=events.append, **kwargs)  # type: ignore[arg-type]
    return result, events


def failure(fake: FakeOpenAI, **kwargs: object) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        probe(fake, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 5
    return info.value


# --- success paths -------------------------------------------------------------------------------------------------


def test_normal_endpoint_answers_through_chat_completions_with_a_tool(fake_openai: Start) -> None:
    fake = fake_openai("normal")
    result, events = probe(fake)
    assert (result.api, result.requested_api, result.reply_excerpt) == (API_COMPLETIONS, API_COMPLETIONS, "ready")
    assert result.tools_supported and not result.tool_called and result.fallback_reason is None
    assert result.attempts == 1 and result.max_tokens == 64 and result.latency_ms >= 0
    [sent] = fake.posts()
    assert sent.path == CHAT
    assert sent.body is not None and sent.body["model"] == MODEL and sent.body["tool_choice"] == "auto"
    assert sent.body["tools"][0]["type"] == "function" and sent.body["tools"][0]["function"]["name"]
    assert isinstance(events[0], PhaseChanged) and events[0].phase == "validate"
    assert isinstance(events[-1], Info) and "answered" in events[-1].message


def test_result_is_frozen_and_serialises(fake_openai: Start) -> None:
    result, _ = probe(fake_openai("normal"))
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) >= {"api", "latency_ms", "reply_excerpt", "tools_supported", "fallback_reason", "base_url"}
    with pytest.raises(AttributeError):
        result.api = "x"  # type: ignore[misc]


def test_reasoning_only_answer_is_retried_once_with_a_bigger_budget(fake_openai: Start) -> None:
    fake = fake_openai("reasoning-only")
    result, events = probe(fake)
    assert result.reply_excerpt == "ready" and result.max_tokens == 512 and result.attempts == 2
    assert [p.body["max_tokens"] for p in fake.posts() if p.body] == [64, 512]
    assert any(isinstance(e, Info) and "reasoning" in e.message for e in events)


def test_server_busy_twice_then_ok_backs_off_5_then_15_s(fake_openai: Start) -> None:
    fake, clock = fake_openai("overloaded", fail_times=2), FakeClock()
    result, events = probe(fake, clock=clock)
    assert result.attempts == 3 and clock.sleeps == [5.0, 15.0]
    assert sum(isinstance(e, Info) and "503" in e.message for e in events) == 2


def test_slow_first_answer_is_retried_with_a_doubled_budget(fake_openai: Start) -> None:
    fake = fake_openai("slow", delay=3.0)
    result, events = probe(fake, timeout=1.0)  # the retry gets 2 s: ample for a loaded machine
    assert result.attempts == 2 and result.reply_excerpt == "ready"
    assert any(isinstance(e, Info) and "2 s budget" in e.message for e in events)


def test_responses_api_used_when_asked_and_it_streams_properly(fake_openai: Start) -> None:
    fake = fake_openai("responses-stream")
    result, events = probe(fake, api=API_RESPONSES)
    assert (result.api, result.reply_excerpt, result.fallback_reason) == (API_RESPONSES, "ready", None)
    [sent] = fake.posts()
    assert sent.path == RESPONSES and sent.body is not None and sent.body["stream"] is True
    assert not any(isinstance(e, Warning) for e in events)


def test_broken_responses_stream_falls_back_to_chat_and_says_so(fake_openai: Start) -> None:
    fake = fake_openai("responses-broken")
    result, events = probe(fake, api=API_RESPONSES)
    assert result.api == API_COMPLETIONS and result.requested_api == API_RESPONSES
    assert result.fallback_reason and "response.created" in result.fallback_reason
    assert [p.path for p in fake.posts()] == [RESPONSES, CHAT]
    assert any(isinstance(e, Warning) and "falling back" in e.message for e in events)


def test_preferred_api_setting_asks_for_responses_and_a_404_falls_back(fake_openai: Start) -> None:
    fake = fake_openai("normal")
    settings = Settings(preferred_api=API_RESPONSES, local_inference_timeout=5.0)
    result, _ = probe(fake, settings=settings)
    assert result.api == API_COMPLETIONS and result.fallback_reason and "404" in result.fallback_reason


def test_api_key_is_sent_as_a_bearer_header(fake_openai: Start) -> None:
    fake = fake_openai("normal", api_key="sk-test-abcdefghijkl")
    result, _ = probe(fake, api_key=Secret("sk-test-abcdefghijkl"))
    assert result.api == API_COMPLETIONS
    assert fake.posts()[0].headers["authorization"] == "Bearer sk-test-abcdefghijkl"


# --- failures ------------------------------------------------------------------------------------------------------


def test_route_404_fails_at_once_with_a_remedy(fake_openai: Start) -> None:
    fake = fake_openai("route-404")
    error = failure(fake)
    assert error.cause == "route" and "/v1" in (error.remedy or "")
    assert "does not exist" in error.details["excerpt"] and error.details["status"] == 404
    assert len(fake.posts()) == 1


def test_server_rejecting_tools_is_a_clear_failure(fake_openai: Start) -> None:
    fake = fake_openai("tools-400")
    error = failure(fake)
    assert error.cause == "tools-unsupported"
    assert "--enable-auto-tool-choice" in (error.remedy or "") and "--tool-call-parser" in (error.remedy or "")
    assert "tool choice" in error.details["excerpt"] and len(fake.posts()) == 1


def test_always_busy_gives_up_after_5_15_30_s(fake_openai: Start) -> None:
    fake, clock = fake_openai("rate-limited", fail_times=100), FakeClock()
    error = failure(fake, clock=clock)
    assert error.cause == "overloaded" and error.details["status"] == 429
    assert clock.sleeps == [5.0, 15.0, 30.0] and len(fake.posts()) == 4


def test_model_that_only_reasons_fails_after_the_bigger_budget(fake_openai: Start) -> None:
    fake = fake_openai("reasoning-only", reasoning_below=10**6)
    error = failure(fake)
    assert error.cause == "reasoning-only" and "reasoning_content" in error.details["excerpt"]
    assert len(fake.posts()) == 2


def test_empty_answer_fails(fake_openai: Start) -> None:
    error = failure(fake_openai("empty"))
    assert error.cause == "empty" and error.remedy


def test_slow_twice_is_a_timeout_after_one_retry(fake_openai: Start) -> None:
    fake = fake_openai("slow", fail_times=2, delay=2.0)
    error = failure(fake, timeout=0.3)
    assert error.cause == "timeout" and "NEMOCLAW_LOCAL_INFERENCE_TIMEOUT" in (error.remedy or "")
    assert len(fake.posts()) == 2


def test_refused_connection_is_retried_once_then_fails() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = FakeClock()
    with pytest.raises(ValidationFailed) as info:
        validate_endpoint(f"http://127.0.0.1:{port}/v1", MODEL, settings=Settings(local_inference_timeout=2.0),
                          clock=clock)
    assert info.value.cause == "refused" and info.value.details["attempts"] == 2
    assert clock.sleeps == [2.0]


def test_wrong_key_is_an_auth_failure_and_the_echoed_key_is_redacted(fake_openai: Start) -> None:
    fake = fake_openai("normal", api_key="right-key")
    error = failure(fake, api_key=Secret("wrong-key-1234567"))
    assert error.cause == "auth" and len(fake.posts()) == 1
    text = json.dumps(error.to_dict()) + str(error)
    assert "wrong-key-1234567" not in text and "***" in error.details["excerpt"]


def test_cancelled_before_the_request_sends_nothing(fake_openai: Start) -> None:
    fake, cancel = fake_openai("normal"), CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        probe(fake, cancel=cancel)
    assert fake.posts() == []


# --- inputs --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "127.0.0.1:8000/v1", "", "http://", "file:///etc/passwd",
                                 "http://user:hunter2@127.0.0.1:8000/v1"])
def test_only_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_endpoint(url, MODEL, settings=Settings())
    assert info.value.exit_code == 2 and "hunter2" not in str(info.value)


@pytest.mark.parametrize("model", ["", "bad model", "x;rm -rf /", "m\x1b[31m", "a$b"])
def test_unsafe_model_ids_are_refused(model: str) -> None:
    with pytest.raises(InvalidInput):
        validate_endpoint("http://127.0.0.1:8000/v1", model, settings=Settings())


def test_unknown_api_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_endpoint("http://127.0.0.1:8000/v1", MODEL, settings=Settings(), api="anthropic-messages")


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer abc.def-123", "abc.def-123"),
    ('{"api_key": "k-12345"}', "k-12345"),
    ("token=tok_98765 rest", "tok_98765"),
    ("got hf_abcdefghijklmnop in header", "hf_abcdefghijklmnop"),
    ("nvapi-ABCDEFGH12345678 leaked", "nvapi-ABCDEFGH12345678"),
])
def test_redact_hides_token_shapes(text: str, secret: str) -> None:
    assert secret not in redact(text) and "***" in redact(text)


def test_redact_hides_given_secret_values_and_keeps_plain_text() -> None:
    assert redact("the key plainvalue was wrong", ["plainvalue"]) == "the key *** was wrong"
    assert redact("The model `x` does not exist; max_tokens 64") == "The model `x` does not exist; max_tokens 64"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1?api_key=abc", "http://127.0.0.1:8000/v1#x",
                                 "http://127.0.0.1:99999/v1", "http://[::1/v1"])
def test_base_urls_with_a_query_or_a_bad_port_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_endpoint(url, MODEL, settings=Settings())
    assert "abc" not in str(info.value)
