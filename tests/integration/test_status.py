"""``status`` against the real engine: managed fake vLLM / NIM / Ollama containers (FROM-scratch busybox images)
that are healthy, engine-dead (503), hung, answering garbage metrics, speaking deprecated metric names, or exited;
``--watch --json`` with rates from the counters; a server on the known port that is not ours; ``docker top``.

Every container carries the test-session label (clean-up removes it) and a unique name; the CLI is always given
those names (or ``--runtime`` with assertions on our entries only), since the engine is shared.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from nemoclaw_runtime.cli import main as cli_main
from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.port import DockerPort
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_MODEL,
    LABEL_SERVED_MODEL,
    ContainerSpec,
    GpuRequest,
    PortBinding,
)
from nemoclaw_runtime.runtimes.status.collect import DEFAULT_BUDGET_S
from tests.fake_servers.fake_nim import build_fake_nim_image
from tests.fake_servers.fake_ollama_image import fake_ollama_image  # noqa: F401  (fixture)
from tests.fake_servers.fake_vllm import fake_vllm_image, serve_command, start_fake_vllm  # noqa: F401  (fixture)
from tests.helpers.docker_env import free_port, unique_name
from tests.helpers.images import unique_tag

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

MODEL = "acme/tiny-model"
NIM_KEY = "nvapi-status-test-" + uuid.uuid4().hex
PROMPT_TPS = 500
READY_WITHIN_S = 60.0


@dataclass(frozen=True)
class Member:
    name: str
    port: int


@pytest.fixture(autouse=True)
def _status_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command as cli/main.py lists it (a no-op once it does); the known local ports point at nothing."""
    monkeypatch.setitem(cli_main.COMMANDS, "status", "nemoclaw_runtime.cli.status:status")
    monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(free_port()))
    monkeypatch.setenv("NEMOCLAW_OLLAMA_PORT", str(free_port()))


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerPort]:
    port = wiring.open_docker(Settings.from_env())
    yield port
    port.close()


@pytest.fixture(scope="module")
def fleet(docker_client: docker.DockerClient, engine: DockerPort, fake_vllm_image: str,  # noqa: F811
          fake_ollama_image: str, test_labels: dict[str, str]) -> Iterator[dict[str, Member]]:  # noqa: F811
    """One managed container of each kind, ready (or exited) before the tests look."""
    nim_image = unique_tag("fake-nim")
    build_fake_nim_image(docker_client, nim_image, expected_key=NIM_KEY)
    manager = DockerContainerManager(engine, Settings.from_env())
    vllm_argv = tuple(serve_command(MODEL))
    kinds: dict[str, tuple[str, str, tuple[str, ...], dict[str, str], int, str]] = {
        "ok": ("vllm", fake_vllm_image, vllm_argv, {"FAKE_VLLM_PROMPT_TPS": str(PROMPT_TPS)}, 8000, MODEL),
        "dead": ("vllm", fake_vllm_image, vllm_argv, {"FAKE_VLLM_HEALTH": "503"}, 8000, MODEL),
        "hung": ("vllm", fake_vllm_image, vllm_argv, {"FAKE_VLLM_HANG": "1", "FAKE_VLLM_HANG_S": "20"}, 8000, MODEL),
        "garbage": ("vllm", fake_vllm_image, vllm_argv, {"FAKE_VLLM_METRICS": "garbage"}, 8000, MODEL),
        "old": ("vllm", fake_vllm_image, vllm_argv, {"FAKE_VLLM_METRICS": "deprecated"}, 8000, MODEL),
        "crashed": ("vllm", fake_vllm_image, vllm_argv, {"FAKE_VLLM_CRASH": "oom"}, 8000, MODEL),
        "nim": ("nim", nim_image, (), {"NGC_API_KEY": NIM_KEY}, 8000, "nvidia/nemotron-3-nano"),
        "ollama": ("ollama", fake_ollama_image, (), {"FAKE_OLLAMA_MODELS": "qwen3:8b"}, 11434, "qwen3:8b"),
    }
    members: dict[str, Member] = {}
    try:
        for kind, (runtime, image, command, env, inner, model) in kinds.items():
            name = unique_name(f"nrt-st-{kind}")
            port = free_port()
            spec = ContainerSpec(name=name, runtime=runtime, image=image, command=command, env=tuple(env.items()),
                                 gpus=GpuRequest("none"), restart_policy=None,
                                 labels=((LABEL_MODEL, model), (LABEL_SERVED_MODEL, model), *test_labels.items()),
                                 ports=(PortBinding(inner, port),))
            manager.ensure_running(spec)
            members[kind] = Member(name, port)
        _wait_until_serving(engine, members)
        with httpx.Client(trust_env=False) as http:  # Ollama loads the model on its first generate
            http.post(f"http://127.0.0.1:{members['ollama'].port}/api/generate",
                      json={"model": "qwen3:8b", "prompt": "hi"}, timeout=10).raise_for_status()
        yield members
    finally:
        for member in members.values():
            try:
                docker_client.containers.get(member.name).remove(force=True)
            except Exception:  # noqa: BLE001 - the session clean-up gets it otherwise
                pass


