"""``status``: what is running and how it is doing, sampled once or every few seconds.

    report = collect_status(settings)                                   # every managed server, and local ones
    report = collect_status(settings, ["nemoclaw-vllm"])                # just these (unknown → NoSuchContainer)
    for report in watch_status(settings, interval_s=2, count=5): ...    # rates from counters between samples

One sample: the engine lists our containers (by label; names are checked first), then every server is asked in
parallel — a thread pool, one task per server: its health and metrics over HTTP (``probe.py``), its processes
(``docker top``) matched to NVML's per-process GPU memory (read once per sample, ``gpu_usage.py``), and the last
log line when it is not healthy. Every HTTP request is cut to what is left of the sample's budget
(:data:`DEFAULT_BUDGET_S`), and the sample answers when the budget is spent whatever is still pending: a server
that hangs is reported ``unresponsive``, never a hung command. Nothing a server answers raises.

Without names, the known local ports (``settings.vllm_port``, ``settings.ollama_port``) are asked too when no
managed container publishes them: a server found there is listed with ``managed: false`` (a server ``up`` adopted,
or one started by hand).

Collaborators are injected (``docker``, ``http``, ``gpu_reader``, ``clock``, ``wall``); what is not injected is
made and closed here: the engine and the HTTP client through ``runtimes/wiring.py`` (every request sets its own
timeouts, cut to the sample's budget), and an NVML session kept open across a watch.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel.clock import CancelToken, Clock, SystemClock
from nemoclaw_runtime.kernel.errors import InvalidInput, NemoclawError
from nemoclaw_runtime.kernel.secret import redact
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.containers import base_url, is_managed, no_such_container
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, DockerPort
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_HOST,
    LABEL_MANAGED,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_ROLE,
    LABEL_RUNTIME,
    LABEL_SERVED_MODEL,
    ROLE_SERVE,
    url_host,
)
from nemoclaw_runtime.runtimes.server.diagnose import display_line
from nemoclaw_runtime.runtimes.server.readiness import is_probe_access_line
from nemoclaw_runtime.runtimes.status.gpu_usage import (
    GpuReader,
    GpuUsage,
    NvmlProcessReader,
    RssReader,
    attribute,
    listener_pids,
    resident_bytes,
    unreadable,
)
from nemoclaw_runtime.runtimes.status.metrics import MetricsSample, engine_metrics
from nemoclaw_runtime.runtimes.status.probe import (
    CONNECT_TIMEOUT_S,
    PAUSED,
    PROBES,
    READ_TIMEOUT_S,
    RESTARTING,
    STOPPED,
    UNKNOWN,
    UNRESPONSIVE,
    Budget,
    ProbeOutcome,
    probe_unmanaged,
)
from nemoclaw_runtime.runtimes.status.values import ServerStatus, StatusReport

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu.processes import GpuProcesses

#: What one sample may take, engine calls included: 10 servers, some of them hung, answer within a second.
DEFAULT_BUDGET_S = 0.8
DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.2
LOG_TAIL_LINES = 40
LOG_LINE_CHARS = 200
_GRACE_S = 0.05
#: Our own status requests in a server's access log say nothing about how it is doing.
_STATUS_ACCESS_LINE = re.compile(r'"(?:GET|HEAD) /(?:metrics|v1/metrics|v1/health/live|api/ps)[^"]*"\s+\d{3}|'
                                 r'\| +\d{3} \|.*"/api/(?:version|ps|tags)"')
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


# --- what is asked ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    name: str
    key: str  # the rates' memory: container id, or local:PORT
    runtime: str | None
    info: ContainerInfo | None = None  # None: a local port, or a named container that vanished during a watch
    host: str = "127.0.0.1"
    port: int | None = None
    ollama_port: bool = False

    @property
    def managed(self) -> bool:
        return self.info is not None or not self.key.startswith("local:")

    @property
    def root(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"


def _published(info: ContainerInfo) -> tuple[str, int | None]:
    """Where the container's API is reached: our labels, else its first published port."""
    labels = info.labels
    port = labels.get(LABEL_PORT)
    if port and port.isdigit():
        return labels.get(LABEL_HOST) or "127.0.0.1", int(port)
    for bindings in info.ports.values():
        for ip, host_port in bindings:
            if host_port:
                return ip or "127.0.0.1", host_port
    return "127.0.0.1", None


