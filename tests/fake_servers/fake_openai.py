"""A fake OpenAI-compatible server on 127.0.0.1 for the validation probe's tests.

A threaded ``http.server`` on a free port that answers ``GET /v1/models``, ``POST /v1/chat/completions`` and
``POST /v1/responses`` the way vLLM does, with one *behaviour* picked per server:

    normal            a chat completion with text; /v1/responses answers 404 (a server without it)
    reasoning-only    only ``reasoning_content`` and ``finish_reason: "length"`` while max_tokens < reasoning_below,
                      then a normal answer (pass a huge reasoning_below for a model that never answers)
    overloaded        ``status`` (503) for the first ``fail_times`` requests, then normal
    rate-limited      429 for the first ``fail_times`` requests, then normal
    route-404         every POST answers 404 (vLLM's "model does not exist")
    tools-400         a request carrying tools answers vLLM's 400 "auto" tool choice error
    slow              the first ``fail_times`` requests sleep ``delay`` seconds before answering, then normal
    responses-stream  /v1/responses streams good SSE (created, output_text.delta, completed); chat is normal
    responses-broken  /v1/responses answers 200 without the events a client needs; chat is normal
    empty             a chat completion whose content is empty

With ``api_key`` set, every request without ``Authorization: Bearer <api_key>`` gets a 401 whose body (like a
careless server's) echoes the header it got — so tests can check that excerpts are redacted.

Use the ``fake_openai`` fixture or ``fake_openai_servers()`` (factories; servers stop at teardown) or the
``serve_fake_openai`` context manager.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

BEHAVIOURS = ("normal", "reasoning-only", "overloaded", "rate-limited", "route-404", "tools-400", "slow",
              "responses-stream", "responses-broken", "empty")
TOOLS_400_MESSAGE = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]


class FakeOpenAI:
    def __init__(self, behaviour: str = "normal", *, fail_times: int = 1, status: int = 503, delay: float = 1.0,
                 reply: str = "ready", reasoning_below: int = 256, api_key: str | None = None) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; pick one of {BEHAVIOURS}")
        self.behaviour, self.fail_times, self.status, self.delay = behaviour, fail_times, status, delay
        self.reply, self.reasoning_below, self.api_key = reply, reasoning_below, api_key
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)  # a short poll: quick to stop

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def posts(self, path: str | None = None) -> list[RecordedRequest]:
        """The POSTs received so far (to ``path``, e.g. ``/v1/chat/completions``, when given)."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and (path is None or r.path == path)]

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:  # noqa: PYI034 - never subclassed
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- called from the handler threads -------------------------------------------------------------------------

    def record(self, request: RecordedRequest) -> int:
        """Store ``request``; return how many POSTs came before it."""
        with self._lock:
            earlier = sum(1 for r in self.requests if r.method == "POST")
            self.requests.append(request)
            return earlier

    def answer(self, request: RecordedRequest, earlier_posts: int) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request, according to the behaviour."""
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            got = request.headers.get("authorization", "nothing")
            return _json(401, {"error": {"message": f"invalid credentials: got {got}", "type": "Unauthorized"}})
        if request.method == "GET":
            return _json(200, {"object": "list", "data": [{"id": "fake/model", "object": "model",
                                                           "max_model_len": 4096}]})
        failing = earlier_posts < self.fail_times
        if self.behaviour in ("overloaded", "rate-limited") and failing:
            status = 429 if self.behaviour == "rate-limited" else self.status
            return _json(status, {"error": {"message": "server busy, try again later", "code": status}})
        if self.behaviour == "slow" and failing:
            time.sleep(self.delay)
        if self.behaviour == "route-404":
            return _json(404, {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError"}})
        if request.path.endswith("/responses"):
            return self._responses()
        if request.path.endswith("/chat/completions"):
            return self._chat(request.body or {})
        return _json(404, {"detail": "Not Found"})

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if self.behaviour == "tools-400" and body.get("tools"):
            return _json(400, {"error": {"message": TOOLS_400_MESSAGE, "type": "BadRequestError", "code": 400}})
        message: dict[str, Any] = {"role": "assistant", "content": self.reply, "tool_calls": []}
        finish = "stop"
        if self.behaviour == "empty":
            message["content"] = ""
        if self.behaviour == "reasoning-only" and int(body.get("max_tokens", 0)) < self.reasoning_below:
            message = {"role": "assistant", "content": None, "reasoning_content": "Okay, the user wants me to"}
            finish = "length"
        return _json(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                           "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}})

    def _responses(self) -> tuple[int, dict[str, str], bytes]:
        if self.behaviour == "responses-stream":
            events: list[dict[str, Any]] = [
                {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
                {"type": "response.output_text.delta", "delta": self.reply[:3]},
                {"type": "response.output_text.delta", "delta": self.reply[3:]},
                {"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}}]
            return _sse(events)
        if self.behaviour == "responses-broken":  # 200, but no created/delta/completed a client could follow
            return _sse([{"type": "response.in_progress"}])
        return _json(404, {"detail": "Not Found"})


def _json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _sse(events: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return 200, {"Content-Type": "text/event-stream"}, text.encode()


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            self._serve(body if isinstance(body, dict) else None)

        def _serve(self, body: dict[str, Any] | None) -> None:
            request = RecordedRequest(self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()})
            status, headers, payload = fake.answer(request, fake.record(request))
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (the "slow" behaviour)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve_fake_openai(behaviour: str = "normal", **options: Any) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(behaviour, **options) as fake:
        yield fake


@contextmanager
def fake_openai_servers() -> Iterator[Callable[..., FakeOpenAI]]:
    """A factory: ``start("overloaded", fail_times=2)`` starts a server; all stop when the block ends."""
    started: list[FakeOpenAI] = []

    def start(behaviour: str = "normal", **options: Any) -> FakeOpenAI:
        fake = FakeOpenAI(behaviour, **options).start()
        started.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture
def fake_openai() -> Iterator[Callable[..., FakeOpenAI]]:
    """The factory as a fixture (for a conftest ``pytest_plugins = ["tests.fake_servers.fake_openai"]``)."""
    with fake_openai_servers() as start:
        yield start
