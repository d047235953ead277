"""The two engines the ``DockerPort`` contract runs against, behind one small scenario interface.

``FakeWorld`` drives :class:`tests.fakes.fake_docker.FakeDocker`; ``RealWorld`` drives the docker-py adapter
(``connect(Settings)``) on the local engine with busybox images built by ``tests/helpers/images.py`` and, for
pulls and logins, a local ``docker-registry`` (``tests/helpers/registry.py``). A test says *what* happens
("a container that prints these lines, then exits"); each world makes it so — the real one by the container's
command, the fake one with its scenario helpers — and the assertions that follow are the contract.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine, connect
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, DockerPort, StoredLogin
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest, PortBinding
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port, session_labels, unique_name
from tests.helpers.images import build_busybox_image, unique_tag
from tests.helpers.registry import NGC_USERNAME, LocalRegistry, start_registry

if TYPE_CHECKING:
    import docker

Then = Literal["wait", "exit"]
_WAIT_S = 30.0


@dataclass(frozen=True)
class Published:
    """An image that a registry holds and the engine does not (yet)."""

    repository: str  # 127.0.0.1:PORT/team/app-… (fake: any repository name)
    tag: str
    digest: str  # sha256:… of the manifest the tag names

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Login:
    registry: str
    username: str
    password: str  # a throwaway test key


def shell_command(lines: Sequence[str], then: Then) -> tuple[str, ...]:
    """What a real container runs to print ``lines`` and then exit 0, or keep running until SIGTERM (exit 0)."""
    echo = "".join(f"echo '{line}'; " for line in lines)
    tail = "exit 0" if then == "exit" else "sleep 300 & wait"
    return ("/bin/sh", "-c", f"trap 'exit 0' TERM; {echo}{tail}")


class World:
    """One engine under contract. ``port`` is the ``DockerPort``; ``image`` and ``other_image`` are two distinct
    images present locally; ``labels`` are unique to the test (and carry the session label)."""

    kind: str
    port: DockerPort
    image: str
    other_image: str

    def __init__(self) -> None:
        self.labels = {**session_labels(), "io.nemoclaw.contract": uuid.uuid4().hex[:12]}
        self.scripts: dict[str, tuple[tuple[str, ...], Then]] = {}  # container name -> (lines, then)

    def spec(self, *, lines: Sequence[str] = (), then: Then = "wait", image: str | None = None,
             host_port: int | None = None, name: str | None = None) -> ContainerSpec:
        spec = ContainerSpec(name=name or unique_name("contract"), runtime="contract", image=image or self.image,
                             command=shell_command(lines, then), gpus=GpuRequest("none"),
                             labels=tuple(self.labels.items()),
                             ports=(PortBinding(8080, host_port or free_port()),), restart_policy=None)
        self.scripts[spec.name] = (tuple(lines), then)
        return spec

    def run(self, spec: ContainerSpec) -> str:
        """Create and start ``spec``; return once it printed its lines (and, for ``then="exit"``, exited)."""
        raise NotImplementedError

    def wait_for_logs(self, name: str, count: int) -> list[str]:
        deadline = time.monotonic() + _WAIT_S
        lines = self.port.container_logs(name, tail=count)
        while len(lines) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            lines = self.port.container_logs(name, tail=count)
        return lines

    def wait_for_status(self, name: str, status: str) -> ContainerInfo:
        deadline = time.monotonic() + _WAIT_S
        info = self.port.inspect_container(name)
        while info is not None and info.state.status != status and time.monotonic() < deadline:
            time.sleep(0.1)
            info = self.port.inspect_container(name)
        assert info is not None and info.state.status == status, info
        return info

    def absent_image(self) -> str:
        return f"nemoclaw-test/absent:{uuid.uuid4().hex[:12]}"

    def new_tag(self) -> str:
        return unique_tag("contract-tag")

    def unreachable(self) -> DockerPort:
        """A port whose engine does not answer."""
        raise NotImplementedError

    def publish(self) -> Published:
        """Put a fresh image in a registry (and not in the engine); the repository is unique to this call."""
        raise NotImplementedError

    def registry_login(self) -> Login:
        """A registry that wants a login, and the credentials it accepts."""
        raise NotImplementedError

    def store_login(self, login: Login) -> None:
        """Make the docker config hold ``login`` (as ``docker login`` leaves it: an ``auths`` entry)."""
        raise NotImplementedError

    def close(self) -> None:
        self.port.close()


class FakeWorld(World):
    kind = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.fake = FakeDocker()
        self.port = self.fake
        self.image = unique_tag("contract-fake")
        self.other_image = unique_tag("contract-fake-other")
        self.fake.add_image(self.image)
        self.fake.add_image(self.other_image)

    def run(self, spec: ContainerSpec) -> str:
        container_id = self.port.create_container(spec)
        self.port.start_container(spec.name)
        lines, then = self.scripts[spec.name]
        self.fake.emit_logs(spec.name, *lines)
        if then == "exit":
            self.fake.crash(spec.name, exit_code=0)  # no restart policy: the main process ended, exit 0
        return container_id

    def unreachable(self) -> DockerPort:
        down = FakeDocker()
        down.engine_up = False
        return down

    def publish(self) -> Published:
        published = Published(f"127.0.0.1:5000/team/{unique_name('app')}", "1.0", "sha256:" + os.urandom(32).hex())
        events = [{"status": f"Pulling from {published.repository}", "id": published.tag},
                  {"status": "Pull complete", "id": "0123456789ab"},
                  {"status": f"Digest: {published.digest}"},
                  {"status": f"Status: Downloaded newer image for {published.ref}"}]
        self.fake.script_pull(published.repository, published.tag, events, digest=published.digest)
        self.fake.script_pull(published.repository, published.digest, events, digest=published.digest)
        return published

    def registry_login(self) -> Login:
        login = Login("127.0.0.1:5000", NGC_USERNAME, "nvapi-test-" + uuid.uuid4().hex)
        self.fake.valid_logins = {login.registry: (login.username, login.password)}
        return login

    def store_login(self, login: Login) -> None:
        self.fake.stored_logins[login.registry] = StoredLogin(login.username, Secret(login.password))


class RealWorld(World):
    kind = "real"

    def __init__(self, client: docker.DockerClient, images: tuple[str, str], workdir: Path) -> None:
        super().__init__()
        self.client = client
        self.workdir = workdir
        self.image, self.other_image = images
        self.port = connect(Settings.from_env({"HOME": str(workdir)}))
        self._cleanup = contextlib.ExitStack()
        self._registries: dict[bool, LocalRegistry] = {}

    def run(self, spec: ContainerSpec) -> str:
        container_id = self.port.create_container(spec)
        self.port.start_container(spec.name)
        lines, then = self.scripts[spec.name]
        if then == "exit":
            self.wait_for_status(spec.name, "exited")
        else:
            self.wait_for_logs(spec.name, len(lines))
        return container_id

    def unreachable(self) -> DockerPort:
        # connect() itself would fail (it asks the engine for its API version): pin the version, as a client
        # whose engine went away after it connected.
        import docker as docker_module

        host = f"unix://{self.workdir / 'nobody-listens.sock'}"
        return DockerEngine(docker_module.DockerClient(base_url=host, version="1.41"), host=host)

    def _registry(self, *, auth: bool) -> LocalRegistry:
        if auth not in self._registries:
            password = "nvapi-test-" + uuid.uuid4().hex if auth else None
            registry = start_registry(self.workdir / f"registry-{'auth' if auth else 'open'}",
                                      username=NGC_USERNAME if auth else None, password=password)
            self._cleanup.callback(registry.stop)
            self._registries[auth] = registry
        return self._registries[auth]

    def publish(self) -> Published:
        registry = self._registry(auth=False)
        local = unique_tag("contract-src")
        image_id = build_busybox_image(self.client, local, {"/payload.bin": os.urandom(4096)})
        repo = f"team/{unique_name('app')}"
        digest = registry.push(self.client, local, repo, "1.0")
        self.client.images.remove(image_id, force=True)  # the registry has it, the engine does not
        return Published(f"{registry.host}/{repo}", "1.0", digest)

    def registry_login(self) -> Login:
        registry = self._registry(auth=True)
        assert registry.username is not None and registry.password is not None
        return Login(registry.host, registry.username, registry.password)

    def store_login(self, login: Login) -> None:
        config = self.workdir / ".docker" / "config.json"  # Settings.docker_config_path under HOME=workdir
        config.parent.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
        config.write_text(json.dumps({"auths": {login.registry: {"auth": auth}}}))

    def close(self) -> None:
        import docker as docker_module

        try:
            for container in self.client.containers.list(
                    all=True, filters={"label": f"io.nemoclaw.contract={self.labels['io.nemoclaw.contract']}"}):
                with contextlib.suppress(docker_module.errors.NotFound):
                    container.remove(force=True)
        finally:
            self._cleanup.close()
            super().close()


def contract_images(client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """Two distinct busybox images for the real world (the second carries one extra file)."""
    first, second = unique_tag("contract"), unique_tag("contract-other")
    build_busybox_image(client, first)
    build_busybox_image(client, second, {"/other.txt": "other\n"})
    yield first, second