def _host_ports(info: ContainerInfo) -> set[int]:
    ports = {p for bindings in info.ports.values() for _, p in bindings if p}
    label = info.labels.get(LABEL_PORT)
    if label and label.isdigit():
        ports.add(int(label))
    return ports


def _container_target(info: ContainerInfo) -> _Target:
    host, port = _published(info)
    return _Target(name=info.name.lstrip("/"), key=info.id, runtime=info.labels.get(LABEL_RUNTIME), info=info,
                   host=host, port=port)


# --- the collector ----------------------------------------------------------------------------------------------


class StatusCollector:
    """Samples servers; keeps each server's previous metrics sample, so rates come from two samples."""

    def __init__(self, settings: Settings, docker: DockerPort, http: httpx.Client, *,
                 gpu_reader: GpuReader | None = None, clock: Clock | None = None,
                 wall: Callable[[], float] = time.time, budget_s: float | None = None,
                 rss: RssReader = resident_bytes) -> None:
        budget_s = DEFAULT_BUDGET_S if budget_s is None else budget_s  # read at call time
        if budget_s <= 0:
            raise InvalidInput(f"Invalid status budget {budget_s}: must be more than 0 seconds")
        self.settings = settings
        self.docker = docker
        self.http = http
        self.gpu_reader = gpu_reader or unreadable("no GPU reader")
        self.clock: Clock = clock or SystemClock()
        self.wall = wall
        self.budget_s = budget_s
        self.rss = rss
        self.samples = 0
        self._previous: dict[str, MetricsSample] = {}

    # --- one sample ---------------------------------------------------------------------------------------------

    def collect(self, names: Iterable[str] = (), *, runtime: str | None = None, include_local: bool = True,
                strict: bool = True) -> StatusReport:
        """One sample. Unknown or foreign ``names`` raise :class:`NoSuchContainer` (with ``strict``; a watch
        reports a container that vanished after its first sample as ``stopped``)."""
        started = self.clock.monotonic()
        budget = Budget(self.clock, started + self.budget_s, connect_s=CONNECT_TIMEOUT_S, read_s=READ_TIMEOUT_S)
        targets = self._targets(list(dict.fromkeys(names)), runtime, include_local, strict)
        results = self._ask_all(targets, budget)
        servers: list[ServerStatus] = []
        gpu_reason: str | None = None
        unified = False
        for target in targets:
            result = results.get(target.key)
            if result is None:
                continue  # a local port where nothing listens
            status, sample, reading = result
            if reading is not None:
                gpu_reason, unified = reading.reason, reading.unified_memory
            if runtime is not None and not status.managed and status.runtime != runtime:
                continue
            servers.append(self._with_rates(status, target, sample))
        self.samples += 1
        return StatusReport(servers=tuple(servers), sampled_at=_iso(self.wall()),
                            elapsed_s=self.clock.monotonic() - started, sample=self.samples,
                            gpu_reason=gpu_reason if servers else None, unified_memory=unified)

    def _with_rates(self, status: ServerStatus, target: _Target, sample: MetricsSample | None) -> ServerStatus:
        if sample is None or not sample.values:
            return status
        previous = self._previous.get(target.key)
        self._previous[target.key] = sample
        return dataclasses.replace(status, metrics=engine_metrics(sample, previous))

    def _targets(self, names: list[str], runtime: str | None, include_local: bool, strict: bool) -> list[_Target]:
        if names:
            return self._named(names, runtime, strict)
        selector: dict[str, str | None] = {LABEL_MANAGED: "true"}
        every = sorted((c for c in self.docker.list_containers(selector, all=True) if is_managed(c)),
                       key=lambda c: c.name)
        # a deployment over several nodes is its server: the Ray containers and a weights copy serve no API
        servers = [c for c in every if c.labels.get(LABEL_ROLE, ROLE_SERVE) == ROLE_SERVE]
        targets = [_container_target(c) for c in servers if runtime is None or c.labels.get(LABEL_RUNTIME) == runtime]
        if include_local:
            taken = set().union(*(_host_ports(c) for c in every)) if every else set()
            targets += self._local_targets(runtime, taken)
        return targets

    def _named(self, names: list[str], runtime: str | None, strict: bool) -> list[_Target]:
        found: list[_Target] = []
        missing: list[str] = []
        foreign: list[str] = []
        for name in names:
            info = self.docker.inspect_container(name)
            if info is not None and info.name.lstrip("/") != name:
                info = None  # an id or an id prefix the engine resolved: status, like stop and logs, takes names
            if info is not None and not is_managed(info):
                foreign.append(name)
            elif info is None or (runtime and info.labels.get(LABEL_RUNTIME) != runtime):
                missing.append(name)
                if not strict:
                    found.append(_Target(name=name, key=f"gone:{name}", runtime=runtime))
            else:
                found.append(_container_target(info))
        if strict and (missing or foreign):
            raise no_such_container(missing, foreign, runtime, untouched=False)
        return found

    def _local_targets(self, runtime: str | None, taken: set[int]) -> list[_Target]:
        wanted: list[tuple[int, bool]] = []
        if runtime in (None, "vllm", "nim"):
            wanted.append((self.settings.vllm_port, False))
        if runtime in (None, "ollama") and self.settings.ollama_port != self.settings.vllm_port:
            wanted.append((self.settings.ollama_port, True))
        return [_Target(name=f"local:{port}", key=f"local:{port}", runtime=None, port=port, ollama_port=is_ollama)
                for port, is_ollama in wanted if port not in taken]

    # --- asking every server at once --------------------------------------------------------------------------------

    def _ask_all(self, targets: list[_Target], budget: Budget
                 ) -> dict[str, tuple[ServerStatus, MetricsSample | None, GpuProcesses | None] | None]:
        if not targets:
            return {}
        # A daemon thread per task, not an executor: Python joins an executor's threads at exit, so one engine call
        # stuck on docker-py's own timeout would hold a `status` that has already printed its answer.
        needs_gpu = any(t.info is None or t.info.state.running for t in targets)
        gpu = _Task(self._read_gpu, "nemoclaw-status-gpu") if needs_gpu else None
        tasks = {_Task(functools.partial(self._ask, t, budget, gpu), "nemoclaw-status"): t for t in targets}
        end = time.monotonic() + max(0.0, budget.remaining()) + _GRACE_S
        for task in tasks:
            task.wait(end - time.monotonic())
        results: dict[str, tuple[ServerStatus, MetricsSample | None, GpuProcesses | None] | None] = {}
        for task, target in tasks.items():
            if task.done() and task.exception() is None:
                results[target.key] = task.result()
            else:
                results[target.key] = (self._late(target, task), None, None)
        return results  # a straggler ends on its own timeouts, on a daemon thread that never holds the exit

    def _read_gpu(self) -> GpuProcesses:
        return self.gpu_reader()

    def _late(self, target: _Target, task: _Task) -> ServerStatus:
        if task.done():  # a bug of ours in the task: still an answer, never a traceback
            exc = task.exception()
            reason = f"status failed: {type(exc).__name__}: {exc}"
            return self._base(target, health=UNKNOWN, reason=reason)
        reason = f"no answer within {self.budget_s:g} s"
        return self._base(target, health=UNRESPONSIVE, reason=reason)

    def _base(self, target: _Target, *, health: str, reason: str | None) -> ServerStatus:
        """The fields known without asking the server."""
        port = str(target.port) if target.port else None
        common = ServerStatus(name=target.name, managed=target.managed, runtime=target.runtime, health=health,
                              health_reason=reason, base_url=base_url(target.runtime, target.host, port))
        info = target.info
        if info is None:
            return common
        state = info.state
        return dataclasses.replace(common, container_id=info.id, state=state.status,
                                   exit_code=None if state.running else state.exit_code,
                                   uptime_s=_uptime(state.started_at, self.wall()) if state.running else None,
                                   restart_count=state.restart_count, model=info.labels.get(LABEL_MODEL),
                                   served_model=info.labels.get(LABEL_SERVED_MODEL))

    # --- one server (runs in the pool) --------------------------------------------------------------------------

    def _ask(self, target: _Target, budget: Budget, gpu: _Task | None
             ) -> tuple[ServerStatus, MetricsSample | None, GpuProcesses | None] | None:
        info = target.info
        if info is None and target.key.startswith("gone:"):
            return self._base(target, health=STOPPED, reason="the container no longer exists"), None, None
        if info is not None and not info.state.running:
            return self._not_running(target, info, budget), None, None
        outcome = self._probe(target, budget)
        if info is None and not outcome.answered:
            return None  # nothing listens on this local port
        reading = self._gpu_reading(gpu, budget)
        status = self._base(target, health=outcome.health, reason=outcome.reason)
        served = outcome.served_id or status.served_model
        metrics_reason = outcome.metrics_reason
        if metrics_reason is None and outcome.metrics is None and (outcome.runtime or target.runtime) in ("vllm",
                                                                                                        "nim"):
            metrics_reason = f"not scraped: the server is {outcome.health}"
        status = dataclasses.replace(
            status, runtime=target.runtime or outcome.runtime, served_model=served,
            model=status.model or (served if info is None else None), context_window=outcome.context_window,
            metrics_reason=metrics_reason, ollama=outcome.ollama, notes=outcome.notes + self._notes(target),
            gpu=self._gpu(reading, target, budget), last_log_line=self._last_log_line(info, outcome.health, budget))
        return status, outcome.metrics, reading

    def _probe(self, target: _Target, budget: Budget) -> ProbeOutcome:
        try:
            if target.port is None:
                return ProbeOutcome(UNKNOWN, "the container publishes no port to ask")
            if target.info is None:
                return probe_unmanaged(self.http, target.root, budget, ollama_port=target.ollama_port)
            probe = PROBES.get(target.runtime or "")
            if probe is None:
                return ProbeOutcome(UNKNOWN, f"no health probe for runtime {target.runtime!r}")
            labels = target.info.labels
            return probe(self.http, target.root, budget,
                         served_hint=labels.get(LABEL_SERVED_MODEL) or labels.get(LABEL_MODEL))
        except Exception as exc:  # noqa: BLE001 - whatever a server does, status answers
            return ProbeOutcome(UNKNOWN, f"probe failed: {type(exc).__name__}: {exc}"[:300])

    @staticmethod
    def _notes(target: _Target) -> tuple[str, ...]:
        if target.info is None:
            return (f"not managed by nemoclaw-runtime: found answering on port {target.port}",)
        return ()

    def _not_running(self, target: _Target, info: ContainerInfo, budget: Budget) -> ServerStatus:
        state = info.state
        health = {"restarting": RESTARTING, "paused": PAUSED}.get(state.status, STOPPED)
        reason = f"container {state.status}"
        if state.status in ("exited", "dead") and state.exit_code is not None:
            reason += f" (exit code {state.exit_code})"
        if state.oom_killed:
            reason += ", killed for lack of memory (OOM)"
        if state.status == "restarting" or state.restart_count:
            reason += f"; {state.restart_count} restart(s)"
        return dataclasses.replace(self._base(target, health=health, reason=reason),
                                   last_log_line=self._last_log_line(info, health, budget),
                                   gpu=GpuUsage(memory_mib=0, reason="the container is not running"))

    def _gpu_reading(self, gpu: _Task | None, budget: Budget) -> GpuProcesses | None:
        if gpu is None:
            return None
        from nemoclaw_runtime.gpu.processes import GpuProcesses

        if not gpu.wait(max(0.0, budget.remaining())):
            return GpuProcesses(reason="NVML did not answer within the time budget")
        exc = gpu.exception()
        if exc is not None:  # a failed reading is a reason, not a failed status
            return GpuProcesses(reason=f"NVML reading failed: {type(exc).__name__}: {exc}")
        reading: GpuProcesses = gpu.result()
        return reading

    def _gpu(self, reading: GpuProcesses | None, target: _Target, budget: Budget) -> GpuUsage:
        if reading is None:
            return GpuUsage(reason="GPU processes not read")
        if reading.reason is not None:
            return GpuUsage(reason=reading.reason)
        pids: list[int] | None
        why: str | None
        try:
            if target.info is not None and budget.remaining() <= 0:  # the answer is due: no engine call now
                pids, why = None, "the container's processes were not asked for: the time budget was spent"
            elif target.info is not None:
                pids, why = self.docker.container_pids(target.info.id), None
            else:
                pids, why = listener_pids(target.port or 0)
        except NemoclawError as exc:
            pids, why = None, f"the container's processes are unknown ({exc.message})"
        except Exception as exc:  # noqa: BLE001 - psutil on an odd platform, say
            pids, why = None, f"the server's processes are unknown ({type(exc).__name__})"
        return attribute(reading, pids, why_no_pids=why, rss=self.rss)

    def _last_log_line(self, info: ContainerInfo | None, health: str, budget: Budget) -> str | None:
        """The last line worth reading of a container that is not healthy (our own probes' lines skipped); none
        once the sample's budget is spent (the answer is due: no engine call is started then)."""
        if info is None or health == "healthy" or budget.remaining() <= 0:
            return None
        try:
            lines = self.docker.container_logs(info.id, tail=LOG_TAIL_LINES)
        except Exception:  # noqa: BLE001 - no log line is better than no status
            return None
        for line in reversed(lines):
            if is_probe_access_line(line) or _STATUS_ACCESS_LINE.search(line):
                continue
            shown = display_line(line)
            if shown:
                return redact(shown)[:LOG_LINE_CHARS]
        return None


