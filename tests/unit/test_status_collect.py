"""``collect_status`` / ``watch_status`` over FakeDocker and real local servers: every field, the one-second answer
with hung servers, unknown names, servers that are not ours, GPU memory attribution and rates across a watch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from nemoclaw_runtime.gpu.processes import GpuProcesses, read_gpu_processes
from nemoclaw_runtime.kernel.errors import InvalidInput, NoSuchContainer
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_MODEL,
    LABEL_SERVED_MODEL,
    ContainerSpec,
    GpuRequest,
    PortBinding,
)
from nemoclaw_runtime.runtimes.status import probe as probe_module
from nemoclaw_runtime.runtimes.status.collect import DEFAULT_BUDGET_S, collect_status, watch_status
from nemoclaw_runtime.runtimes.status.gpu_usage import unreadable
from tests.fake_servers.fake_status import FakeStatusServer, HungServer
from tests.fakes.clock import FakeClock
from tests.fakes.fake_docker import FakeDocker
from tests.fakes.fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeGpu, FakeNvml
from tests.helpers.docker_env import free_port

IMAGE = "registry.example/fake/server:1"
#: 2026-01-01T00:10:00Z: FakeDocker's timestamps are minutes into 2026-01-01.
WALL = datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def fake() -> FakeDocker:
    docker = FakeDocker()
    docker.add_image(IMAGE, digest="sha256:" + "ab" * 32)
    return docker


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


@pytest.fixture
def settings() -> Settings:
    # The known local ports point at nothing, so a developer's own server on 8000 never shows up here.
    return Settings(vllm_port=free_port(), ollama_port=free_port())


def run_managed(fake: FakeDocker, name: str, port: int, *, runtime: str = "vllm", model: str = "acme/tiny",
                pids: tuple[int, ...] = ()) -> str:
    spec = ContainerSpec(name=name, runtime=runtime, image=IMAGE, command=("serve",), gpus=GpuRequest("none"),
                         restart_policy=None, labels=((LABEL_MODEL, model), (LABEL_SERVED_MODEL, model)),
                         ports=(PortBinding(8000, port),))
    container_id = DockerContainerManager(fake, Settings()).ensure_running(spec).container.id
    fake.containers[container_id].pids = list(pids)
    return container_id


def no_gpu() -> GpuProcesses:
    return read_gpu_processes(FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))


def test_every_field_of_a_healthy_vllm(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    nvml = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", processes=[(101, 30000), (102, 512), (999, 7)])])
    with FakeStatusServer("vllm", served="acme/tiny", max_model_len=32768) as server:
        container_id = run_managed(fake, "nrt-vllm", server.port, pids=(100, 101, 102))
        report = collect_status(settings, docker=fake, http=http, wall=lambda: WALL,
                                gpu_reader=lambda: read_gpu_processes(nvml))
    [vllm] = report.servers
    assert (vllm.name, vllm.managed, vllm.runtime, vllm.container_id) == ("nrt-vllm", True, "vllm", container_id)
    assert (vllm.state, vllm.restart_count, vllm.health, vllm.health_reason) == ("running", 0, "healthy", None)
    assert vllm.uptime_s is not None and 0 < vllm.uptime_s < 600
    assert (vllm.model, vllm.served_model, vllm.context_window) == ("acme/tiny", "acme/tiny", 32768)
    assert vllm.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert (vllm.gpu.gpus, vllm.gpu.memory_mib, vllm.gpu.source, vllm.gpu.processes) == ((0,), 30512, "nvml", 2)
    assert vllm.metrics is not None and vllm.metrics.requests_running == 2 and vllm.metrics.kv_cache_usage_pct == 25
    assert vllm.last_log_line is None
    doc = report.to_dict()
    assert doc["schema"] == 1 and doc["sample"] == 1 and doc["gpu"] == {"reason": None, "unified_memory": False}
    assert doc["servers"][0]["gpu"]["memory_mib"] == 30512 and doc["servers"][0]["metrics"]["requests_waiting"] == 1


def test_ten_servers_answer_within_a_second_when_some_hang(fake: FakeDocker, http: httpx.Client,
                                                           settings: Settings) -> None:
    healthy = [FakeStatusServer("vllm") for _ in range(6)]
    hung = [HungServer() for _ in range(4)]
    try:
        for i, server in enumerate([*healthy, *hung]):
            run_managed(fake, f"nrt-{i:02d}", server.port)
        started = time.monotonic()
        report = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu)
        took = time.monotonic() - started
    finally:
        for s in [*healthy, *hung]:
            s.close()
    # Bounded by the budget, not by the hung servers (the ≤ 1 s figure is measured by bench/bench_status.py).
    assert took <= DEFAULT_BUDGET_S + 2.0, f"status took {took:.2f}s"
    health = {s.name: s.health for s in report.servers}
    assert [health[f"nrt-{i:02d}"] for i in range(10)] == ["healthy"] * 6 + ["unresponsive"] * 4
    assert all("no answer" in (s.health_reason or "") for s in report.servers if s.health == "unresponsive")


def test_unknown_and_foreign_names_are_exit_6_and_nothing_is_asked(fake: FakeDocker, http: httpx.Client,
                                                                  settings: Settings) -> None:
    fake.add_foreign_container("theirs")
    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-ours", server.port)
        with pytest.raises(NoSuchContainer) as raised:
            collect_status(settings, ["nrt-ours", "nope", "theirs"], docker=fake, http=http, gpu_reader=no_gpu)
        assert server.requests == []
    assert raised.value.exit_code == 6
    assert "nope" in raised.value.message and "theirs was not created by nemoclaw-runtime" in raised.value.message


def test_names_and_runtime_select(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    with FakeStatusServer("vllm") as vllm, FakeStatusServer("ollama") as ollama:
        run_managed(fake, "nrt-a", vllm.port)
        run_managed(fake, "nrt-b", ollama.port, runtime="ollama", model="qwen3:8b")
        named = collect_status(settings, ["nrt-b"], docker=fake, http=http, gpu_reader=no_gpu)
        by_runtime = collect_status(settings, runtime="vllm", docker=fake, http=http, gpu_reader=no_gpu)
        with pytest.raises(NoSuchContainer):
            collect_status(settings, ["nrt-b"], runtime="vllm", docker=fake, http=http, gpu_reader=no_gpu)
    assert [s.name for s in named.servers] == ["nrt-b"] and named.servers[0].runtime == "ollama"
    assert named.servers[0].ollama is not None and named.servers[0].ollama.version == "0.12.6"
    assert [s.name for s in by_runtime.servers] == ["nrt-a"]


def test_a_stopped_container_says_why_with_its_last_log_line(fake: FakeDocker, http: httpx.Client,
                                                             settings: Settings) -> None:
    container_id = run_managed(fake, "nrt-dead", free_port())
    fake.emit_logs(container_id, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 448.00 MiB",
                   'INFO:     172.17.0.1:40000 - "GET /health HTTP/1.1" 200 OK')
    fake.crash(container_id, exit_code=1)
    [dead] = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu).servers
    assert (dead.state, dead.exit_code, dead.health) == ("exited", 1, "stopped")
    assert dead.health_reason == "container exited (exit code 1)" and dead.uptime_s is None
    assert dead.last_log_line is not None and dead.last_log_line.startswith("torch.OutOfMemoryError")
    assert dead.gpu.memory_mib == 0


def test_unhealthy_server_shows_its_last_real_log_line_redacted(fake: FakeDocker, http: httpx.Client,
                                                                 settings: Settings) -> None:
    with FakeStatusServer("vllm", health=503) as server:
        container_id = run_managed(fake, "nrt-503", server.port)
        fake.emit_logs(container_id, "ERROR engine died; token hf_abcdefghijklmnopqrstuvwxyz0123456789",
                       'INFO:     172.17.0.1:40000 - "GET /metrics HTTP/1.1" 200 OK',
                       'INFO:     172.17.0.1:40000 - "GET /health HTTP/1.1" 503 Service Unavailable')
        [sick] = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu).servers
    assert sick.health == "unhealthy" and sick.health_reason == "engine dead: /health answered 503"
    assert sick.last_log_line is not None and sick.last_log_line.startswith("ERROR engine died")
    assert "hf_abcdef" not in sick.last_log_line


def test_restarting_container(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    container_id = run_managed(fake, "nrt-loop", free_port())
    fake.containers[container_id].restart_policy = "unless-stopped"
    fake.crash(container_id)
    [loop] = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu).servers
    assert loop.health == "restarting" and loop.restart_count == 1 and "1 restart" in (loop.health_reason or "")


def test_a_local_server_that_is_not_ours(fake: FakeDocker, http: httpx.Client) -> None:
    with FakeStatusServer("vllm", served="someone/else") as server:
        settings = Settings(vllm_port=server.port, ollama_port=free_port())
        report = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu)
        run_managed(fake, "nrt-holds-it", server.port)  # now one of ours publishes that port: listed once
        again = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu)
    [local] = report.servers
    assert (local.name, local.managed, local.runtime, local.health) == (f"local:{server.port}", False, "vllm",
                                                                         "healthy")
    assert local.served_model == "someone/else" and local.container_id is None
    assert local.base_url == f"http://127.0.0.1:{server.port}/v1" and "not managed" in local.notes[-1]
    assert [(s.name, s.managed) for s in again.servers] == [("nrt-holds-it", True)]


def test_local_discovery_is_off_with_names_and_follows_runtime(fake: FakeDocker, http: httpx.Client) -> None:
    with FakeStatusServer("ollama") as server:
        settings = Settings(vllm_port=free_port(), ollama_port=server.port)
        run_managed(fake, "nrt-one", free_port())
        named = collect_status(settings, ["nrt-one"], docker=fake, http=http, gpu_reader=no_gpu)
        vllm_only = collect_status(settings, runtime="vllm", docker=fake, http=http, gpu_reader=no_gpu)
        ollama_only = collect_status(settings, runtime="ollama", docker=fake, http=http, gpu_reader=no_gpu)
        served = server.requests
    assert [s.name for s in named.servers] == ["nrt-one"]
    assert [s.name for s in vllm_only.servers] == ["nrt-one"]
    assert [(s.name, s.runtime) for s in ollama_only.servers] == [(f"local:{server.port}", "ollama")]
    assert served.count("/api/version") == 1


def test_a_probe_that_breaks_is_an_answer_not_a_traceback(fake: FakeDocker, http: httpx.Client,
                                                          settings: Settings, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setitem(probe_module.PROBES, "vllm", broken)
    run_managed(fake, "nrt-bug", free_port())
    [server] = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu).servers
    assert server.health == "unknown" and "KeyError" in (server.health_reason or "")


def test_a_runtime_without_a_probe(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    run_managed(fake, "nrt-other", free_port(), runtime="test-x")
    [server] = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu).servers
    assert server.health == "unknown" and "no health probe" in (server.health_reason or "")


# --- GPU memory -------------------------------------------------------------------------------------------------


def test_no_driver_means_unknown_memory_with_the_reason(fake: FakeDocker, http: httpx.Client,
                                                        settings: Settings) -> None:
    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-a", server.port, pids=(5,))
        report = collect_status(settings, docker=fake, http=http, gpu_reader=no_gpu)
    gpu = report.servers[0].gpu
    assert gpu.memory_mib is None and "NVML library not found" in (gpu.reason or "")
    assert report.gpu_reason == gpu.reason


def test_nvml_without_per_process_memory_is_null_not_zero(fake: FakeDocker, http: httpx.Client,
                                                          settings: Settings) -> None:
    nvml = FakeNvml([FakeGpu("NVIDIA A100", processes=[(7, None)]), FakeGpu("NVIDIA A100", processes=[(8, 100)])])
    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-a", server.port, pids=(7, 8))
        [status] = collect_status(settings, docker=fake, http=http,
                                  gpu_reader=lambda: read_gpu_processes(nvml)).servers
    assert status.gpu.gpus == (0, 1) and status.gpu.memory_mib is None and "not available" in (
        status.gpu.reason or "")


def test_unified_memory_counts_resident_memory(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    from nemoclaw_runtime.runtimes.status.collect import StatusCollector

    nvml = FakeNvml([FakeGpu("NVIDIA GB10", memory_total_mib=None, processes=[(41, None)])])
    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-spark", server.port, pids=(40, 41))
        collector = StatusCollector(settings, fake, http, gpu_reader=lambda: read_gpu_processes(nvml),
                                    rss=lambda pid: {40: 1 << 30, 41: 40 << 30}[pid])
        report = collector.collect()
    gpu = report.servers[0].gpu
    assert report.unified_memory and (gpu.source, gpu.memory_mib, gpu.gpus) == ("rss", 40 * 1024, (0,))


def test_a_gpu_reader_that_hangs_does_not_hold_the_answer(fake: FakeDocker, http: httpx.Client,
                                                          settings: Settings) -> None:
    def slow() -> GpuProcesses:
        time.sleep(2.0)
        return GpuProcesses()

    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-a", server.port)
        started = time.monotonic()
        report = collect_status(settings, docker=fake, http=http, gpu_reader=slow)
        took = time.monotonic() - started
    assert took <= DEFAULT_BUDGET_S + 2.0 and report.servers[0].health == "healthy"
    assert "did not answer" in (report.servers[0].gpu.reason or "")


def test_a_snapshot_replay_reads_no_nvml(fake: FakeDocker, http: httpx.Client) -> None:
    settings = Settings(vllm_port=free_port(), ollama_port=free_port(), gpu_snapshot=Path("/nonexistent.json"))
    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-a", server.port)
        report = collect_status(settings, docker=fake, http=http)
    assert "NEMOCLAW_GPU_SNAPSHOT" in (report.servers[0].gpu.reason or "")


# --- watching ---------------------------------------------------------------------------------------------------


class TickingClock(FakeClock):
    """Every sleep between samples is 2 s of traffic: the server's counters move on."""

    def __init__(self, server: FakeStatusServer) -> None:
        super().__init__()
        self.server = server

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.server.prompt_tokens += 250 * seconds
        self.server.generation_tokens += 40 * seconds
        self.server.prefix_queries += 100 * seconds
        self.server.prefix_hits += 90 * seconds


