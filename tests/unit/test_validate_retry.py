"""Retry timing and answer classification of the validation probe, with httpx.MockTransport and a fake clock.

Nothing here opens a socket or waits: every sleep is recorded by the clock, every timeout is read back from the
request's ``timeout`` extension.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled, ValidationFailed
from nemoclaw_runtime.kernel.events import Event, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.server.validate import (
    API_COMPLETIONS,
    API_RESPONSES,
    EXCERPT_CHARS,
    ValidationResult,
    validate_endpoint,
)
from tests.fakes.clock import FakeClock

BASE = "http://127.0.0.1:8000/v1"
MODEL = "nvidia/nemotron-nano:4b"
Reply = Callable[[httpx.Request], httpx.Response]




class Script:
    """Answers requests in order (each item a response or an exception to raise) and records them."""

    def __init__(self, *steps: httpx.Response | Exception | Reply) -> None:
        self.steps: Iterator[httpx.Response | Exception | Reply] = iter(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = next(self.steps)
        if isinstance(step, Exception):
            raise step
        return step(request) if callable(step) else step

    @property
    def read_timeouts(self) -> list[float]:
        return [r.extensions["timeout"]["read"] for r in self.requests]

    @property
    def connect_timeouts(self) -> list[float]:
        return [r.extensions["timeout"]["connect"] for r in self.requests]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def chat(content: str | None = "ready", **message: Any) -> httpx.Response:
    finish = message.pop("finish_reason", "stop")
    return httpx.Response(200, json={"choices": [{"index": 0, "finish_reason": finish,
                                                  "message": {"role": "assistant", "content": content, **message}}]})


def sse(*events: dict[str, Any]) -> httpx.Response:
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)


CREATED = {"type": "response.created", "response": {"id": "r1"}}
COMPLETED = {"type": "response.completed", "response": {"id": "r1", "status": "completed"}}


def run(script: Script, clock: FakeClock | None = None, *, settings: Settings | None = None,
        events: list[Event] | None = None, **kwargs: Any) -> ValidationResult:
    return validate_endpoint(BASE, MODEL, settings=settings or Settings(), http=httpx.Client(
        transport=httpx.MockTransport(script)), clock=clock or FakeClock(50.0),
        events=(events.append if events is not None else lambda e: None), **kwargs)


def fail(script: Script, clock: FakeClock | None = None, **kwargs: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        run(script, clock, **kwargs)
    return info.value


# --- retry timing --------------------------------------------------------------------------------------------------


def test_busy_server_backoff_is_5_15_30_seconds_then_success() -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.Response(503), httpx.Response(503), httpx.Response(503), chat())
    result = run(script, clock)
    assert clock.sleeps == [5.0, 15.0, 30.0] and result.attempts == 4


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_every_overload_status_is_retried_and_finally_classified(status: int) -> None:
    clock = FakeClock(50.0)
    error = fail(Script(*[httpx.Response(status, text="busy")] * 4), clock)
    assert error.cause == "overloaded" and error.details["status"] == status
    assert clock.sleeps == [5.0, 15.0, 30.0] and error.details["attempts"] == 4


def test_a_timeout_is_retried_once_with_double_the_budget() -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.ReadTimeout("slow"), chat())
    result = run(script, clock)
    assert script.read_timeouts == [180.0, 360.0] and script.connect_timeouts == [10.0, 20.0]
    assert [s for s in clock.sleeps if s] == [] and result.attempts == 2


def test_a_second_timeout_fails_with_cause_timeout() -> None:
    script = Script(httpx.ConnectTimeout("no"), httpx.ReadTimeout("still slow"))
    error = fail(script)
    assert error.cause == "timeout" and script.read_timeouts == [180.0, 360.0]


def test_a_refused_connection_pauses_then_retries_once_with_double_the_budget() -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    error = fail(script, clock)
    assert error.cause == "refused" and clock.sleeps == [2.0] and script.read_timeouts == [180.0, 360.0]


def test_busy_and_slow_retries_combine_within_their_own_limits() -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.Response(503), httpx.ReadTimeout("slow"), httpx.Response(502), chat())
    result = run(script, clock)
    assert result.attempts == 4 and [s for s in clock.sleeps if s] == [5.0, 15.0]
    assert script.read_timeouts == [180.0, 180.0, 360.0, 360.0]


def test_budget_comes_from_settings_and_a_bad_value_falls_back_to_180_with_a_warning() -> None:
    settings = Settings.from_env({"NEMOCLAW_LOCAL_INFERENCE_TIMEOUT": "soon"})
    assert settings.local_inference_timeout == 180.0 and settings.warnings
    script = Script(chat())
    run(script, settings=settings)
    assert script.read_timeouts == [180.0]
    short = Script(chat())
    run(short, settings=Settings.from_env({"NEMOCLAW_LOCAL_INFERENCE_TIMEOUT": "4"}))
    assert short.read_timeouts == [4.0] and short.connect_timeouts == [4.0]


@pytest.mark.parametrize("status, cause", [(404, "route"), (405, "route"), (400, "config"), (422, "config"),
                                           (401, "auth"), (403, "auth"), (500, "server-error")])
def test_route_config_auth_and_server_errors_fail_at_once(status: int, cause: str) -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.Response(status, json={"error": {"message": "nope"}}))
    error = fail(script, clock)
    assert error.cause == cause and len(script.requests) == 1 and clock.sleeps == []
    assert error.remedy and "nope" in error.details["excerpt"]


def test_cancel_during_a_backoff_stops_at_once() -> None:
    cancel = CancelToken()

    class CancellingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            cancel.cancel()

    script = Script(httpx.Response(503), chat())
    with pytest.raises(Cancelled):
        run(script, CancellingClock(), cancel=cancel)
    assert len(script.requests) == 1


def test_latency_is_measured_with_the_injected_clock() -> None:
    clock = FakeClock(50.0)

    def answer_after_1_5_s(request: httpx.Request) -> httpx.Response:
        clock.now += 1.5
        return chat()

    assert run(Script(answer_after_1_5_s), clock).latency_ms == 1500.0


# --- chat answers --------------------------------------------------------------------------------------------------


def test_a_tool_call_instead_of_text_counts_as_an_answer() -> None:
    call = [{"id": "c1", "type": "function", "function": {"name": "get_current_time", "arguments": "{}"}}]
    result = run(Script(chat(None, tool_calls=call, finish_reason="tool_calls")))
    assert result.tool_called and result.reply_excerpt.startswith("tool call: get_current_time")


def test_reasoning_field_named_reasoning_is_recognised_and_retried_with_512_tokens() -> None:
    script = Script(chat(None, reasoning="hmm", finish_reason="length"), chat("ready"))
    result = run(script)
    assert [b["max_tokens"] for b in script.bodies()] == [64, 512] and result.max_tokens == 512


def test_reasoning_that_stopped_by_itself_is_not_retried() -> None:
    script = Script(chat("", reasoning_content="thinking...", finish_reason="stop"))
    error = fail(script)
    assert error.cause == "reasoning-only" and len(script.requests) == 1


@pytest.mark.parametrize("response", [httpx.Response(200, text="<html>hello</html>"),
                                      httpx.Response(200, json={"choices": []}),
                                      chat("   ")])
def test_answers_without_a_usable_reply_are_empty(response: httpx.Response) -> None:
    assert fail(Script(response)).cause == "empty"


def test_excerpt_is_cut_to_500_chars_and_one_line_in_the_message() -> None:
    error = fail(Script(httpx.Response(400, text="bad request\n" + "x" * 5000)))
    assert len(error.details["excerpt"]) <= EXCERPT_CHARS and "\n" not in error.message


def test_tool_rejection_on_422_is_tools_unsupported() -> None:
    body = {"detail": "tool_choice 'auto' is not supported by this server"}
    assert fail(Script(httpx.Response(422, json=body))).cause == "tools-unsupported"


# --- the Responses API ---------------------------------------------------------------------------------------------


def test_responses_stream_with_text_is_used() -> None:
    script = Script(sse(CREATED, {"type": "response.output_text.delta", "delta": "ready"}, COMPLETED))
    result = run(script, api=API_RESPONSES)
    assert result.api == API_RESPONSES and result.reply_excerpt == "ready"
    body = script.bodies()[0]
    assert body["stream"] is True and body["tool_choice"] == "auto" and body["tools"][0]["type"] == "function"


def test_responses_stream_with_a_function_call_is_used() -> None:
    item = {"type": "response.output_item.added", "item": {"type": "function_call", "name": "get_current_time"}}
    result = run(Script(sse(CREATED, item, COMPLETED)), api=API_RESPONSES)
    assert result.api == API_RESPONSES and result.tool_called


@pytest.mark.parametrize("response, reason", [
    (httpx.Response(200, json={"object": "response", "output": []}), "instead of an SSE stream"),
    (sse(CREATED, COMPLETED), "output_text.delta"),
    (sse(CREATED, {"type": "response.output_text.delta", "delta": "re"}), "not response.completed"),
    (sse(CREATED, {"type": "response.failed", "response": {}}), "response.failed"),
    (httpx.Response(400, json={"error": "unknown field input"}), "HTTP 400"),
    (httpx.Response(500, text="Internal Server Error"), "HTTP 500"),
])
def test_unusable_responses_stream_falls_back_to_chat(response: httpx.Response, reason: str) -> None:
    events: list[Event] = []
    script = Script(response, chat())
    result = run(script, api=API_RESPONSES, events=events)
    assert result.api == API_COMPLETIONS and result.fallback_reason and reason in result.fallback_reason
    assert [r.url.path for r in script.requests] == ["/v1/responses", "/v1/chat/completions"]
    assert any(isinstance(e, Warning) and reason in e.message for e in events)


def test_responses_reasoning_only_gets_the_bigger_budget_too() -> None:
    incomplete = {"type": "response.incomplete", "response": {"incomplete_details": {"reason": "max_output_tokens"}}}
    script = Script(sse(CREATED, {"type": "response.reasoning_text.delta", "delta": "hmm"}, incomplete),
                    sse(CREATED, {"type": "response.output_text.delta", "delta": "ready"}, COMPLETED))
    result = run(script, api=API_RESPONSES)
    assert result.api == API_RESPONSES and [b["max_output_tokens"] for b in script.bodies()] == [64, 512]


def test_responses_auth_failure_does_not_fall_back() -> None:
    script = Script(httpx.Response(401, json={"error": "bad key"}))
    error = fail(script, api=API_RESPONSES)
    assert error.cause == "auth" and len(script.requests) == 1


def test_responses_busy_is_retried_before_anything_else() -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.Response(503), sse(CREATED, {"type": "response.output_text.delta", "delta": "ok"},
                                             COMPLETED))
    result = run(script, clock, api=API_RESPONSES)
    assert result.api == API_RESPONSES and clock.sleeps == [5.0]


def test_when_the_fallback_fails_too_the_error_keeps_the_fallback_reason() -> None:
    clock = FakeClock(50.0)
    script = Script(httpx.Response(404), *[httpx.Response(503)] * 4)
    error = fail(script, clock, api=API_RESPONSES)
    assert error.cause == "overloaded" and "404" in error.details["fallback_reason"]
    assert clock.sleeps == [5.0, 15.0, 30.0] and error.details["api"] == API_COMPLETIONS


def test_responses_completed_with_status_incomplete_and_only_reasoning_is_retried() -> None:
    done_early = {"type": "response.completed",
                  "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}}
    script = Script(sse(CREATED, {"type": "response.reasoning_text.delta", "delta": "hmm"}, done_early),
                    sse(CREATED, {"type": "response.reasoning_text.delta", "delta": "hmm"}, done_early))
    error = fail(script, api=API_RESPONSES)
    assert error.cause == "reasoning-only" and len(script.requests) == 2 and "enable_thinking" in (error.remedy or "")


def test_a_chat_failure_after_the_fallback_names_the_chat_api() -> None:
    error = fail(Script(httpx.Response(404), httpx.Response(404, text="no route")), api=API_RESPONSES)
    assert error.cause == "route" and error.details["api"] == API_COMPLETIONS and error.details["fallback_reason"]
