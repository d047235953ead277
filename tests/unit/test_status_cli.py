"""``nemoclaw-runtime status`` through the real CLI entry point, with FakeDocker behind the library and real local
servers: the table, ``--json``, exit 6, ``--watch`` as JSON lines with rates, plain and rich redraws, Ctrl-C."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from nemoclaw_runtime.cli import main as cli_main
from nemoclaw_runtime.cli._output import Output
from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.cli.status import _rich, _watch_live, report_lines
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.spec import LABEL_MODEL, ContainerSpec, GpuRequest, PortBinding
from nemoclaw_runtime.runtimes.status import collect
from nemoclaw_runtime.runtimes.status.gpu_usage import unreadable
from nemoclaw_runtime.runtimes.status.values import ServerStatus, StatusReport
from tests.fake_servers.fake_status import FakeStatusServer, HungServer
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

IMAGE = "registry.example/fake/server:1"
GPU_REASON = "NVML library not found (test)"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    docker = FakeDocker()
    docker.add_image(IMAGE, digest="sha256:" + "cd" * 32)
    # Until cli/main.py lists the command, the test adds it the same way.
    monkeypatch.setitem(cli_main.COMMANDS, "status", "nemoclaw_runtime.cli.status:status")
    monkeypatch.setattr(wiring, "open_docker", lambda settings: docker)
    monkeypatch.setattr(collect, "_default_gpu_reader", lambda settings, stack: unreadable(GPU_REASON))
    # These tests are about rendering: a roomy budget keeps a loaded machine from turning a healthy fake unresponsive.
    monkeypatch.setattr(collect, "DEFAULT_BUDGET_S", 3.0)
    monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(free_port()))
    monkeypatch.setenv("NEMOCLAW_OLLAMA_PORT", str(free_port()))
    return docker


def start(fake: FakeDocker, name: str, port: int, *, runtime: str = "vllm", model: str = "acme/tiny") -> str:
    spec = ContainerSpec(name=name, runtime=runtime, image=IMAGE, command=("serve",), gpus=GpuRequest("none"),
                         restart_policy=None, labels=((LABEL_MODEL, model),), ports=(PortBinding(8000, port),))
    return DockerContainerManager(fake, Settings()).ensure_running(spec).container.id


@pytest.fixture
def servers() -> Iterator[dict[str, FakeStatusServer | HungServer]]:
    made: dict[str, FakeStatusServer | HungServer] = {
        "ok": FakeStatusServer("vllm", prompt_tps=1000.0), "dead": FakeStatusServer("vllm", health=503),
        "garbage": FakeStatusServer("vllm", metrics="garbage"), "hung": HungServer()}
    yield made
    for server in made.values():
        server.close()


def test_json_document(fake: FakeDocker, servers: dict[str, FakeStatusServer | HungServer],
                       capsys: pytest.CaptureFixture[str]) -> None:
    for name, server in servers.items():
        start(fake, f"nrt-{name}", server.port)
    assert run(["status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    health = {s["name"]: (s["health"], s["health_reason"]) for s in doc["servers"]}
    assert health["nrt-ok"] == ("healthy", None)
    assert health["nrt-dead"] == ("unhealthy", "engine dead: /health answered 503")
    assert health["nrt-garbage"][0] == "healthy"
    assert health["nrt-hung"][0] == "unresponsive"
    garbage = next(s for s in doc["servers"] if s["name"] == "nrt-garbage")
    assert garbage["metrics"] is None and garbage["metrics_reason"].startswith("/metrics: not Prometheus text")
    assert doc["gpu"]["reason"] == GPU_REASON and doc["elapsed_s"] < 3.0 + 2.0


def test_table_and_details(fake: FakeDocker, servers: dict[str, FakeStatusServer | HungServer],
                           capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "nrt-ok", servers["ok"].port)
    start(fake, "nrt-dead", servers["dead"].port)
    assert run(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "RUNTIME", "STATE", "UPTIME", "HEALTH"]
    assert any(line.startswith("nrt-ok ") and " healthy " in line for line in lines)
    assert "nrt-dead: unhealthy — engine dead: /health answered 503" in lines
    assert f"GPU memory unknown — {GPU_REASON}" in lines


def test_nothing_to_show(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status"]) == 0
    assert "No managed containers" in capsys.readouterr().out


def test_unknown_name_is_exit_6(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_foreign_container("theirs")
    assert run(["status", "nope"]) == 6
    assert "No managed container named nope" in capsys.readouterr().err
    assert run(["status", "theirs", "--json"]) == 6
    error = json.loads(capsys.readouterr().out)
    assert error["exit_code"] == 6 and error["details"]["foreign"] == ["theirs"]


def test_watch_json_lines_with_rates(fake: FakeDocker, servers: dict[str, FakeStatusServer | HungServer],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "nrt-ok", servers["ok"].port)
    assert run(["status", "nrt-ok", "--watch=0.3", "--count", "3", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["sample"] for d in docs] == [1, 2, 3]
    rates = [d["servers"][0]["metrics"]["prompt_tokens_per_s"] for d in docs]
    assert rates[0] is None
    assert all(r is not None and 700 <= r <= 1300 for r in rates[1:]), rates  # 1000 tokens/s, timing jitter


def test_watch_plain_without_a_terminal(fake: FakeDocker, servers: dict[str, FakeStatusServer | HungServer],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "nrt-ok", servers["ok"].port)
    assert run(["status", "--watch", "0.2", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample ") == 2 and out.count("nrt-ok ") == 2


def test_watch_needs_a_sane_interval(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", "--watch", "0.01", "--count", "1"]) == 2
    assert "--watch" in capsys.readouterr().err


def test_ctrl_c_ends_a_watch_cleanly(fake: FakeDocker, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    closed: list[bool] = []

    def interrupted(*args: object, **kwargs: object) -> Iterator[StatusReport]:
        try:
            yield StatusReport(servers=(), sampled_at="2026-01-01T00:00:00.000Z", elapsed_s=0.1)
            raise KeyboardInterrupt
        finally:
            closed.append(True)

    monkeypatch.setattr(collect, "watch_status", interrupted)
    assert run(["status", "--watch", "--json"]) == 0
    assert closed == [True] and json.loads(capsys.readouterr().out.splitlines()[0])["sample"] == 1


# --- rendering --------------------------------------------------------------------------------------------------


def _report() -> StatusReport:
    odd = ServerStatus(name="nrt-[bold]odd", managed=True, runtime="vllm", health="unresponsive",
                       health_reason="no answer within 0.8 s", served_model="[red]model[/red]", state="running",
                       last_log_line="ERROR [x] something")
    local = ServerStatus(name="local:8000", managed=False, runtime="vllm", health="healthy",
                         notes=("not managed by nemoclaw-runtime: found answering on port 8000",))
    return StatusReport(servers=(odd, local), sampled_at="2026-01-01T00:00:00.000Z", elapsed_s=0.2, sample=4)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_redraw_on_a_terminal_keeps_brackets_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    out = _Terminal()
    _watch_live(Output(False, out=out, err=io.StringIO()), iter([_report(), _report()]))
    text = out.getvalue()
    assert "nrt-[bold]odd" in text and "[red]model[/red]" in text and "sample 4" in text


def test_rich_table_renders_details() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(_rich(_report()))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "last log: ERROR [x] something" in text and "not managed" in text


def test_plain_lines_mark_servers_that_are_not_ours() -> None:
    lines = list(report_lines(_report()))
    assert any(line.startswith("local:8000") and "not managed" in line for line in lines)


@pytest.mark.parametrize("watch", ["inf", "nan", "1e400", "٣", "7200"])
def test_watch_refuses_infinite_huge_and_non_ascii_intervals(fake: FakeDocker, watch: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", f"--watch={watch}", "--count", "1"]) == 2
    assert "--watch" in capsys.readouterr().err


def test_status_names_are_checked_container_names(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", "bad name/../x"]) == 2
    assert "NAME" in capsys.readouterr().err
