"""DockerEngine against the real engine: a container's whole life, the errors the engine really sends, and the
pull stream's abort when the engine itself is the other end."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from nemoclaw_runtime.kernel.errors import DockerUnavailable, ImageNotFound, NameTaken, NoSuchContainer
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine, connect
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest, Mount, PortBinding
from tests.helpers.docker_env import free_port, unique_name

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[DockerEngine]:
    port = connect(Settings.from_env({"HOME": str(tmp_path)}))
    yield port
    port.close()


def busybox_spec(image: str, labels: dict[str, str], tmp_path: Path, **changes: object) -> ContainerSpec:
    base: dict[str, object] = {
        "name": unique_name("engine"), "runtime": "test", "image": image,
        "command": ("sh", "-c", "echo hello; echo token-length=${#TOKEN}; exec sleep 60"),
        "env": (("PLAIN", "1"), ("TOKEN", Secret("s3cret-value"))), "labels": tuple(labels.items()),
        "ports": (PortBinding(8080, free_port()),), "gpus": GpuRequest("none"),
        "mounts": (Mount(str(tmp_path), "/host", read_only=True),), "shm_size": "64m", "ipc_mode": "private"}
    base.update(changes)
    return ContainerSpec(**base)  # type: ignore[arg-type]


def test_container_lifecycle(engine: DockerEngine, busybox_base: str, test_labels: dict[str, str],
                             tmp_path: Path) -> None:
    spec = busybox_spec(busybox_base, test_labels, tmp_path)
    container_id = engine.create_container(spec)
    try:
        engine.start_container(spec.name)
        logs = engine.follow_logs(spec.name, tail=10)
        first_two = list(itertools.islice(logs, 2))
        info = engine.inspect_container(spec.name)
        listed = engine.list_containers(dict(test_labels))

        assert first_two == ["hello", "token-length=12"]
        assert info is not None and info.id == container_id and info.state.running
        assert dict(info.labels).items() >= test_labels.items()
        assert info.ports["8080/tcp"] == (("127.0.0.1", spec.ports[0].host_port),)
        assert container_id in [c.id for c in listed]
        assert engine.container_logs(spec.name, tail=1) == ["token-length=12"]

        with pytest.raises(NameTaken):
            engine.create_container(spec)

        engine.stop_container(spec.name, timeout=1)
        stopped = engine.inspect_container(spec.name)
        assert stopped is not None and not stopped.state.running and stopped.state.exit_code is not None
    finally:
        engine.remove_container(container_id, force=True)

    assert engine.inspect_container(spec.name) is None
    with pytest.raises(NoSuchContainer):
        engine.start_container(spec.name)


def test_missing_image_is_image_not_found(engine: DockerEngine, busybox_base: str, test_labels: dict[str, str],
                                          tmp_path: Path) -> None:
    spec = busybox_spec(f"nemoclaw-test/absent:{unique_name('x')}", test_labels, tmp_path)
    with pytest.raises(ImageNotFound) as caught:
        engine.create_container(spec)
    assert spec.image in caught.value.message
    assert engine.image_inspect(spec.image) is None


def test_unreachable_engine_is_docker_unavailable(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/nope.sock"})
    with pytest.raises(DockerUnavailable) as caught:
        connect(settings).ping()
    assert caught.value.exit_code == 3
