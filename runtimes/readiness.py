"""Readiness: one state machine, driven by one loop, generic over runtimes.

    starting ──► port-open ──► http-ready ──► ready
    (container    (a TCP          (the runtime's      (re-checked: the container
     not running   connection      HTTP probe          is still running; the served
     or port       is accepted)    passes)             id and max_model_len are read)
     closed)

Each tick the loop asks the engine for the container's state *first*: a container that exited, died or is
restart-looping ends the wait at once with :class:`ContainerExited` (log tail + classified cause) instead of
waiting out a 30-minute timeout. Then one HTTP request through the runtime's probe (a strategy object:
:class:`VllmModelsProbe`, :class:`NimReadyProbe`, :class:`OllamaTagsProbe`) both tests the port and the API: a
refused connection means the port is closed, a read timeout means it accepted but does not answer yet, any HTTP
answer means port-open. Polls are fast (``poll_s`` ≈ 0.1 s, connect 0.5 s / read 2 s), so ``wait_ready`` returns
within a poll of the server first answering. Logs are read only with a tail, only at heartbeat time and on failure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from nemoclaw_runtime.clock import CancelToken, Clock
from nemoclaw_runtime.errors import ContainerExited, NoSuchContainer, ReadinessTimeout, ValidationFailed
from nemoclaw_runtime.events import EventSink, Heartbeat, Info, Warning
from nemoclaw_runtime.runtimes.diagnose import TAIL_LINES, Diagnosis, classify, display_line, redact, redact_lines
from nemoclaw_runtime.runtimes.engine import ContainerManager, ContainerState

#: Per-request bounds: a closed port fails in well under a poll; a server that accepted but is still loading
#: holds one request at most this long (and answers it the moment it is up).
PROBE_TIMEOUT = httpx.Timeout(connect=0.5, read=2.0, write=2.0, pool=0.5)
MAX_MODEL_LEN_CEILING = 4_194_304
SAFE_MODEL_ID = re.compile(r"^[A-Za-z0-9._:/-]+$")
_POSITIVE_INT = re.compile(r"^[1-9][0-9]*$")
_RESTART_LOOP_RESTARTS = 2
_HEARTBEAT_LOG_LINES = 20
#: Once the server answers "not ready yet" over HTTP (NIM's 503 during its download), each probe becomes an access
#: line in its own log: poll it at this pace, not 10 times a second, so its log stays readable.
ANSWERED_POLL_S = 1.0
#: Access-log lines of our own probes (uvicorn style); they say nothing about why a server failed.
_PROBE_ACCESS_LINE = re.compile(
    r'"(?:GET|HEAD) /(?:v1/models|v1/health/ready|v1/health/live|health|ping|api/tags|api/version)[^"]*"\s+\d{3}')

# Transport errors that mean "nothing answers on the port yet" (including docker-proxy accepting on the host
# and dropping the connection because nothing listens inside the container) ...
_PORT_CLOSED_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
)
# ... and those that mean "the port accepted the connection but the server does not answer yet".
_PORT_OPEN_ERRORS: tuple[type[Exception], ...] = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)

STARTING, PORT_OPEN, HTTP_READY, READY = "starting", "port-open", "http-ready", "ready"


# --- probe results and probes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The probe passed. ``entry`` is the ``data[]`` element of the served model, where the API has one."""

    payload: Any
    served_id: str | None = None
    entry: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class NotYet:
    reason: str


@dataclass(frozen=True)
class Failed:
    """The server answered in a way that will not get better by waiting."""

    reason: str


ProbeResult = Ready | NotYet | Failed


class HttpProbe(Protocol):
    """A runtime's readiness check: one or two HTTP requests against ``base_url``.

    Transport errors (connection refused, read timeout) propagate: the loop reads them as port states.
    """

    label: str  # "vLLM", "NIM", "Ollama": used in messages
    timeout_variable: str | None  # the setting that raises the readiness timeout, named in the remedy

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult: ...