class _Task:
    """One call on its own daemon thread, waited on with a timeout; what it raised is kept, never lost."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self._call = call
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._call()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the task
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; whether the call has ended."""
        self._thread.join(max(0.0, timeout))
        return self.done()

    def exception(self) -> BaseException | None:
        return self._error if self.done() else None

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


def _uptime(started_at: str | None, now: float) -> float | None:
    started = _parse_docker_time(started_at)
    return max(0.0, now - started) if started is not None else None


def _parse_docker_time(text: str | None) -> float | None:
    """Docker's ``2026-01-01T00:00:00.123456789Z`` as epoch seconds; ``None`` for the zero time or junk."""
    match = _DOCKER_TIME.match(text or "")
    if not match or match[1].startswith("0001-"):
        return None
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    zone = match[3] if match[3] and match[3] != "Z" else "+00:00"
    try:
        return datetime.fromisoformat(f"{match[1]}.{fraction}{zone}").timestamp()
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- the library functions --------------------------------------------------------------------------------------


def _default_gpu_reader(settings: Settings, stack: ExitStack) -> GpuReader:
    if settings.gpu_snapshot is not None:
        return unreadable("a GPU snapshot is replayed (NEMOCLAW_GPU_SNAPSHOT): it holds no per-process memory")
    reader = NvmlProcessReader()
    stack.callback(reader.close)
    return reader