def test_watch_rates_come_from_counters_between_samples(fake: FakeDocker, http: httpx.Client,
                                                        settings: Settings) -> None:
    with FakeStatusServer("vllm") as server:
        run_managed(fake, "nrt-a", server.port)
        clock = TickingClock(server)
        reports = list(watch_status(settings, interval_s=2.0, count=3, docker=fake, http=http, clock=clock,
                                    gpu_reader=unreadable("test")))
    assert [r.sample for r in reports] == [1, 2, 3] and clock.sleeps == [2.0, 2.0]
    first, second, third = (r.servers[0].metrics for r in reports)
    assert first is not None and first.prompt_tokens_per_s is None and first.note
    assert second is not None and second.interval_s == 2.0
    assert second.prompt_tokens_per_s == 250.0 and second.generation_tokens_per_s == 40.0
    assert second.prefix_cache_hit_rate == 0.9
    assert third is not None and third.prompt_tokens_total == 2000.0


def test_watch_checks_names_first_then_reports_a_vanished_one(fake: FakeDocker, http: httpx.Client,
                                                              settings: Settings) -> None:
    with FakeStatusServer("vllm") as server:
        container_id = run_managed(fake, "nrt-a", server.port)
        with pytest.raises(NoSuchContainer):
            next(watch_status(settings, ["nope"], docker=fake, http=http, clock=FakeClock(), gpu_reader=no_gpu))
        samples = watch_status(settings, ["nrt-a"], count=2, docker=fake, http=http, clock=FakeClock(),
                               gpu_reader=no_gpu)
        assert next(samples).servers[0].health == "healthy"
        fake.remove_container(container_id, force=True)
        gone = next(samples).servers[0]
        samples.close()
    assert (gone.name, gone.health, gone.health_reason) == ("nrt-a", "stopped", "the container no longer exists")


