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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import ContainerExited, NoSuchContainer, ReadinessTimeout, ValidationFailed
from nemoclaw_runtime.kernel.events import EventSink, Heartbeat, Info, Warning
from nemoclaw_runtime.kernel.secret import redact
from nemoclaw_runtime.runtimes.docker.port import ContainerManager, ContainerState
from nemoclaw_runtime.runtimes.server.diagnose import TAIL_LINES, Diagnosis, classify, display_line, redact_lines
from nemoclaw_runtime.runtimes.server.probes import (
    PORT_CLOSED_ERRORS,
    PORT_OPEN_ERRORS,
    Failed,
    HttpProbe,
    Ready,
    parse_max_model_len,
)

__all__ = ["ManagedContainerTarget", "ReadyResult", "is_probe_access_line", "wait_ready"]

#: NemoClaw's limit: a container that restarts this many times before it is ready ends the wait at once.
_RESTART_LOOP_RESTARTS = 3
_HEARTBEAT_LOG_LINES = 20
#: Once the server answers "not ready yet" over HTTP (NIM's 503 during its download), each probe becomes an access
#: line in its own log: poll it at this pace, not 10 times a second, so its log stays readable.
ANSWERED_POLL_S = 1.0
#: Access-log lines of our own probes (uvicorn style); they say nothing about why a server failed.
_PROBE_ACCESS_LINE = re.compile(
    r'"(?:GET|HEAD) /(?:v1/models|v1/health/ready|v1/health/live|health|ping|api/tags|api/version)[^"]*"\s+\d{3}')

STARTING, PORT_OPEN, HTTP_READY, READY = "starting", "port-open", "http-ready", "ready"


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
        # Fewer crashes are allowed by the restart policy, but a known fatal cause will not go away on restart:
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
    except PORT_CLOSED_ERRORS as exc:
        watch.answered = False
        watch.enter(STARTING, events)
        watch.last_reason = f"port {watch.target.port} not open yet ({type(exc).__name__})"
        return None
    except PORT_OPEN_ERRORS:
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