@contextmanager
def _collector(settings: Settings, *, docker: DockerPort | None, http: httpx.Client | None,
               gpu_reader: GpuReader | None, clock: Clock | None, wall: Callable[[], float] | None,
               budget_s: float | None) -> Iterator[StatusCollector]:
    with ExitStack() as stack:
        # What is not injected comes from wiring (the engine; a client: every request sets its own timeouts).
        port = stack.enter_context(wiring.docker_session(settings, docker))
        client = http if http is not None else stack.enter_context(wiring.local_http_client())
        reader = gpu_reader if gpu_reader is not None else _default_gpu_reader(settings, stack)
        yield StatusCollector(settings, port, client, gpu_reader=reader, clock=clock, wall=wall or time.time,
                              budget_s=budget_s)


def collect_status(settings: Settings, names: Iterable[str] = (), *, runtime: str | None = None,
                   include_local: bool = True, docker: DockerPort | None = None, http: httpx.Client | None = None,
                   gpu_reader: GpuReader | None = None, clock: Clock | None = None,
                   wall: Callable[[], float] | None = None, budget_s: float | None = None) -> StatusReport:
    """One sample of every managed server (of ``runtime``; or just ``names``) and of local servers on the known
    ports. Rates need two samples: see :func:`watch_status`. Unknown or foreign names → ``NoSuchContainer``."""
    with _collector(settings, docker=docker, http=http, gpu_reader=gpu_reader, clock=clock, wall=wall,
                    budget_s=budget_s) as collector:
        return collector.collect(names, runtime=runtime, include_local=include_local)