@pytest.mark.parametrize("interval, count", [(0.0, 1), (0.1, 1), (float("nan"), 1), (2.0, 0)])
def test_watch_refuses_bad_intervals_and_counts(settings: Settings, interval: float, count: int) -> None:
    with pytest.raises(InvalidInput):  # at the call, before any sample
        watch_status(settings, interval_s=interval, count=count, docker=FakeDocker())


def test_a_stuck_engine_call_neither_holds_the_answer_nor_the_exit(fake: FakeDocker, http: httpx.Client,
                                                                   settings: Settings) -> None:
    """`docker top` stuck (docker-py would wait 60 s): the sample answers on its budget, and the call runs on a
    daemon thread, so the interpreter does not wait for it at exit (an executor's threads are joined at exit)."""
    import threading

    release = threading.Event()
    stuck = threading.Event()

    def hung_pids(name_or_id: str) -> list[int]:
        stuck.set()
        release.wait(30)
        return []

    fake.container_pids = hung_pids  # type: ignore[method-assign]
    nvml = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", processes=[(101, 30000)])])
    try:
        with FakeStatusServer("vllm", served="acme/tiny") as server:
            run_managed(fake, "nrt-stuck", server.port, pids=(101,))
            started = time.monotonic()
            report = collect_status(settings, docker=fake, http=http, gpu_reader=lambda: read_gpu_processes(nvml))
            took = time.monotonic() - started
        assert stuck.is_set() and took <= DEFAULT_BUDGET_S + 0.5
        assert report.servers[0].health == "unresponsive"
        workers = [t for t in threading.enumerate() if t.name.startswith("nemoclaw-status") and t.is_alive()]
        assert workers and all(t.daemon for t in workers)
    finally:
        release.set()


def test_no_engine_call_once_the_budget_is_spent(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    from nemoclaw_runtime.runtimes.status.collect import StatusCollector
    from nemoclaw_runtime.runtimes.status.probe import Budget

    container_id = run_managed(fake, "nrt-spent", free_port())
    collector = StatusCollector(settings, fake, http)
    spent = Budget(collector.clock, collector.clock.monotonic() - 1.0, connect_s=0.1, read_s=0.1)
    fake.calls.clear()
    assert collector._last_log_line(fake.inspect_container(container_id), "unhealthy", spent) is None
    usage = collector._gpu(GpuProcesses(), collector._targets(["nrt-spent"], None, False, True)[0], spent)
    assert usage.memory_mib is None and "budget" in (usage.reason or "")
    assert not [c for c in fake.calls if c[0] in ("container_logs", "container_pids")]


def test_a_container_id_prefix_is_not_a_name(fake: FakeDocker, http: httpx.Client, settings: Settings) -> None:
    container_id = run_managed(fake, "nrt-named", free_port())
    with pytest.raises(NoSuchContainer):
        collect_status(settings, [container_id[:12]], docker=fake, http=http, gpu_reader=no_gpu)
