"""DockerContainerManager against the real engine: start → reuse → replace → restart, foreign containers, and
two concurrent runs on one name. Every container carries this session's label and a runtime label unique to
this module, so nothing here can see or touch another engineer's containers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from nemoclaw_runtime.kernel.errors import NameTaken
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine, connect
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_MANAGED,
    LABEL_PORT,
    LABEL_RUNTIME,
    LABEL_SPEC_HASH,
    ContainerSpec,
    GpuRequest,
    PortBinding,
)
from tests.helpers.docker_env import free_port, unique_name
from tests.helpers.images import build_busybox_image, unique_tag

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

# PID 1 is a shell: trap TERM so `docker stop` returns at once instead of waiting out the stop timeout.
TICKER = "trap 'exit 0' TERM; i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.2 & wait; done"


@pytest.fixture(scope="module")
def ticker_image(docker_client: docker.DockerClient) -> str:
    tag = unique_tag("ticker")
    build_busybox_image(docker_client, tag, cmd=["/bin/sh", "-c", TICKER])
    return tag


@pytest.fixture(scope="module")
def runtime_label() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(state_dir_override=tmp_path_factory.mktemp("state"))


@pytest.fixture
def engine(settings: Settings) -> Iterator[DockerEngine]:
    port = connect(settings)
    try:
        yield port
    finally:
        port.close()


@pytest.fixture
def manager(engine: DockerEngine, settings: Settings) -> DockerContainerManager:
    return DockerContainerManager(engine, settings, lock_wait_s=60, stop_timeout_s=2)


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    import docker as docker_module

    container_name = unique_name("nrt-ct")
    yield container_name
    try:  # only the name this test made; session clean-up catches anything else of ours
        docker_client.containers.get(container_name).remove(force=True)
    except docker_module.errors.NotFound:
        pass


def make_spec(name: str, image: str, runtime: str, test_labels: dict[str, str], *, port: int | None = None,
              command: tuple[str, ...] = ()) -> ContainerSpec:
    return ContainerSpec(name=name, runtime=runtime, image=image, command=command, gpus=GpuRequest("none"),
                         labels=tuple(test_labels.items()), ports=(PortBinding(8000, port or free_port()),),
                         restart_policy=None)


def test_start_reuse_replace_restart(manager: DockerContainerManager, docker_client: docker.DockerClient,
                                     name: str, ticker_image: str, runtime_label: str,
                                     test_labels: dict[str, str]) -> None:
    port = free_port()
    spec = make_spec(name, ticker_image, runtime_label, test_labels, port=port)

    first = manager.ensure_running(spec)
    assert first.action == "started" and first.container.state.running
    raw = docker_client.containers.get(name)
    assert raw.labels[LABEL_MANAGED] == "true" and raw.labels[LABEL_SPEC_HASH] == spec.spec_hash()
    assert raw.labels[LABEL_RUNTIME] == runtime_label and raw.labels[LABEL_PORT] == str(port)
    assert raw.attrs["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

    reused = manager.ensure_running(spec)
    assert reused.action == "reused" and reused.container.id == first.container.id
    assert reused.container.state.started_at == first.container.state.started_at  # not restarted

    changed = make_spec(name, ticker_image, runtime_label, test_labels, port=port,
                        command=("/bin/sh", "-c", TICKER.replace("tick", "tock")))
    replaced = manager.ensure_running(changed)
    assert replaced.action == "replaced" and replaced.container.id != first.container.id
    assert [c.id for c in docker_client.containers.list(all=True, filters={"name": f"^/{name}$"})] == [
        replaced.container.id]

    docker_client.containers.get(name).stop(timeout=2)
    restarted = manager.ensure_running(changed)
    assert restarted.action == "restarted" and restarted.container.id == replaced.container.id
    assert restarted.container.state.running


def test_foreign_container_holding_the_name_is_left_alone(manager: DockerContainerManager,
                                                          docker_client: docker.DockerClient, name: str,
                                                          ticker_image: str, runtime_label: str,
                                                          test_labels: dict[str, str]) -> None:
    foreign = docker_client.containers.run(ticker_image, name=name, labels=test_labels, detach=True)
    with pytest.raises(NameTaken) as caught:
        manager.ensure_running(make_spec(name, ticker_image, runtime_label, test_labels))
    assert name in caught.value.message and "docker rm" in (caught.value.remedy or "")
    foreign.reload()
    assert foreign.status == "running" and LABEL_MANAGED not in foreign.labels
    assert docker_client.containers.get(name).id == foreign.id


def test_two_concurrent_runs_make_exactly_one_container(settings: Settings, docker_client: docker.DockerClient,
                                                        name: str, ticker_image: str, runtime_label: str,
                                                        test_labels: dict[str, str]) -> None:
    spec = make_spec(name, ticker_image, runtime_label, test_labels)
    barrier = threading.Barrier(2)
    actions: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        port = connect(settings)  # a client per thread, as two processes would have
        try:
            barrier.wait(30)
            actions.append(DockerContainerManager(port, settings, lock_wait_s=60).ensure_running(spec).action)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            port.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and sorted(actions) == ["reused", "started"]
    assert len(docker_client.containers.list(all=True, filters={"name": f"^/{name}$"})) == 1


def test_state_and_log_tail_for_diagnostics(manager: DockerContainerManager, docker_client: docker.DockerClient,
                                            name: str, ticker_image: str, runtime_label: str,
                                            test_labels: dict[str, str]) -> None:
    manager.ensure_running(make_spec(name, ticker_image, runtime_label, test_labels))
    lines = _wait_for_lines(manager, name, 5)
    assert len(lines) == 5 and all(line.startswith("tick ") for line in lines)
    manager.stop(name, remove=False)
    state = manager.state(name)
    assert state.status == "exited" and state.exit_code == 0
    manager.stop(name)
    assert docker_client.containers.list(all=True, filters={"name": f"^/{name}$"}) == []


def _wait_for_lines(manager: DockerContainerManager, name: str, count: int) -> list[str]:
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = manager.logs(name, tail=count)
        if len(lines) >= count:
            return lines
        time.sleep(0.2)
    return lines