def watch_status(settings: Settings, names: Iterable[str] = (), *, interval_s: float = DEFAULT_INTERVAL_S,
                 count: int | None = None, cancel: CancelToken | None = None, runtime: str | None = None,
                 include_local: bool = True, docker: DockerPort | None = None, http: httpx.Client | None = None,
                 gpu_reader: GpuReader | None = None, clock: Clock | None = None,
                 wall: Callable[[], float] | None = None, budget_s: float | None = None
                 ) -> Generator[StatusReport, None, None]:
    """A sample every ``interval_s`` seconds (``count`` of them, or until ``cancel`` / Ctrl-C / the caller stops
    iterating); from the second one on, token rates come from the counters of consecutive samples. A bad interval
    or count raises at once; names are checked on the first sample only: a container removed later is reported
    ``stopped``. Collaborators made here are closed when the generator ends or is closed."""
    if not interval_s >= MIN_INTERVAL_S:
        raise InvalidInput(f"Invalid watch interval {interval_s}: must be at least {MIN_INTERVAL_S} seconds",
                           remedy="pass --watch 2, for example")
    if count is not None and count < 1:
        raise InvalidInput(f"Invalid sample count {count}: must be 1 or more")
    return _watch(settings, list(names), interval_s=interval_s, count=count, token=cancel or CancelToken(),
                  runtime=runtime, include_local=include_local, docker=docker, http=http, gpu_reader=gpu_reader,
                  clock=clock, wall=wall, budget_s=min(DEFAULT_BUDGET_S if budget_s is None else budget_s, interval_s))


def _watch(settings: Settings, wanted: list[str], *, interval_s: float, count: int | None, token: CancelToken,
           runtime: str | None, include_local: bool, docker: DockerPort | None, http: httpx.Client | None,
           gpu_reader: GpuReader | None, clock: Clock | None, wall: Callable[[], float] | None,
           budget_s: float | None) -> Generator[StatusReport, None, None]:
    with _collector(settings, docker=docker, http=http, gpu_reader=gpu_reader, clock=clock, wall=wall,
                    budget_s=budget_s) as collector:
        started = collector.clock.monotonic()
        for index in itertools.count():
            if count is not None and index >= count:
                return
            token.raise_if_cancelled()
            if index:
                due = started + index * interval_s
                token.wait(max(0.0, due - collector.clock.monotonic()), collector.clock)
            yield collector.collect(wanted, runtime=runtime, include_local=include_local, strict=index == 0)


__all__ = ["DEFAULT_BUDGET_S", "DEFAULT_INTERVAL_S", "MIN_INTERVAL_S", "StatusCollector", "collect_status",
           "watch_status"]
