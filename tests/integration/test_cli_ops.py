"""``ps`` / ``stop`` / ``logs`` against the real engine, through the CLI entry point in-process.

``--runtime`` only takes a real runtime, so our containers run as ``vllm`` and carry a scope label unique to each
test; the library's engine (opened in ``runtimes/wiring.py``) is the real one with its listings narrowed to that
label: other people's containers share the engine and must never be touched, even by ``stop --all``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.adapter import connect
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, DockerPort
from nemoclaw_runtime.runtimes.docker.spec import LABEL_MODEL, ContainerSpec, GpuRequest, PortBinding
from tests.helpers.docker_env import free_port, unique_name
from tests.helpers.images import build_busybox_image, unique_tag

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

Starter = Callable[..., str]  # start(name, port=None) -> container id

TICKER = "trap 'exit 0' TERM; i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.2 & wait; done"


@pytest.fixture(scope="module")
def ticker_image(docker_client: docker.DockerClient) -> str:
    tag = unique_tag("ops-ticker")
    build_busybox_image(docker_client, tag, cmd=["/bin/sh", "-c", TICKER])
    return tag


RUNTIME = "vllm"
SCOPE_LABEL = "io.nemoclaw.test.ops-scope"


class ScopedEngine:
    """The real engine, with every container listing narrowed to one scope label (the rest is passed through)."""

    def __init__(self, engine: DockerPort, scope: Mapping[str, str]) -> None:
        self._engine, self._scope = engine, dict(scope)

    def list_containers(self, labels: Mapping[str, str | None], *, all: bool = True) -> list[ContainerInfo]:
        return self._engine.list_containers({**labels, **self._scope}, all=all)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture
def scope(monkeypatch: pytest.MonkeyPatch) -> str:
    """A label value unique to this test: on every container it starts, and the only ones the library lists."""
    value = f"test-{uuid.uuid4().hex[:8]}"
    real_open = wiring.open_docker
    monkeypatch.setattr(wiring, "open_docker", lambda settings: ScopedEngine(real_open(settings), {SCOPE_LABEL: value}))
    return value


@pytest.fixture
def start(docker_client: docker.DockerClient, ticker_image: str, scope: str,
          test_labels: dict[str, str]) -> Iterator[Starter]:
    """``start(name)`` runs a managed ticker through the library; everything started is removed afterwards."""
    import docker as docker_module

    settings = Settings.from_env()
    engine = connect(settings)
    names: list[str] = []

    def _start(name: str, port: int | None = None) -> str:
        spec = ContainerSpec(name=name, runtime=RUNTIME, image=ticker_image, command=(),
                             gpus=GpuRequest("none"), restart_policy=None,
                             labels=((LABEL_MODEL, "tiny"), (SCOPE_LABEL, scope), *test_labels.items()),
                             ports=(PortBinding(8000, port or free_port()),))
        names.append(name)
        return DockerContainerManager(engine, settings).ensure_running(spec).container.id

    yield _start
    for name in names:
        try:
            docker_client.containers.get(name).remove(force=True)
        except docker_module.errors.NotFound:
            pass
    engine.close()


@pytest.fixture
def foreign(docker_client: docker.DockerClient, ticker_image: str, test_labels: dict[str, str]) -> Iterator[str]:
    """A running container made with docker-py directly: no labels of ours (only the test-session label)."""
    container = docker_client.containers.run(ticker_image, name=unique_name("nrt-foreign"), labels=test_labels,
                                             detach=True)
    yield container.name
    container.remove(force=True)


def _ps(capsys: pytest.CaptureFixture[str], runtime: str | None = None) -> list[dict[str, object]]:
    assert run(["ps", "--json", *(["--runtime", runtime] if runtime else [])]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    return rows


def test_ps_lists_ours_and_not_the_foreign_one(start: Starter, foreign: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("nrt-ops")
    port = free_port()
    start(name, port)
    rows = _ps(capsys)
    names = [row["name"] for row in rows]
    assert name in names and foreign not in names
    ours = next(row for row in rows if row["name"] == name)
    assert ours["runtime"] == RUNTIME and ours["model"] == "tiny" and ours["state"] == "running"
    assert ours["base_url"] == f"http://127.0.0.1:{port}/v1" and ours["created"]
    assert [row["name"] for row in _ps(capsys, RUNTIME)] == [name]
    assert _ps(capsys, "ollama") == []


def test_ps_of_a_runtime_with_nothing_is_empty(capsys: pytest.CaptureFixture[str], scope: str) -> None:
    assert _ps(capsys, RUNTIME) == []
    assert run(["ps", "--runtime", RUNTIME]) == 0
    assert capsys.readouterr().out.strip() == "No managed containers."


def test_an_unknown_runtime_is_exit_2(capsys: pytest.CaptureFixture[str], scope: str) -> None:
    assert run(["ps", "--runtime", "bogus"]) == 2
    assert run(["stop", "--all", "--runtime", "bogus"]) == 2
    assert "use one of: vllm, nim, ollama" in capsys.readouterr().err


def test_stop_removes_ours(start: Starter, docker_client: docker.DockerClient,
                           capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("nrt-ops")
    start(name)
    assert run(["stop", name]) == 0
    assert f"Stopped and removed {name}" in capsys.readouterr().out
    assert docker_client.containers.list(all=True, filters={"name": f"^/{name}$"}) == []


def test_stop_foreign_is_exit_6_and_it_keeps_running(start: Starter, foreign: str,
                                                     docker_client: docker.DockerClient,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ours = unique_name("nrt-ops")
    start(ours)
    assert run(["stop", foreign]) == 6
    assert "not created by nemoclaw-runtime" in capsys.readouterr().err
    assert run(["stop", ours, foreign]) == 6  # validated first: ours is not stopped either
    assert docker_client.containers.get(foreign).status == "running"
    assert docker_client.containers.get(ours).status == "running"


def test_stop_all_by_runtime_touches_only_that_runtime(start: Starter, foreign: str,
                                                       docker_client: docker.DockerClient,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    names = sorted(unique_name("nrt-ops") for _ in range(2))
    for name in names:
        start(name)
    assert run(["stop", "--all", "--runtime", "ollama", "--json"]) == 0  # another runtime: ours stay
    assert json.loads(capsys.readouterr().out) == {"stopped": []}
    assert run(["stop", "--all", "--runtime", RUNTIME, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": names}
    assert _ps(capsys, RUNTIME) == []
    assert docker_client.containers.get(foreign).status == "running"
    assert run(["stop", "--all", "--runtime", RUNTIME]) == 0
    assert "No managed" in capsys.readouterr().out


def test_logs_tail_and_follow(start: Starter, docker_client: docker.DockerClient,
                              capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("nrt-ops")
    start(name)
    deadline = time.monotonic() + 30
    while len(docker_client.containers.get(name).logs(tail=5).splitlines()) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run(["logs", name, "--tail", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(line.startswith("tick ") for line in lines)

    stopper = threading.Timer(1.0, lambda: docker_client.containers.get(name).stop(timeout=2))
    stopper.start()
    assert run(["logs", name, "--tail", "1", "--follow"]) == 0  # returns once the container stops
    stopper.join()
    followed = capsys.readouterr().out.splitlines()
    assert len(followed) >= 2 and all(line.startswith("tick ") for line in followed)


def test_logs_of_foreign_is_exit_6(foreign: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["logs", foreign]) == 6
    captured = capsys.readouterr()
    assert "tick" not in captured.out and "not created by nemoclaw-runtime" in captured.err