def _get_json(http: httpx.Client, url: str) -> tuple[int, Any]:
    """GET ``url``; (status, decoded JSON or None when the body is not JSON)."""
    response = http.get(url, timeout=PROBE_TIMEOUT)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _models_data(body: Any) -> list[Mapping[str, Any]] | None:
    """The ``data`` array of an OpenAI ``/v1/models`` answer (dict entries only), or None when absent."""
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
        return None
    return [entry for entry in body["data"] if isinstance(entry, Mapping)]


def _listed_ids(data: Sequence[Mapping[str, Any]]) -> list[str]:
    return [entry["id"] for entry in data if isinstance(entry.get("id"), str)]


def _describe_ids(ids: Sequence[str]) -> str:
    safe = [i for i in ids if SAFE_MODEL_ID.match(i)]
    return ", ".join(safe[:5]) or "nothing"


@dataclass(frozen=True)
class VllmModelsProbe:
    """vLLM: ``GET /v1/models`` answers JSON whose ``data[].id`` lists the served model.

    With ``model_id=None`` any listed model counts (adopting an existing server); its first entry is served.
    """

    model_id: str | None
    label: str = "vLLM"
    timeout_variable: str | None = "NEMOCLAW_VLLM_READY_TIMEOUT"

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult:
        status, body = _get_json(http, f"{base_url}/v1/models")
        if status != 200:
            return NotYet(f"/v1/models answered HTTP {status}")
        data = _models_data(body)
        if data is None:
            return NotYet("/v1/models did not answer JSON with a data array")
        ids = _listed_ids(data)
        if self.model_id is None:
            if not ids:
                return NotYet("/v1/models lists no model yet")
            return Ready(body, ids[0], data[0])
        for entry in data:
            if entry.get("id") == self.model_id:
                return Ready(body, self.model_id, entry)
        return NotYet(f"model {self.model_id} not listed yet (serving: {_describe_ids(ids)})")


@dataclass(frozen=True)
class NimReadyProbe:
    """NIM: ``GET /v1/health/ready`` is 200, then ``/v1/models`` lists a model.

    A safe served id different from ``model_id`` is adopted (NIMs serve under their own names).
    """

    model_id: str | None = None
    label: str = "NIM"
    timeout_variable: str | None = "NEMOCLAW_NIM_READY_TIMEOUT"

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult:
        health = http.get(f"{base_url}/v1/health/ready", timeout=PROBE_TIMEOUT)
        if health.status_code != 200:
            return NotYet(f"/v1/health/ready answered HTTP {health.status_code}")
        status, body = _get_json(http, f"{base_url}/v1/models")
        data = _models_data(body) if status == 200 else None
        if not data:
            return NotYet("/v1/models lists no model yet")
        for entry in data:
            if self.model_id is not None and entry.get("id") == self.model_id:
                return Ready(body, self.model_id, entry)
        first = data[0].get("id")
        if isinstance(first, str) and SAFE_MODEL_ID.match(first):
            return Ready(body, first, data[0])
        return Ready(body, self.model_id, data[0])  # an unsafe served id is never adopted or echoed


@dataclass(frozen=True)
class OllamaTagsProbe:
    """Ollama: ``GET /api/tags`` answers JSON with an array ``models`` (an empty one counts)."""

    label: str = "Ollama"
    timeout_variable: str | None = None

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult:
        status, body = _get_json(http, f"{base_url}/api/tags")
        if status != 200:
            return NotYet(f"/api/tags answered HTTP {status}")
        if not isinstance(body, Mapping) or not isinstance(body.get("models"), list):
            return NotYet("/api/tags did not answer JSON with a models array")
        return Ready(body)


# --- the target ---------------------------------------------------------------------------------------------------


class ReadinessTarget(Protocol):
    """What the loop watches: a container (state, log tail) and the host port its API is published on."""

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def state(self) -> ContainerState: ...

    def log_tail(self, n: int) -> list[str]: ...


@dataclass(frozen=True)
class ManagedContainerTarget:
    """A managed container as a :class:`ReadinessTarget`, through the :class:`ContainerManager`."""

    manager: ContainerManager
    name: str
    port: int
    host: str = "127.0.0.1"

    def state(self) -> ContainerState:
        return self.manager.state(self.name)

    def log_tail(self, n: int) -> list[str]:
        return self.manager.logs(self.name, tail=n)