def _wait_until_serving(engine: DockerPort, members: dict[str, Member]) -> None:
    """Every fake printed its "serving" line (or, the crashed one, exited): bounded by READY_WITHIN_S."""
    markers = ("Application startup complete", "Uvicorn running", "Listening on")
    deadline = time.monotonic() + READY_WITHIN_S
    waiting = dict(members)
    while waiting and time.monotonic() < deadline:
        for kind, member in list(waiting.items()):
            info = engine.inspect_container(member.name)
            lines = engine.container_logs(member.name, tail=200)
            if (kind == "crashed" and info is not None and info.state.status == "exited") or (
                    kind != "crashed" and any(m in line for line in lines for m in markers)):
                del waiting[kind]
        time.sleep(0.1)
    assert not waiting, f"not serving within {READY_WITHIN_S}s: {sorted(waiting)}"


def _status_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert run(["status", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_kind_of_server(fleet: dict[str, Member], capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    doc = _status_json(capsys, *(m.name for m in fleet.values()))
    took = time.monotonic() - started
    servers = {s["name"]: s for s in doc["servers"]}
    by_kind = {kind: servers[member.name] for kind, member in fleet.items()}
    # Bounded by the budget whatever hangs (the ≤ 1 s figure is measured by bench/bench_status.py).
    assert doc["elapsed_s"] <= DEFAULT_BUDGET_S + 2.0 and took < 5.0, (doc["elapsed_s"], took)

    ok = by_kind["ok"]
    assert (ok["health"], ok["state"], ok["restart_count"], ok["runtime"]) == ("healthy", "running", 0, "vllm")
    assert ok["served_model"] == MODEL and ok["context_window"] == 4096 and ok["uptime_s"] >= 0
    assert ok["base_url"] == f"http://127.0.0.1:{fleet['ok'].port}/v1"
    metrics = ok["metrics"]
    assert (metrics["requests_running"], metrics["requests_waiting"], metrics["kv_cache_usage_pct"]) == (2, 1, 42)
    assert metrics["prompt_tokens_total"] > 0 and metrics["prefix_cache_hit_rate"] == pytest.approx(0.25, abs=0.01)
    assert metrics["preemptions_total"] == 3 and metrics["prompt_tokens_per_s"] is None  # one sample
    assert ok["gpu"]["memory_mib"] is None and ok["gpu"]["reason"]  # no GPU on this machine: said, not 0

    dead = by_kind["dead"]
    assert dead["health"] == "unhealthy" and dead["health_reason"] == "engine dead: /health answered 503"
    assert "Engine core proc EngineCore_0 died unexpectedly" in dead["last_log_line"]

    hung = by_kind["hung"]
    assert hung["health"] == "unresponsive" and "no answer" in hung["health_reason"]

    garbage = by_kind["garbage"]
    assert garbage["health"] == "healthy" and garbage["metrics"] is None
    assert garbage["metrics_reason"].startswith("/metrics: not Prometheus text")

    old = by_kind["old"]
    assert old["metrics"]["kv_cache_usage_pct"] == 42
    assert "vllm:gpu_cache_usage_perc" in old["metrics"]["deprecated_names"]

    crashed = by_kind["crashed"]
    assert (crashed["health"], crashed["state"], crashed["exit_code"]) == ("stopped", "exited", 1)
    assert crashed["last_log_line"].startswith("RuntimeError: Engine core initialization failed")

    nim = by_kind["nim"]
    assert nim["health"] == "healthy" and nim["runtime"] == "nim"
    assert nim["served_model"] == "nvidia/nemotron-3-nano" and nim["context_window"] == 131072
    assert nim["metrics"]["requests_running"] == 2  # /v1/metrics 404, then /metrics

    ollama = by_kind["ollama"]
    assert ollama["health"] == "healthy" and ollama["ollama"]["version"] == "0.12.6"
    [loaded] = ollama["ollama"]["loaded_models"]
    assert (loaded["name"], loaded["size_vram_bytes"], loaded["expires_at"]) == ("qwen3:8b", 4200,
                                                                                 "2026-01-02T03:19:05Z")
    assert ollama["context_window"] == 4096


def test_the_table_names_what_is_wrong(fleet: dict[str, Member], capsys: pytest.CaptureFixture[str]) -> None:
    names = [fleet[kind].name for kind in ("ok", "dead", "hung")]
    assert run(["status", *names]) == 0
    out = capsys.readouterr().out
    assert f"{fleet['dead'].name}: unhealthy — engine dead: /health answered 503" in out
    assert f"{fleet['hung'].name}: unresponsive" in out
    assert "GPU memory unknown" in out


def test_unknown_name_is_exit_6(fleet: dict[str, Member], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", fleet["ok"].name, "nrt-st-no-such-" + uuid.uuid4().hex[:8]]) == 6
    assert "No managed container named nrt-st-no-such-" in capsys.readouterr().err


def test_watch_json_lines_with_rates_from_counters(fleet: dict[str, Member],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    names = [fleet["ok"].name, fleet["old"].name, fleet["hung"].name]
    assert run(["status", *names, "--watch=1", "--count", "3", "--json"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["sample"] for d in docs] == [1, 2, 3]
    for doc in docs:
        hung = next(s for s in doc["servers"] if s["name"] == fleet["hung"].name)
        assert hung["health"] == "unresponsive" and doc["elapsed_s"] <= DEFAULT_BUDGET_S + 2.0
    rates = [next(s for s in d["servers"] if s["name"] == fleet["ok"].name)["metrics"] for d in docs]
    assert rates[0]["prompt_tokens_per_s"] is None
    for later in rates[1:]:
        assert 0.5 <= later["interval_s"] <= 2.0
        assert PROMPT_TPS * 0.7 <= later["prompt_tokens_per_s"] <= PROMPT_TPS * 1.3, later
        assert 50 * 0.7 <= later["generation_tokens_per_s"] <= 50 * 1.3, later
    assert rates[2]["prompt_tokens_total"] > rates[0]["prompt_tokens_total"]


def test_a_server_on_the_known_port_that_is_not_ours(docker_client: docker.DockerClient, fake_vllm_image: str,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    container = start_fake_vllm(docker_client, fake_vllm_image, model="someone/else", port=port)
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while b"Application startup complete" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(port))
        doc = _status_json(capsys, "--runtime", "vllm")
    finally:
        container.remove(force=True)
    [local] = [s for s in doc["servers"] if s["name"] == f"local:{port}"]
    assert (local["managed"], local["runtime"], local["health"]) == (False, "vllm", "healthy")
    assert local["served_model"] == "someone/else" and local["container_id"] is None
    assert local["metrics"]["requests_running"] == 2
    assert "not managed by nemoclaw-runtime" in local["notes"][-1]


def test_docker_top_gives_the_pids_of_a_running_container_only(fleet: dict[str, Member],
                                                               engine: DockerPort) -> None:
    pids = engine.container_pids(fleet["ok"].name)
    assert pids and all(isinstance(pid, int) and pid > 0 for pid in pids)
    assert engine.container_pids(fleet["crashed"].name) == []


# --- a real GPU (marker gpu: skipped where NVML finds none) -------------------------------------------------------

CUDA_HOLDER = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
def check(rc, what):
    if rc != 0:
        print(f"no CUDA: {what} returned {rc}", flush=True)
        sys.exit(3)
check(cuda.cuInit(0), "cuInit")
device = ctypes.c_int()
check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
context = ctypes.c_void_p()
check(cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device), "cuCtxCreate_v2")
pointer = ctypes.c_uint64()
check(cuda.cuMemAlloc_v2(ctypes.byref(pointer), 512 << 20), "cuMemAlloc_v2")
print("ready", flush=True)
sys.stdin.read()  # holds the memory until the parent closes stdin
"""


def _same_pid_namespace_as_the_host() -> bool:
    """NVML lists host PIDs: they match ours only outside a nested PID namespace (NSpid shows one number)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            line = next((raw for raw in status if raw.startswith("NSpid:")), "NSpid:\t1")
    except OSError:
        return False
    return len(line.split()) == 2


@pytest.mark.gpu
def test_nvml_sees_the_memory_a_process_holds() -> None:
    import subprocess
    import sys
    import threading

    from nemoclaw_runtime.gpu import read_gpu_processes
    from nemoclaw_runtime.runtimes.status.gpu_usage import attribute

    before = read_gpu_processes()
    if before.gpu_count == 0:
        pytest.skip(f"NVML finds no GPU here: {before.reason}")
    child = subprocess.Popen([sys.executable, "-c", CUDA_HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    killer = threading.Timer(60.0, child.kill)  # a CUDA call that never returns cannot hold the test
    killer.start()
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line.startswith("ready"):
            pytest.skip(f"no CUDA context could be made here: {line.strip() or child.poll()}")
        deadline = time.monotonic() + 10
        reading = read_gpu_processes()
        while not any(p.pid == child.pid for p in reading.processes) and time.monotonic() < deadline:
            time.sleep(0.2)
            reading = read_gpu_processes()
        assert reading.reason is None, reading.reason
        if not _same_pid_namespace_as_the_host():
            assert reading.processes, "NVML lists no compute process while one holds 512 MiB"
            return
        usage = attribute(reading, [child.pid])
        assert len(usage.gpus) == 1 and usage.processes == 1
        if reading.unified_memory:
            assert usage.source == "rss" and (usage.memory_mib is None or usage.memory_mib > 0)
        else:
            assert usage.source == "nvml" and usage.memory_mib is not None and usage.memory_mib >= 512, usage
    finally:
        killer.cancel()
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
