"""How a server is doing, from what it answers over HTTP: health with its reason, the served model, the context
window, and the ``/metrics`` scrape (vLLM, NIM) or the loaded models (Ollama).

Every request is bounded by a :class:`Budget` (a deadline on the injected clock): connect and read timeouts are
cut to what is left of it, and a body is read at most :data:`MAX_BODY_BYTES`, stopping at the deadline. Nothing
here raises for what a server does — a refused port, a hang, garbage, a non-HTTP answer all become a health and a
reason. Health values (stable)::

    healthy       the runtime's health endpoint says so
    starting      the container runs but its port is not open yet, or NIM is live but not ready
    unhealthy     the server says it is broken (vLLM /health 503: engine dead), or answers garbage
    unresponsive  it accepted the connection but did not answer within the budget
    stopped | restarting | paused   the container is not running (decided from the engine, not HTTP)
    unknown       nothing to ask (no published port, a runtime without a probe, something that is not a server)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from nemoclaw_runtime.kernel.clock import Clock
from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.registry import is_safe_model_id
from nemoclaw_runtime.runtimes.server.ollama_api import normalize_tag
from nemoclaw_runtime.runtimes.server.probes import get_bounded, parse_max_model_len
from nemoclaw_runtime.runtimes.status.metrics import MetricsSample, MetricsUnreadable, parse_metrics

HEALTHY, STARTING, UNHEALTHY, UNRESPONSIVE = "healthy", "starting", "unhealthy", "unresponsive"
STOPPED, RESTARTING, PAUSED, UNKNOWN = "stopped", "restarting", "paused", "unknown"
HEALTH_VALUES = (HEALTHY, STARTING, UNHEALTHY, UNRESPONSIVE, STOPPED, RESTARTING, PAUSED, UNKNOWN)

CONNECT_TIMEOUT_S = 0.25
READ_TIMEOUT_S = 0.6
EXCERPT_CHARS = 80
_MIN_REQUEST_S = 0.02  # less than this left of the budget: do not start another request


class _BudgetSpent(Exception):
    """The deadline passed before (or while) a request could be made."""


@dataclass(frozen=True)
class Budget:
    """The time one sample may spend on HTTP: ``deadline`` on ``clock.monotonic()``."""

    clock: Clock
    deadline: float
    connect_s: float = CONNECT_TIMEOUT_S
    read_s: float = READ_TIMEOUT_S

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def timeout(self) -> httpx.Timeout:
        left = self.remaining()
        if left < _MIN_REQUEST_S:
            raise _BudgetSpent
        return httpx.Timeout(connect=min(self.connect_s, left), read=min(self.read_s, left),
                             write=min(self.read_s, left), pool=min(self.connect_s, left))


@dataclass(frozen=True)
class LoadedModel:
    """One entry of Ollama's ``/api/ps``."""

    name: str
    size_bytes: int | None = None
    size_vram_bytes: int | None = None
    expires_at: str | None = None
    context_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size_bytes": self.size_bytes, "size_vram_bytes": self.size_vram_bytes,
                "expires_at": self.expires_at, "context_length": self.context_length}


@dataclass(frozen=True)
class OllamaState:
    """Ollama's version and its loaded models; ``reason`` says why ``loaded`` is unknown (``None``)."""

    version: str | None
    loaded: tuple[LoadedModel, ...] | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version,
                "loaded_models": None if self.loaded is None else [m.to_dict() for m in self.loaded],
                "reason": self.reason}


@dataclass(frozen=True)
class ProbeOutcome:
    """What the server answered. ``answered`` is False when nothing listens (a refused connection)."""

    health: str
    reason: str | None = None
    runtime: str | None = None
    answered: bool = True
    served_id: str | None = None
    context_window: int | None = None
    metrics: MetricsSample | None = None
    metrics_reason: str | None = None
    ollama: OllamaState | None = None
    notes: tuple[str, ...] = field(default=())


# --- bounded requests -------------------------------------------------------------------------------------------


def bounded_get(http: httpx.Client, url: str, budget: Budget) -> tuple[int, str]:
    """GET ``url`` within the budget; (status, body text) with the body cut at the server layer's bound.

    Raises httpx transport errors, or :class:`_BudgetSpent` when the deadline passes first."""

    def stop_at_deadline() -> None:
        if budget.remaining() <= 0:
            raise _BudgetSpent

    status, _, body = get_bounded(http, url, budget.timeout(), stop_at_deadline)
    return status, body