# --- the result ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyResult:
    payload: Any
    elapsed_s: float
    served_id: str | None
    max_model_len: int | None
    url: str
    transitions: tuple[tuple[str, float], ...] = ()  # (state, elapsed_s) each time the state changed

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "served_id": self.served_id, "max_model_len": self.max_model_len,
                "elapsed_s": round(self.elapsed_s, 3),
                "transitions": [{"state": s, "elapsed_s": round(t, 3)} for s, t in self.transitions]}


def parse_max_model_len(raw: Any) -> tuple[int | None, str | None]:
    """``max_model_len`` as NemoClaw accepts it: (value, None), (None, None) when absent, or (None, warning)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and _POSITIVE_INT.match(raw.strip()):
        value = int(raw.strip())
    if value is None or value <= 0:
        return None, f"ignoring non-positive or malformed max_model_len {str(raw)[:40]!r} reported by the server"
    if value > MAX_MODEL_LEN_CEILING:
        return None, (f"ignoring max_model_len {value} reported by the server: above the auto-detect ceiling "
                      f"{MAX_MODEL_LEN_CEILING}")
    return value, None


# --- the loop -----------------------------------------------------------------------------------------------------


@dataclass
class _Watch:
    """Mutable bookkeeping of one wait (the loop's only state besides the clock)."""

    target: ReadinessTarget
    probe: HttpProbe
    clock: Clock
    started: float
    state: str = STARTING
    last_reason: str = "container not running yet"
    baseline_restarts: int | None = None
    restarting_episodes: int = 0
    was_restarting: bool = False
    diagnosed_restarts: int = 0
    answered: bool = False  # the server answered HTTP, just not "ready" yet
    transitions: list[tuple[str, float]] = field(default_factory=list)

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    def enter(self, state: str, events: EventSink) -> None:
        if state != self.state or not self.transitions:
            self.transitions.append((state, self.elapsed()))
            if state != STARTING:
                events(Info(f"{self.target.name}: {state} after {self.elapsed():.1f}s"))
        self.state = state


def wait_ready(
    target: ReadinessTarget,
    probe: HttpProbe,
    *,
    timeout_s: float,
    clock: Clock,
    cancel: CancelToken,
    events: EventSink,
    http: httpx.Client,
    heartbeat_s: float = 30.0,
    poll_s: float = 0.1,
) -> ReadyResult:
    """Wait until ``target`` serves and ``probe`` passes; fail at once when the container exits or loops.

    Raises:
        ContainerExited: the container exited, died, vanished or is restart-looping (log tail + cause).
        ReadinessTimeout: ``timeout_s`` passed first (log tail + cause).
        Cancelled: ``cancel`` was set.
    """
    watch = _Watch(target, probe, clock, clock.monotonic())
    watch.enter(STARTING, events)
    base_url = f"http://{target.host}:{target.port}"
    next_heartbeat = heartbeat_s
    max_ticks = int(timeout_s / max(poll_s, 0.01)) + 2  # bounded even with a clock that never moves
    for _ in range(max_ticks):
        cancel.raise_if_cancelled()
        tick_start = clock.monotonic()
        container = _check_container(watch)
        if container.running:
            result = _probe_once(watch, http, base_url, events)
            if result is not None:
                return _finish(watch, result, base_url, events)
        else:
            watch.enter(STARTING, events)
            watch.last_reason = f"container {container.status}"
        elapsed = watch.elapsed()
        if elapsed >= timeout_s:
            break
        if elapsed >= next_heartbeat:
            _heartbeat(watch, events)
            next_heartbeat = (math.floor(elapsed / heartbeat_s) + 1) * heartbeat_s
        spent = clock.monotonic() - tick_start
        interval = max(poll_s, ANSWERED_POLL_S) if watch.answered else poll_s
        cancel.wait(max(0.0, min(interval - spent, timeout_s - elapsed)), clock)
    raise _timeout(watch, timeout_s)


def _check_container(watch: _Watch) -> ContainerState:
    """The container's state; raises ContainerExited when it is gone, exited, dead or restart-looping."""
    try:
        state = watch.target.state()
    except NoSuchContainer as exc:
        raise _exited(watch, ContainerState(status="removed"), "vanished (removed while starting)") from exc
    if watch.baseline_restarts is None:
        watch.baseline_restarts = state.restart_count
    if state.status in ("exited", "dead", "removing"):
        raise _exited(watch, state, "exited before it was ready")
    restarting = state.status == "restarting"
    if restarting and not watch.was_restarting:
        watch.restarting_episodes += 1
    watch.was_restarting = restarting
    restarts = max(state.restart_count - watch.baseline_restarts, watch.restarting_episodes)
    if restarts >= _RESTART_LOOP_RESTARTS:
        raise _exited(watch, state, f"is restart-looping ({restarts} restarts while waiting)")
    if restarts > watch.diagnosed_restarts:
        # One crash is allowed by the restart policy, but a known fatal cause will not go away on restart:
        # read the tail once per crash and stop right there when it names one.
        watch.diagnosed_restarts = restarts
        tail = _safe_tail(watch.target)
        if classify(tail, state=state).cause != "unknown":
            raise _exited(watch, state, "crashed and is restarting", tail=tail)
    return state


def _probe_once(watch: _Watch, http: httpx.Client, base_url: str, events: EventSink) -> Ready | None:
    """One probe; updates the state from what answered. Returns the Ready result, or None to keep waiting."""
    try:
        outcome = watch.probe.check(http, base_url)
    except _PORT_CLOSED_ERRORS as exc:
        watch.answered = False
        watch.enter(STARTING, events)
        watch.last_reason = f"port {watch.target.port} not open yet ({type(exc).__name__})"
        return None
    except _PORT_OPEN_ERRORS:
        watch.answered = False
        watch.enter(PORT_OPEN, events)
        watch.last_reason = f"port {watch.target.port} open, API not answering yet"
        return None
    if isinstance(outcome, Ready):
        watch.enter(HTTP_READY, events)
        return outcome
    watch.enter(PORT_OPEN, events)
    watch.answered = True
    watch.last_reason = outcome.reason
    if isinstance(outcome, Failed):
        raise _exited(watch, _safe_state(watch.target), f"answered but cannot become ready: {outcome.reason}",
                      error=ValidationFailed)
    return None


def _finish(watch: _Watch, ready: Ready, base_url: str, events: EventSink) -> ReadyResult:
    """http-ready → ready: the container must still be up (a server can answer once and then die)."""
    _check_container(watch)
    max_model_len, warning = parse_max_model_len((ready.entry or {}).get("max_model_len"))
    if warning:
        events(Warning(warning))
    watch.enter(READY, events)
    return ReadyResult(ready.payload, watch.elapsed(), ready.served_id, max_model_len, base_url,
                       tuple(watch.transitions))


def _last_log_line(target: ReadinessTarget) -> str | None:
    try:
        lines = target.log_tail(_HEARTBEAT_LOG_LINES)
    except NoSuchContainer:
        return None
    for line in reversed(lines):
        if is_probe_access_line(line):
            continue
        shown = display_line(line)
        if shown:
            return redact(shown)[:200]
    return None


def _heartbeat(watch: _Watch, events: EventSink) -> None:
    events(Heartbeat(phase=f"waiting for {watch.target.name}", elapsed_s=round(watch.elapsed(), 1),
                     state=watch.state, last_log_line=_last_log_line(watch.target)))


def is_probe_access_line(line: str) -> bool:
    return _PROBE_ACCESS_LINE.search(line) is not None


def _safe_state(target: ReadinessTarget) -> ContainerState:
    try:
        return target.state()
    except NoSuchContainer:
        return ContainerState(status="removed")


def _safe_tail(target: ReadinessTarget) -> list[str]:
    """The last TAIL_LINES lines that matter: our own probes' access lines are dropped, so a server that logged
    every probe still shows why it failed."""
    try:
        lines = target.log_tail(TAIL_LINES * 4)
    except NoSuchContainer:
        return []
    return [line for line in lines if not is_probe_access_line(line)][-TAIL_LINES:]


def _failure_facts(watch: _Watch, state: ContainerState, tail: Sequence[str]) -> tuple[Diagnosis, dict[str, Any]]:
    diagnosis = classify(tail, state=state)
    details = {"container": watch.target.name, "status": state.status, "exit_code": state.exit_code,
               "restart_count": state.restart_count, "oom_killed": state.oom_killed,
               "state": watch.state, "elapsed_s": round(watch.elapsed(), 1), "evidence": diagnosis.evidence,
               "summary": diagnosis.summary}
    return diagnosis, details


def _exited(watch: _Watch, state: ContainerState, what: str, *, tail: Sequence[str] | None = None,
            error: type[ContainerExited | ValidationFailed] = ContainerExited) -> ContainerExited | ValidationFailed:
    tail = _safe_tail(watch.target) if tail is None else tail
    diagnosis, details = _failure_facts(watch, state, tail)
    code = f" (exit code {state.exit_code})" if state.exit_code not in (None, 0) or state.status == "exited" else ""
    because = f": {diagnosis.summary}" if diagnosis.cause != "unknown" else ""
    return error(f"{watch.probe.label} container {watch.target.name} {what}{code}{because}",
                           remedy=diagnosis.remedy, cause=diagnosis.cause, log_tail=redact_lines(tail),
                           details=details)


def _timeout(watch: _Watch, timeout_s: float) -> ReadinessTimeout:
    tail = _safe_tail(watch.target)
    diagnosis, details = _failure_facts(watch, _safe_state(watch.target), tail)
    if diagnosis.cause != "unknown":
        remedy = diagnosis.remedy
    else:
        raise_it = f"raise {watch.probe.timeout_variable} (seconds) if the model is " \
            "still loading, or " if watch.probe.timeout_variable else ""
        remedy = f"{raise_it}read `docker logs {watch.target.name}` for what it is doing"
    details["timeout_s"] = timeout_s
    details["last_probe"] = watch.last_reason
    return ReadinessTimeout(
        f"{watch.probe.label} container {watch.target.name} was not ready within {timeout_s:g}s "
        f"(state: {watch.state}; {watch.last_reason})",
        remedy=remedy, cause=diagnosis.cause, log_tail=redact_lines(tail), details=details,
    )


# --- adopting an already-running server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingServer:
    """Something answers HTTP on the port. ``kind`` is ``vllm`` (``/v1/models`` JSON with a ``data`` array) or
    ``foreign`` (anything else: another server holds the port).

    ``model_ids`` lists only ids safe to echo and adopt (``^[A-Za-z0-9._:/-]+$``); ``unsafe_ids`` counts the rest.
    ``max_model_len`` maps each listed id to its validated context length (None when absent or malformed).
    """

    port: int
    kind: str
    status_code: int
    model_ids: tuple[str, ...] = ()
    max_model_len: Mapping[str, int | None] = field(default_factory=dict)
    unsafe_ids: int = 0

    @property
    def is_vllm(self) -> bool:
        return self.kind == "vllm"

    @property
    def foreign(self) -> bool:
        return self.kind == "foreign"

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "kind": self.kind, "status_code": self.status_code,
                "model_ids": list(self.model_ids), "max_model_len": dict(self.max_model_len),
                "unsafe_ids": self.unsafe_ids}


def probe_existing_vllm(http: httpx.Client, port: int, *, host: str = "127.0.0.1") -> ExistingServer | None:
    """Does something already answer ``/v1/models`` on ``host:port``? None when nothing answers at all."""
    try:
        status, body = _get_json(http, f"http://{host}:{port}/v1/models")
    except (*_PORT_CLOSED_ERRORS, *_PORT_OPEN_ERRORS):
        return None
    data = _models_data(body) if status == 200 else None
    if data is None:
        return ExistingServer(port=port, kind="foreign", status_code=status)
    ids: list[str] = []
    lengths: dict[str, int | None] = {}
    unsafe = 0
    for entry in data:
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not SAFE_MODEL_ID.match(model_id):
            unsafe += 1
            continue
        ids.append(model_id)
        lengths[model_id] = parse_max_model_len(entry.get("max_model_len"))[0]
    return ExistingServer(port=port, kind="vllm", status_code=status, model_ids=tuple(ids), max_model_len=lengths,
                          unsafe_ids=unsafe)
