"""Reading what an OpenAI-compatible server answered to the validation probe: a chat completion, or a Responses-API
event stream. A usable answer becomes a :class:`Reply`; anything else raises the outcome the retry policy in
``runtimes/server/validate.py`` acts on (:class:`ReasoningOnly`, :class:`EmptyReply`, :class:`ResponsesUnusable`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.text import loads_json

__all__ = ["EmptyReply", "ReasoningOnly", "Reply", "ResponsesUnusable", "read_chat", "read_stream", "scan_sse"]

MAX_SSE_LINES = 20000  # a stream that never completes is cut off by count as well as by time
TERMINAL_SSE = {"response.completed", "response.failed", "response.incomplete", "error"}


@dataclass(eq=False)  # exceptions stay hashable
class ReasoningOnly(Exception):
    """Reasoning but no answer. ``truncated``: the budget ran out, so a bigger budget may help."""

    truncated: bool
    excerpt: str


@dataclass(eq=False)  # exceptions stay hashable
class EmptyReply(Exception):
    """HTTP 200, but no answer a client could use (no choices, or neither text nor a tool call)."""

    what: str
    excerpt: str


class ResponsesUnusable(Exception):
    """The Responses API is missing or does not stream what a client needs: fall back to chat completions."""


@dataclass(frozen=True)
class Reply:
    text: str
    tool_called: bool
    latency_s: float




def read_chat(text: str, excerpt: str, latency_s: float) -> Reply:
    try:
        data = loads_json(text)
    except ValueError:
        data = None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EmptyReply("answered HTTP 200 without a chat completion", excerpt)
    message: dict[str, Any] = _dict(choices[0].get("message"))
    content: str = message["content"] if isinstance(message.get("content"), str) else ""
    tool_calls = message.get("tool_calls") or []
    if content.strip() or tool_calls:
        return Reply(content.strip() or _describe_tool_call(tool_calls), bool(tool_calls), latency_s)
    if message.get("reasoning_content") or message.get("reasoning"):
        raise ReasoningOnly(choices[0].get("finish_reason") in ("length", None), excerpt)
    raise EmptyReply("answered with an empty reply", excerpt)


def _describe_tool_call(tool_calls: Any) -> str:
    first = _dict(tool_calls[0] if isinstance(tool_calls, list) and tool_calls else None)
    function = _dict(first.get("function"))
    return f"tool call: {function.get('name', '?')}({function.get('arguments', '')})"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class _Stream:
    types: list[str] = dataclasses.field(default_factory=list)
    text: list[str] = dataclasses.field(default_factory=list)
    function_call: str | None = None
    reasoning: bool = False
    incomplete_reason: str | None = None
    raw: list[str] = dataclasses.field(default_factory=list)
    cut_off: bool = False  # the budget ran out before a terminal event


def scan_sse(lines: Iterable[str], past_deadline: Callable[[], bool]) -> _Stream:
    """Read Responses-API server-sent events until a terminal one, bounded by line count and the budget."""
    stream = _Stream()
    for count, line in enumerate(lines):
        if count >= MAX_SSE_LINES:
            break
        if past_deadline():
            stream.cut_off = True
            break
        if len(stream.raw) < 50:
            stream.raw.append(line)
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        _note_event(stream, payload)
        if stream.types and stream.types[-1] in TERMINAL_SSE:
            break
    return stream


def _note_event(stream: _Stream, payload: str) -> None:
    try:
        event = loads_json(payload)
    except ValueError:
        return
    if not isinstance(event, dict):
        return
    kind = str(event.get("type", ""))
    stream.types.append(kind)
    if kind == "response.output_text.delta":
        stream.text.append(str(event.get("delta", "")))
    elif kind.startswith("response.reasoning"):
        stream.reasoning = True
    elif kind == "response.output_item.added" and _dict(event.get("item")).get("type") == "function_call":
        stream.function_call = str(event["item"].get("name", "?"))
    elif kind in ("response.incomplete", "response.completed"):  # vLLM may "complete" with status incomplete
        details = _dict(_dict(event.get("response")).get("incomplete_details"))
        stream.incomplete_reason = str(details["reason"]) if details.get("reason") else None


def read_stream(stream: _Stream, excerpt: str, latency_s: float) -> Reply:
    text = "".join(stream.text).strip()
    if "response.created" not in stream.types:
        raise ResponsesUnusable("the stream did not start with response.created")
    if "response.failed" in stream.types or "error" in stream.types:
        raise ResponsesUnusable("the server reported response.failed")
    if stream.reasoning and not text and not stream.function_call:
        raise ReasoningOnly(stream.incomplete_reason in ("max_output_tokens", None), excerpt)
    if not text and not stream.function_call:
        raise ResponsesUnusable("the stream carried no response.output_text.delta")
    if "response.completed" not in stream.types:
        last = stream.types[-1] if stream.types else "nothing"
        raise ResponsesUnusable(f"the stream ended with {last}, not response.completed")
    return Reply(text or f"tool call: {stream.function_call}(…)", bool(stream.function_call), latency_s)