def _json(text: str) -> Any:
    try:
        return loads_json(text)
    except ValueError:
        return None


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _not_open(exc: Exception) -> bool:
    """A refused connection, or docker-proxy accepting on the host and hanging up because nothing listens inside
    the container yet: the port is not open."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError)):
        return True
    return isinstance(exc, httpx.RemoteProtocolError) and "without sending" in str(exc)


def transport_outcome(exc: Exception, path: str, budget: Budget) -> ProbeOutcome:
    """The health a transport failure on ``path`` means."""
    if isinstance(exc, (_BudgetSpent, httpx.TimeoutException)) and not isinstance(exc, httpx.ConnectTimeout):
        return ProbeOutcome(UNRESPONSIVE, f"{path}: accepted the connection but sent no answer within "
                                          f"{budget.read_s:g} s")
    if _not_open(exc):
        return ProbeOutcome(STARTING, f"{path}: port not open yet ({type(exc).__name__})", answered=False)
    if isinstance(exc, httpx.HTTPError):
        return ProbeOutcome(UNHEALTHY, f"{path}: answered, but not in HTTP ({type(exc).__name__}: "
                                       f"{_excerpt(str(exc))})")
    return ProbeOutcome(UNKNOWN, f"{path}: {type(exc).__name__}: {_excerpt(str(exc))}")


def _try(http: httpx.Client, url: str, budget: Budget) -> tuple[int, str] | str:
    """(status, body), or a one-line reason when the request failed (for the optional requests)."""
    try:
        return bounded_get(http, url, budget)
    except _BudgetSpent:
        return "no answer within the time budget"
    except httpx.TimeoutException as exc:
        return f"no answer in time ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {_excerpt(str(exc))}"


# --- the pieces every OpenAI-style server has -------------------------------------------------------------------


def _models(http: httpx.Client, base: str, budget: Budget, served_hint: str | None
            ) -> tuple[str | None, int | None, str | None]:
    """(served id, context window, note) from ``/v1/models``."""
    got = _try(http, f"{base}/v1/models", budget)
    if isinstance(got, str):
        return served_hint, None, f"/v1/models: {got}"
    status, body = got
    payload = _json(body) if status == 200 else None
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list):
        return served_hint, None, f"/v1/models answered HTTP {status} without a data list: {_excerpt(body)!r}"
    entries = [e for e in data if isinstance(e, Mapping)]
    chosen = next((e for e in entries if served_hint is not None and e.get("id") == served_hint), None)
    if chosen is None:
        chosen = next((e for e in entries if isinstance(e.get("id"), str) and is_safe_model_id(e["id"])), None)
    if chosen is None:
        return served_hint, None, "/v1/models lists no model with a safe id"
    context, warning = parse_max_model_len(chosen.get("max_model_len"))
    return str(chosen["id"]), context, warning


def _scrape(http: httpx.Client, base: str, paths: tuple[str, ...], budget: Budget
            ) -> tuple[MetricsSample | None, str | None]:
    """The first of ``paths`` that answers 200, parsed; else (None, why)."""
    reason = "not scraped"
    for path in paths:
        got = _try(http, f"{base}{path}", budget)
        if isinstance(got, str):
            return None, f"{path}: {got}"
        status, body = got
        if status == 404:
            reason = f"{path} answered 404: the server exposes no metrics there"
            continue
        if status != 200:
            return None, f"{path} answered HTTP {status}"
        try:
            sample = parse_metrics(body, budget.clock.monotonic())
        except MetricsUnreadable as exc:
            return None, f"{path}: {exc}"
        if not sample.values:
            return sample, f"{path} holds no vLLM metrics ({sample.series} series of other names)"
        return sample, None
    return None, reason


# --- per runtime ------------------------------------------------------------------------------------------------


def probe_vllm(http: httpx.Client, base: str, budget: Budget, *, served_hint: str | None = None) -> ProbeOutcome:
    """vLLM: ``/health`` (200 healthy, 503 engine dead), ``/v1/models``, ``/metrics``."""
    try:
        status, body = bounded_get(http, f"{base}/health", budget)
    except (httpx.HTTPError, _BudgetSpent) as exc:
        return transport_outcome(exc, "/health", budget)
    if status == 200:
        health, reason = HEALTHY, None
    elif status == 503:
        health, reason = UNHEALTHY, "engine dead: /health answered 503"
    else:
        health, reason = UNHEALTHY, f"/health answered HTTP {status}: {_excerpt(body)!r}"
    served, context, note = _models(http, base, budget, served_hint)
    sample, metrics_reason = _scrape(http, base, ("/metrics",), budget)
    return ProbeOutcome(health, reason, runtime="vllm", served_id=served, context_window=context, metrics=sample,
                        metrics_reason=metrics_reason, notes=(note,) if note else ())


def probe_nim(http: httpx.Client, base: str, budget: Budget, *, served_hint: str | None = None) -> ProbeOutcome:
    """NIM: ``/v1/health/ready`` (a 503 with ``/v1/health/live`` answering 200 is "starting"), ``/v1/models``,
    ``/v1/metrics`` (then ``/metrics``)."""
    try:
        status, body = bounded_get(http, f"{base}/v1/health/ready", budget)
        if status == 200:
            health, reason = HEALTHY, None
        elif status == 503:
            live, _ = bounded_get(http, f"{base}/v1/health/live", budget)
            health = STARTING if live == 200 else UNHEALTHY
            reason = ("not ready yet: /v1/health/ready answered 503" if live == 200
                      else f"/v1/health/ready answered 503 and /v1/health/live {live}")
        else:
            health, reason = UNHEALTHY, f"/v1/health/ready answered HTTP {status}: {_excerpt(body)!r}"
    except (httpx.HTTPError, _BudgetSpent) as exc:
        return transport_outcome(exc, "/v1/health/ready", budget)
    served, context, note = _models(http, base, budget, served_hint)
    sample, metrics_reason = _scrape(http, base, ("/v1/metrics", "/metrics"), budget)
    return ProbeOutcome(health, reason, runtime="nim", served_id=served, context_window=context, metrics=sample,
                        metrics_reason=metrics_reason, notes=(note,) if note else ())


def probe_ollama(http: httpx.Client, base: str, budget: Budget, *, served_hint: str | None = None) -> ProbeOutcome:
    """Ollama: ``/api/version`` (JSON with a version: healthy), then ``/api/ps`` (loaded models)."""
    try:
        status, body = bounded_get(http, f"{base}/api/version", budget)
    except (httpx.HTTPError, _BudgetSpent) as exc:
        return transport_outcome(exc, "/api/version", budget)
    payload = _json(body) if status == 200 else None
    version = payload.get("version") if isinstance(payload, Mapping) else None
    if not isinstance(version, str) or not version:
        return ProbeOutcome(UNHEALTHY, f"/api/version answered HTTP {status} without a version: "
                                       f"{_excerpt(body)!r} (not Ollama?)", runtime="ollama")
    state = _loaded(http, base, budget, version)
    context = None
    if served_hint and state.loaded:
        wanted = normalize_tag(served_hint)
        context = next((m.context_length for m in state.loaded if normalize_tag(m.name) == wanted), None)
    return ProbeOutcome(HEALTHY, None, runtime="ollama", served_id=served_hint, context_window=context,
                        ollama=state)


def _loaded(http: httpx.Client, base: str, budget: Budget, version: str) -> OllamaState:
    got = _try(http, f"{base}/api/ps", budget)
    if isinstance(got, str):
        return OllamaState(version, None, f"/api/ps: {got}")
    status, body = got
    payload = _json(body) if status == 200 else None
    entries = payload.get("models") if isinstance(payload, Mapping) else None
    if not isinstance(entries, list):
        return OllamaState(version, None, f"/api/ps answered HTTP {status} without a models list: "
                                          f"{_excerpt(body)!r}")
    loaded = tuple(_loaded_model(e) for e in entries if isinstance(e, Mapping) and (e.get("model") or e.get("name")))
    return OllamaState(version, loaded)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _loaded_model(entry: Mapping[str, Any]) -> LoadedModel:
    name = str(entry.get("model") or entry.get("name"))
    expires = entry.get("expires_at")
    return LoadedModel(name=name if is_safe_model_id(name) else "(unsafe name)", size_bytes=_int(entry.get("size")),
                       size_vram_bytes=_int(entry.get("size_vram")),
                       expires_at=str(expires) if isinstance(expires, str) else None,
                       context_length=_int(entry.get("context_length")))


Probe = Callable[..., ProbeOutcome]
PROBES: dict[str, Probe] = {"vllm": probe_vllm, "nim": probe_nim, "ollama": probe_ollama}


def probe_unmanaged(http: httpx.Client, base: str, budget: Budget, *, ollama_port: bool) -> ProbeOutcome:
    """A server that is not one of our containers, on one of the known ports: what is it, and how is it doing?
    ``answered`` False: nothing listens there."""
    if ollama_port:
        outcome = probe_ollama(http, base, budget)
        if outcome.answered and outcome.health == UNHEALTHY and outcome.ollama is None:
            return ProbeOutcome(UNKNOWN, f"answers on the Ollama port, but not like Ollama ({outcome.reason})")
        return outcome
    outcome = probe_vllm(http, base, budget)
    if outcome.health == UNHEALTHY and outcome.reason and outcome.reason.startswith("/health answered HTTP 404"):
        nim = probe_nim(http, base, budget)
        if nim.health in (HEALTHY, STARTING):
            return nim
        return ProbeOutcome(UNKNOWN, "answers HTTP, but neither like vLLM (/health 404) nor like NIM "
                                     f"({nim.reason})")
    return outcome


__all__ = [
    "Budget", "CONNECT_TIMEOUT_S", "HEALTHY", "OllamaState", "PAUSED", "PROBES", "ProbeOutcome", "READ_TIMEOUT_S",
    "RESTARTING", "STARTING", "STOPPED", "UNHEALTHY", "UNKNOWN", "UNRESPONSIVE", "probe_nim", "probe_ollama",
    "probe_unmanaged", "probe_vllm",
]
