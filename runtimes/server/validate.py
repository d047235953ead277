"""The validation probe: prove an OpenAI-compatible endpoint answers a real request, the way an agent will call it.

A server can be "ready" (``/v1/models`` answers) and still fail every real request: the tool parser is missing
(NemoClaw #6314, a 400 on ``tool_choice: "auto"``), the model id is wrong, a reasoning model spends its whole budget
thinking. So after readiness we send one small chat completion *with a tool* and read the answer.

* ``/v1/chat/completions`` by default; ``/v1/responses`` only when asked, and only if it streams the events a
  client needs (``response.created``, ``response.output_text.delta``, ``response.completed``) — else we fall back
  to chat completions and say why (a ``Warning`` event and ``fallback_reason``).
* A timed-out or refused connection is retried once with a doubled budget; HTTP 429/502/503/504 are retried after
  5, 15 and 30 s; route (404), configuration (400/422) and authentication (401/403) failures fail at once.
* A reasoning model that answers only with reasoning and ``finish_reason: "length"`` gets one more try with a
  larger response budget.

Every retry goes through tenacity, sleeping through the injected :class:`Clock` (and the cancel token).
Failures raise :class:`ValidationFailed` (exit 5) with a classified ``cause`` and a redacted excerpt of the reply.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from nemoclaw_runtime.kernel.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.kernel.errors import InvalidInput, ValidationFailed
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.names import API_COMPLETIONS, API_RESPONSES, APIS
from nemoclaw_runtime.kernel.secret import Secret, redact
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry import is_safe_model_id
from nemoclaw_runtime.runtimes.net import http_client
from nemoclaw_runtime.runtimes.server.answers import (
    EmptyReply,
    ReasoningOnly,
    Reply,
    ResponsesUnusable,
    read_chat,
    read_stream,
    scan_sse,
)

PROBE_PROMPT = "Reply with the single word: ready"
RESPONSE_BUDGETS = (64, 512)  # max tokens; the second only for a reasoning model that thought through the first
OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})
OVERLOAD_BACKOFF_S = (5.0, 15.0, 30.0)
TRANSPORT_RETRIES = 1  # a timed-out or refused connection: one more try, with the budget doubled
REFUSED_PAUSE_S = 2.0  # a server that refused may be restarting; a timeout already waited long enough
CONNECT_TIMEOUT_CAP_S = 10.0  # connecting never needs the whole budget (NemoClaw: --connect-timeout 10)
EXCERPT_CHARS = 500
REPLY_EXCERPT_CHARS = 200
MAX_BODY_CHARS = 65536  # bodies are redacted whole before they are cut, but never more than this is kept

PROBE_TOOL = {
    "name": "get_current_time",
    "description": "Get the current time. Only call this if the user asks for the time.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": []},
}
_TOOL_WORDS = re.compile(r"tool|function.call", re.IGNORECASE)


@dataclass(frozen=True)
class ValidationResult:
    """What the probe proved: which API path to configure, how fast it answered, what it said."""

    base_url: str
    model: str
    api: str  # the API path clients should use: openai-completions or openai-responses
    latency_ms: float  # of the request that succeeded, measured with the injected clock
    reply_excerpt: str
    tools_supported: bool  # the server accepted a request carrying tools and tool_choice "auto"
    tool_called: bool  # the model answered with a tool call instead of text
    requested_api: str
    fallback_reason: str | None = None  # why openai-responses was not usable, when it was asked for
    attempts: int = 1  # HTTP requests sent, retries included
    max_tokens: int = RESPONSE_BUDGETS[0]  # the response budget of the request that succeeded

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_endpoint(
    base_url: str,
    model: str,
    *,
    settings: Settings,
    api: str | None = None,
    http: httpx.Client | None = None,
    clock: Clock | None = None,
    events: EventSink = discard,
    cancel: CancelToken | None = None,
    api_key: Secret | None = None,
) -> ValidationResult:
    """Send ``model`` at ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) one real request and read the answer.

    ``api`` (else ``settings.preferred_api``, else ``openai-completions``) picks the API to prove. The budget per
    request is ``settings.local_inference_timeout`` seconds. Raises :class:`InvalidInput` for a bad URL, model id
    or API name and :class:`ValidationFailed` when the endpoint does not give a usable answer.
    """
    base = _check_base_url(base_url)
    _check_model(model)
    wanted = _check_api(api or settings.preferred_api or API_COMPLETIONS)
    events(PhaseChanged("validate", f"Validating {model} at {base} ({wanted})"))
    with _client(http) as client:
        probe = _Probe(base, model, wanted, client, clock or SystemClock(), events, cancel or CancelToken(),
                       api_key, settings.local_inference_timeout)
        result = probe.run()
    events(Info(f"{model} answered in {result.latency_ms:.0f} ms via {result.api} (tool calling accepted)"))
    return result


# --- inputs --------------------------------------------------------------------------------------------------------


def _check_base_url(base_url: str) -> str:
    try:
        parsed = urllib.parse.urlsplit(base_url.strip())
        host = parsed.hostname
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parsed, host = urllib.parse.urlsplit(""), None
    if parsed.scheme not in ("http", "https") or not host:
        raise InvalidInput("The base URL must be an http:// or https:// URL with a host",
                           remedy="pass a base URL such as http://127.0.0.1:8000/v1")
    if parsed.username or parsed.password:  # never echo it: it holds a credential
        raise InvalidInput("The base URL must not contain credentials",
                           remedy="drop user:password@ from the URL and pass the API key separately")
    if parsed.query or parsed.fragment:  # the API paths are appended to it; a query could also hold a key
        raise InvalidInput("The base URL must not have a query string or fragment",
                           remedy="pass only scheme, host, port and path, e.g. http://127.0.0.1:8000/v1")
    return base_url.strip().rstrip("/")


def _check_model(model: str) -> None:
    if not is_safe_model_id(model):  # not echoed: an unsafe id may carry terminal escapes
        raise InvalidInput("The model id contains characters outside A-Z a-z 0-9 . _ : / -",
                           remedy="pass the id exactly as GET <base-url>/models lists it")


def _check_api(api: str) -> str:
    if api not in APIS:
        raise InvalidInput(f"Unknown API {api!r}: must be {' or '.join(APIS)}",
                           remedy="pass --api openai-completions (the default) or --api openai-responses")
    return api


@contextmanager
def _client(http: httpx.Client | None) -> Iterator[httpx.Client]:
    if http is not None:
        yield http
        return
    # http_client: trust_env=False (the library never reads the environment, and a proxy must not sit between us and
    # a local server), no redirects; each request sets its own budget
    with http_client() as client:
        yield client


# --- outcomes that the retry policy acts on ------------------------------------------------------------------------


@dataclass(eq=False)  # exceptions stay hashable
class _TransportFailure(Exception):
    """The request timed out or the connection was refused/dropped: retried once with a doubled budget."""

    cause: str  # "timeout" | "refused"
    detail: str


@dataclass(eq=False)  # exceptions stay hashable
class _Overloaded(Exception):
    """HTTP 429/502/503/504: retried after 5, 15 and 30 s."""

    status: int
    excerpt: str


@dataclass
class _Budget:
    """Mutable per-call retry bookkeeping (tenacity keeps the attempt loop; this keeps what each attempt may use)."""

    timeout_s: float
    factor: float = 1.0
    transport_retries: int = 0
    overload_retries: int = 0
    requests: int = 0

    def timeout(self) -> httpx.Timeout:
        connect = min(self.timeout_s, CONNECT_TIMEOUT_CAP_S)
        return httpx.Timeout(self.timeout_s * self.factor, connect=connect * self.factor)


# --- the probe -----------------------------------------------------------------------------------------------------


class _Probe:
    def __init__(self, base: str, model: str, api: str, http: httpx.Client, clock: Clock, events: EventSink,
                 cancel: CancelToken, api_key: Secret | None, timeout_s: float) -> None:
        self.base, self.model, self.api, self.http = base, model, api, http
        self.clock, self.events, self.cancel = clock, events, cancel
        self.secrets = [api_key.reveal()] if api_key else []
        self.headers = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key else {}
        self.budget = _Budget(timeout_s)
        self.current_api = api  # the API being probed now (chat completions after a fallback)

    def run(self) -> ValidationResult:
        if self.api == API_RESPONSES:
            try:
                return self._validate(API_RESPONSES, self._responses_once)
            except ResponsesUnusable as exc:
                reason = str(exc)
                self.events(Warning(f"{self.base}/responses is not usable ({reason}); "
                                    f"falling back to {API_COMPLETIONS}"))
                # chat completions gets retries of its own; the request count and a doubled budget carry over
                self.budget.transport_retries = self.budget.overload_retries = 0
                try:
                    result = self._validate(API_COMPLETIONS, self._chat_once)
                except ValidationFailed as failed:
                    failed.details["fallback_reason"] = reason
                    raise
                return dataclasses.replace(result, fallback_reason=reason)
        return self._validate(API_COMPLETIONS, self._chat_once)

    def _validate(self, api: str, once: Callable[[int], Reply]) -> ValidationResult:
        self.current_api = api
        try:
            reply, max_tokens = self._with_reasoning_retry(once)
        except (_TransportFailure, _Overloaded, ReasoningOnly, EmptyReply) as exc:
            raise self._failure(api, exc) from exc
        return ValidationResult(
            base_url=self.base, model=self.model, api=api, latency_ms=round(reply.latency_s * 1000, 1),
            reply_excerpt=_cut(reply.text, REPLY_EXCERPT_CHARS), tools_supported=True,
            tool_called=reply.tool_called, requested_api=self.api, attempts=self.budget.requests,
            max_tokens=max_tokens)

    # --- retry policies ----------------------------------------------------------------------------------------

    def _with_reasoning_retry(self, once: Callable[[int], Reply]) -> tuple[Reply, int]:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ReasoningOnly) and e.truncated),
            stop=tenacity.stop_after_attempt(len(RESPONSE_BUDGETS)),
            before_sleep=lambda rs: self.events(Info(
                f"{self.model} used its {RESPONSE_BUDGETS[rs.attempt_number - 1]}-token budget on reasoning; "
                f"trying once more with {RESPONSE_BUDGETS[rs.attempt_number]} tokens")),
            sleep=self._sleep, reraise=True)
        for attempt in retrying:
            with attempt:
                max_tokens = RESPONSE_BUDGETS[attempt.retry_state.attempt_number - 1]
                return self._with_transport_retries(functools.partial(once, max_tokens)), max_tokens
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover

    def _with_transport_retries(self, send: Callable[[], Reply]) -> Reply:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._retryable), wait=self._wait,
            stop=tenacity.stop_after_attempt(1 + TRANSPORT_RETRIES + len(OVERLOAD_BACKOFF_S)),
            before_sleep=self._before_retry, sleep=self._sleep, reraise=True)
        return retrying(send)

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, _TransportFailure):
            return self.budget.transport_retries < TRANSPORT_RETRIES
        if isinstance(exc, _Overloaded):
            return self.budget.overload_retries < len(OVERLOAD_BACKOFF_S)
        return False

    def _wait(self, rs: tenacity.RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Overloaded):
            return OVERLOAD_BACKOFF_S[self.budget.overload_retries]
        return REFUSED_PAUSE_S if isinstance(exc, _TransportFailure) and exc.cause == "refused" else 0.0

    def _before_retry(self, rs: tenacity.RetryCallState) -> None:
        """Runs once per retry, after the wait was chosen: book the retry and say what happens next."""
        exc = rs.outcome.exception() if rs.outcome else None
        pause = rs.upcoming_sleep
        if isinstance(exc, _Overloaded):
            self.budget.overload_retries += 1
            self.events(Info(f"{self.base} answered HTTP {exc.status} (busy); retrying in {pause:g} s "
                             f"({self.budget.overload_retries}/{len(OVERLOAD_BACKOFF_S)})"))
        elif isinstance(exc, _TransportFailure):
            self.budget.transport_retries += 1
            self.budget.factor *= 2
            self.events(Info(f"{exc.detail}; retrying once with a {self.budget.timeout_s * self.budget.factor:g} s "
                             "budget"))

    def _sleep(self, seconds: float) -> None:
        self.cancel.wait(seconds, self.clock)

    # --- one request per API ---------------------------------------------------------------------------------

    def _chat_once(self, max_tokens: int) -> Reply:
        url = f"{self.base}/chat/completions"
        body = {"model": self.model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                "max_tokens": max_tokens, "temperature": 0, "stream": False,
                "tools": [{"type": "function", "function": PROBE_TOOL}], "tool_choice": "auto"}
        started = self._begin_request()
        with self._transport_errors(url):
            response = self.http.post(url, json=body, headers=self.headers, timeout=self.budget.timeout())
        self._check_status(url, response.status_code, response.text, responses_api=False)
        return read_chat(response.text, self._excerpt(response.text), self.clock.monotonic() - started)

    def _responses_once(self, max_tokens: int) -> Reply:
        url = f"{self.base}/responses"
        body = {"model": self.model, "input": PROBE_PROMPT, "max_output_tokens": max_tokens, "temperature": 0,
                "stream": True, "tools": [{"type": "function", **PROBE_TOOL}], "tool_choice": "auto"}
        started = self._begin_request()
        with self._transport_errors(url), self.http.stream(
                "POST", url, json=body, headers=self.headers, timeout=self.budget.timeout()) as response:
            if not 200 <= response.status_code < 300:
                response.read()
                self._check_status(url, response.status_code, response.text, responses_api=True)
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                raise ResponsesUnusable(f"it answered {content_type or 'no content type'} instead of an SSE stream")
            stream = scan_sse(response.iter_lines(), self._deadline(started))
        if stream.cut_off:
            budget = self.budget.timeout_s * self.budget.factor
            raise _TransportFailure("timeout", f"POST {url} did not finish streaming within {budget:g} s")
        return read_stream(stream, self._excerpt("\n".join(stream.raw)), self.clock.monotonic() - started)

    def _begin_request(self) -> float:
        self.cancel.raise_if_cancelled()
        self.budget.requests += 1
        return self.clock.monotonic()

    def _deadline(self, started: float) -> Callable[[], bool]:
        limit = self.budget.timeout_s * self.budget.factor
        return lambda: self.clock.monotonic() - started > limit

    @contextmanager
    def _transport_errors(self, url: str) -> Iterator[None]:
        """The one place httpx's transport errors become outcomes the retry policy understands."""
        try:
            yield
        except httpx.TimeoutException as exc:
            budget = self.budget.timeout_s * self.budget.factor
            raise _TransportFailure("timeout", f"POST {url} got no answer within {budget:g} s") from exc
        except httpx.TransportError as exc:  # refused, reset, dropped mid-answer, unresolvable host
            raise _TransportFailure("refused", f"POST {url} failed: {type(exc).__name__}: {exc}") from exc

    def _check_status(self, url: str, status: int, text: str, *, responses_api: bool) -> None:
        if 200 <= status < 300:
            return
        excerpt = self._excerpt(text)
        if status in OVERLOAD_STATUSES:
            raise _Overloaded(status, excerpt)
        if status in (401, 403):
            raise self._error("auth", f"{url} refused our credentials: HTTP {status}", excerpt, status,
                              "pass the endpoint's API key (CLI: --api-key-env NAME of a variable holding it)")
        if responses_api:
            raise ResponsesUnusable(f"POST /responses answered HTTP {status}: {_one_line(excerpt, 120)}")
        if status in (404, 405):
            raise self._error("route", f"POST {url} answered HTTP {status}: {_one_line(excerpt, 200)}", excerpt,
                              status, "use a base URL ending in /v1 (e.g. http://127.0.0.1:8000/v1) and a model id "
                              "that GET <base-url>/models lists")
        if status < 500 and _TOOL_WORDS.search(text):
            raise self._error("tools-unsupported", f"{self.model} rejected tool calling (tools with tool_choice "
                              f'"auto"): HTTP {status}: {_one_line(excerpt, 200)}', excerpt, status,
                              "agents call tools: serve the model with --enable-auto-tool-choice --tool-call-parser "
                              "<parser for this model> (e.g. hermes, llama3_json, qwen3_coder), or pick a model "
                              "that supports tools")
        cause = "config" if status < 500 else "server-error"
        raise self._error(cause, f"POST {url} answered HTTP {status}: {_one_line(excerpt, 200)}", excerpt, status,
                          "check the model id and the server's flags (context length, max tokens) against the "
                          "error above and the server log")

    # --- failures ----------------------------------------------------------------------------------------------

    def _failure(self, api: str, exc: Exception) -> ValidationFailed:
        """The one place retried outcomes that ran out of retries become a ValidationFailed."""
        if isinstance(exc, _TransportFailure):
            if exc.cause == "timeout":
                return self._error("timeout", f"{self.model} at {self.base} did not answer: {exc.detail}", "",
                                   None, "the model may still be loading or be too slow here; raise "
                                   "NEMOCLAW_LOCAL_INFERENCE_TIMEOUT or check the server log", api=api)
            return self._error("refused", f"Could not reach {self.base}: {exc.detail}", "", None,
                               "check that the server is running and that host and port in the base URL are right",
                               api=api)
        if isinstance(exc, _Overloaded):
            return self._error("overloaded", f"{self.base} stayed busy: HTTP {exc.status} after "
                               f"{self.budget.overload_retries} retries", exc.excerpt, exc.status,
                               "the server is overloaded or still loading; wait and validate again", api=api)
        if isinstance(exc, EmptyReply):
            return self._error("empty", f"{self.model} at {self.base} {exc.what}", exc.excerpt, 200,
                               "check the server log: the chat template may be wrong or the model still loading",
                               api=api)
        assert isinstance(exc, ReasoningOnly)
        return self._error("reasoning-only", f"{self.model} answered only with reasoning and no reply, even with "
                           f"{RESPONSE_BUDGETS[-1]} tokens", exc.excerpt, 200,
                           "give clients a larger max_tokens, or turn thinking off for this model (vLLM: "
                           "--default-chat-template-kwargs '{\"enable_thinking\": false}')", api=api)

    def _error(self, cause: str, message: str, excerpt: str, status: int | None, remedy: str,
               api: str | None = None) -> ValidationFailed:
        details = {"cause": cause, "base_url": self.base, "model": self.model, "api": api or self.current_api,
                   "status": status, "excerpt": excerpt, "attempts": self.budget.requests}
        return ValidationFailed(message, remedy=remedy, cause=cause, details=details)

    def _excerpt(self, text: str) -> str:
        return _cut(redact(text[:MAX_BODY_CHARS], self.secrets), EXCERPT_CHARS)


# --- text helpers --------------------------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str, limit: int) -> str:
    return _cut(" ".join(text.split()), limit)


__all__ = ["APIS", "API_COMPLETIONS", "API_RESPONSES", "EXCERPT_CHARS", "ValidationResult", "validate_endpoint"]
