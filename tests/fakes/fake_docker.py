"""``FakeDocker``: a hand-written, in-memory ``DockerPort`` for unit tests (no MagicMock).

It behaves like the engine where our code can tell the difference: containers have states, labels, logs and
published ports; names are unique (a clash raises ``NameTaken``); a missing image, container or pull target raises
the same errors the real adapter translates to; ``stop`` / ``remove`` / ``start`` change state the way the engine
does; a crash under a restart policy bumps ``restart_count``. Every call is recorded in ``calls`` so tests can
assert that an operation made no engine writes. Helpers (``add_image``, ``add_foreign_container``, ``emit_logs``,
``crash``, ``script_pull``) set up scenarios. Thread-safe: lock-contention tests drive it from several threads.
"""

from __future__ import annotations

import io
import itertools
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from nemoclaw_runtime.kernel.errors import (
    DockerUnavailable,
    ImageNotFound,
    NameTaken,
    NemoclawError,
    NoSuchContainer,
    RegistryAuthFailed,
)
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, ContainerState, StoredLogin
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, image_repository, split_reference

WRITE_CALLS = frozenset({"create_container", "start_container", "stop_container", "remove_container", "tag_image",
                         "pull_stream", "login", "exec_in_container", "put_archive",
                         "remove_volume", "create_volume"})
FOLLOW_MAX_WAIT_S = 10.0  # a follow never blocks a test longer than this
#: The remedy the adapter gives an engine error it has no special case for (adapter._ENGINE_ERROR).
_ENGINE_ERROR_REMEDY = "see the engine's explanation above; `docker info` shows the engine's state"


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    labels: dict[str, str]
    status: str = "created"
    exit_code: int | None = None
    restart_count: int = 0
    oom_killed: bool = False
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    health: str | None = None
    created: str = ""
    ports: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    restart_policy: str | None = None
    logs: list[str] = field(default_factory=list)
    spec: ContainerSpec | None = None  # what create_container received (None for containers made by helpers)
    pids: list[int] = field(default_factory=list)  # what container_pids (`docker top`) answers while running

    def info(self) -> ContainerInfo:
        state = ContainerState(status=self.status, exit_code=self.exit_code, restart_count=self.restart_count,
                               oom_killed=self.oom_killed, error=self.error, started_at=self.started_at,
                               finished_at=self.finished_at, health=self.health)
        return ContainerInfo(id=self.id, name=self.name, image=self.image, labels=dict(self.labels), state=state,
                             created=self.created, ports=dict(self.ports))


class FakePullStream:
    """Replays scripted pull events; ``abort`` ends it early, like the real stream when the watchdog fires."""

    def __init__(self, events: Sequence[Mapping[str, Any]], on_complete: Any) -> None:
        self._events = list(events)
        self._on_complete = on_complete
        self.read_timeouts: list[float | None] = []
        self.aborted = False

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for event in self._events:
            if self.aborted:
                return
            yield dict(event)
        if not self.aborted and not any("error" in e for e in self._events):
            self._on_complete()

    def set_read_timeout(self, seconds: float | None) -> None:
        self.read_timeouts.append(seconds)

    def abort(self) -> None:
        self.aborted = True


class FakeDocker:
    """An in-memory engine implementing ``DockerPort``."""

    def __init__(self) -> None:
        self._guard = threading.RLock()
        self._changed = threading.Condition(self._guard)
        self._seconds = itertools.count()
        self.containers: dict[str, FakeContainer] = {}  # by id
        self.images: dict[str, dict[str, Any]] = {}  # by image id
        self.calls: list[tuple[str, str]] = []  # (method, subject)
        self.engine_up = True
        self.valid_logins: dict[str, tuple[str, str]] | None = None  # registry -> (user, password); None accepts all
        self.logins: list[tuple[str, str]] = []  # (registry, username): never the password
        self.stored_logins: dict[str, StoredLogin] = {}  # registry -> what the docker config holds for it
        self.start_failures: dict[str, Exception] = {}  # container name -> raised by its next start
        self._pulls: dict[tuple[str, str], tuple[list[Mapping[str, Any]], str | None]] = {}
        self.closed = False
        #: ``exec_in_container`` answers by the argv's first word: (exit code, output), or a callable of the container
        self.exec_answers: dict[str, Any] = {}
        #: paths ``put_archive`` unpacked, by volume (``volume:NAME``) or container (``container:ID``)
        self.files: dict[str, set[str]] = {}
        self.volumes: dict[str, dict[str, str]] = {}  # made by create_volume: name -> labels

    # --- bookkeeping ---------------------------------------------------------------------------------------------

    def _record(self, method: str, subject: str = "") -> None:
        if not self.engine_up:
            raise DockerUnavailable("Cannot connect to the Docker engine (fake engine is down)")
        self.calls.append((method, subject))

    @property
    def write_calls(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in WRITE_CALLS]

    def _timestamp(self) -> str:
        minutes, seconds = divmod(next(self._seconds), 60)
        return f"2026-01-01T00:{minutes % 60:02d}:{seconds:02d}.000000000Z"

    def _find(self, name_or_id: str) -> FakeContainer | None:
        key = name_or_id.lstrip("/")
        for c in self.containers.values():
            if c.name == key or c.id == key:
                return c
        by_prefix = [c for c in self.containers.values() if len(key) >= 3 and c.id.startswith(key)]
        return by_prefix[0] if len(by_prefix) == 1 else None

    def _get(self, name_or_id: str) -> FakeContainer:
        found = self._find(name_or_id)
        if found is None:
            raise NoSuchContainer(f"No such container: {name_or_id}")
        return found

    # --- engine ----------------------------------------------------------------------------------------------------

    def ping(self) -> None:
        with self._guard:
            self._record("ping")

    def engine_info(self) -> Mapping[str, Any]:
        with self._guard:
            self._record("engine_info")
            return {"ServerVersion": "fake", "OSType": "linux", "Architecture": "x86_64", "NCPU": 2}

    def close(self) -> None:
        self.closed = True

    # --- images ----------------------------------------------------------------------------------------------------

    def add_image(self, ref: str, *, digest: str | None = None, image_id: str | None = None) -> str:
        """Make ``ref`` (and ``repo@digest`` when given) present; returns the image id."""
        with self._guard:
            image_id = image_id or "sha256:" + uuid.uuid4().hex * 2
            attrs = self.images.setdefault(image_id, {"Id": image_id, "RepoTags": [], "RepoDigests": [],
                                                      "Architecture": "amd64", "Os": "linux"})
            if "@" not in ref and ref not in attrs["RepoTags"]:
                attrs["RepoTags"].append(ref)
            if digest:
                attrs["RepoDigests"].append(f"{image_repository(ref)}@{digest}")
            return image_id

    def _find_image(self, ref: str) -> dict[str, Any] | None:
        for attrs in self.images.values():
            if ref == attrs["Id"] or ref in attrs["RepoTags"] or ref in attrs["RepoDigests"]:
                return attrs
            if ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref and f"{ref}:latest" in attrs["RepoTags"]:
                return attrs
        return None

    def image_inspect(self, ref: str) -> Mapping[str, Any] | None:
        with self._guard:
            self._record("image_inspect", ref)
            attrs = self._find_image(ref)
            return None if attrs is None else {k: (list(v) if isinstance(v, list) else v) for k, v in attrs.items()}

    def script_pull(self, repository: str, reference: str, events: Sequence[Mapping[str, Any]], *,
                    digest: str | None = None) -> None:
        """The next ``pull_stream(repository, reference)`` replays ``events``; on success the image appears."""
        self._pulls[(repository, reference)] = (list(events), digest)

    def pull_stream(self, repository: str, reference: str, *, auth: Mapping[str, str] | None = None,
                    platform: str | None = None) -> FakePullStream:
        with self._guard:
            self._record("pull_stream", f"{repository}:{reference}")
            scripted = self._pulls.get((repository, reference))
            if scripted is None:
                raise ImageNotFound(f"manifest for {repository}:{reference} not found")
            events, digest = scripted

            def complete() -> None:
                if reference.startswith("sha256:"):
                    self.add_image(f"{repository}@{reference}", digest=reference)
                else:
                    self.add_image(f"{repository}:{reference}", digest=digest)

            return FakePullStream(events, complete)

    def tag_image(self, source_ref: str, target_ref: str) -> None:
        with self._guard:
            self._record("tag_image", f"{source_ref} {target_ref}")
            attrs = self._find_image(source_ref)
            if attrs is None:
                raise ImageNotFound(f"No such image: {source_ref}")
            repository, tag = split_reference(target_ref)
            target = f"{repository}:{tag}"
            for other in self.images.values():  # the engine moves a name; it never sits on two images
                if other is not attrs and target in other["RepoTags"]:
                    other["RepoTags"].remove(target)
            if target not in attrs["RepoTags"]:
                attrs["RepoTags"].append(target)

    def login(self, registry: str, username: str, password: str) -> None:
        with self._guard:
            self._record("login", registry)
            if self.valid_logins is not None and self.valid_logins.get(registry) != (username, password):
                raise RegistryAuthFailed(f"login to {registry} failed: unauthorized")
            self.logins.append((registry, username))

    def stored_credentials(self, registry: str) -> StoredLogin | None:
        """The docker config's login (set up through ``stored_logins``); like the adapter, no engine call."""
        with self._guard:
            return self.stored_logins.get(registry)

    # --- containers ------------------------------------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        with self._guard:
            self._record("create_container", spec.name)
            if self._find_image(spec.image_ref) is None:
                raise ImageNotFound(f"No such image: {spec.image_ref}")
            holder = self._find(spec.name)
            if holder is not None and holder.name == spec.name:
                raise NameTaken(f'Conflict. The container name "/{spec.name}" is already in use by container '
                                f'"{holder.id}"')
            ports: dict[str, tuple[tuple[str, int], ...]] = {
                f"{p.container_port}/{p.protocol}": ((p.host_ip, p.host_port),) for p in spec.ports}
            container = FakeContainer(id=uuid.uuid4().hex + uuid.uuid4().hex, name=spec.name, image=spec.image_ref,
                                      labels=dict(spec.labels), created=self._timestamp(), ports=ports,
                                      exit_code=0, restart_policy=spec.restart_policy, spec=spec)
            self.containers[container.id] = container
            return container.id

    def add_foreign_container(self, name: str, *, image: str = "busybox:latest", status: str = "running",
                              labels: Mapping[str, str] | None = None) -> str:
        """A container someone else made (no labels of ours unless given)."""
        with self._guard:
            container = FakeContainer(id=uuid.uuid4().hex + uuid.uuid4().hex, name=name, image=image,
                                      labels=dict(labels or {}), status=status, created=self._timestamp())
            self.containers[container.id] = container
            return container.id

    def start_container(self, name_or_id: str) -> None:
        with self._guard:
            self._record("start_container", name_or_id)
            container = self._get(name_or_id)
            error = self.start_failures.pop(container.name, None)
            if error is not None:
                raise error
            if container.status == "running":
                return
            self._check_ports_free(container)
            container.status, container.exit_code, container.started_at = "running", 0, self._timestamp()
            container.finished_at = None
            self._changed.notify_all()

    def _check_ports_free(self, container: FakeContainer) -> None:
        wanted = {b for bindings in container.ports.values() for b in bindings}
        for other in self.containers.values():
            if other is container or other.status != "running":
                continue
            taken = wanted & {b for bindings in other.ports.values() for b in bindings}
            if taken:
                ip, port = min(taken)
                # The engine answers 500 and records the failure on the container, which stays "created";
                # the adapter has no special case for it (tests/contract pins this).
                text = (f"driver failed programming external connectivity on endpoint {container.name} "
                        f"({uuid.uuid4().hex * 2}): Bind for {ip}:{port} failed: port is already allocated")
                container.exit_code, container.error = 128, text
                raise NemoclawError(f"Docker engine error while starting a container: {text}",
                                    remedy=_ENGINE_ERROR_REMEDY, details={"status": 500})

    def inspect_container(self, name_or_id: str) -> ContainerInfo | None:
        with self._guard:
            self._record("inspect_container", name_or_id)
            found = self._find(name_or_id)
            return None if found is None else found.info()

    def list_containers(self, labels: Mapping[str, str | None], *, all: bool = True) -> list[ContainerInfo]:
        with self._guard:
            self._record("list_containers", ",".join(f"{k}={v}" for k, v in labels.items()))
            return [c.info() for c in self.containers.values()
                    if (all or c.status == "running") and _labels_match(c.labels, labels)]

    def container_logs(self, name_or_id: str, *, tail: int) -> list[str]:
        with self._guard:
            self._record("container_logs", name_or_id)
            lines = self._get(name_or_id).logs
            return list(lines[-tail:]) if tail > 0 else []

    def follow_logs(self, name_or_id: str, *, tail: int) -> Iterator[str]:
        with self._guard:
            self._record("follow_logs", name_or_id)
            container = self._get(name_or_id)
            start = max(len(container.logs) - tail, 0) if tail > 0 else len(container.logs)
        return self._follow(container, start)

    def _follow(self, container: FakeContainer, position: int) -> Iterator[str]:
        deadline = time.monotonic() + FOLLOW_MAX_WAIT_S
        while True:
            with self._changed:
                while (position >= len(container.logs) and container.status == "running"
                       and time.monotonic() < deadline):
                    self._changed.wait(0.05)
                batch = container.logs[position:]
                position += len(batch)
                finished = container.status != "running" or time.monotonic() >= deadline
            yield from batch
            if finished and position >= len(container.logs):
                return

    def container_pids(self, name_or_id: str) -> list[int]:
        with self._guard:
            self._record("container_pids", name_or_id)
            container = self._get(name_or_id)
            return list(container.pids) if container.status == "running" else []

    def stop_container(self, name_or_id: str, *, timeout: float = 10) -> None:
        with self._guard:
            self._record("stop_container", name_or_id)
            container = self._get(name_or_id)
            if container.status in ("running", "restarting", "paused"):
                container.status, container.exit_code, container.finished_at = "exited", 143, self._timestamp()
                self._changed.notify_all()

    def remove_container(self, name_or_id: str, *, force: bool = False) -> None:
        with self._guard:
            self._record("remove_container", name_or_id)
            container = self._get(name_or_id)
            if container.status in ("running", "restarting", "paused") and not force:
                # The engine answers 409 Conflict; the adapter's translation is a plain NemoclawError (exit 1).
                raise NemoclawError(f"Docker engine error while removing a container: You cannot remove a running "
                                    f"container {container.id}. Stop the container before attempting removal or "
                                    "force remove", remedy=_ENGINE_ERROR_REMEDY, details={"status": 409})
            container.status = "removing"
            del self.containers[container.id]
            self._changed.notify_all()

    def exec_in_container(self, name_or_id: str, argv: Sequence[str]) -> tuple[int, str]:
        """Answers from ``exec_answers`` (keyed by the argv's first word; a callable gets the container); a
        container that is not running is a 409 as from the engine."""
        with self._guard:
            self._record("exec_in_container", name_or_id)
            container = self._get(name_or_id)
            if container.status != "running":
                raise NemoclawError(f"Docker engine error while running a command in a container: Container "
                                    f"{container.id} is not running", remedy=_ENGINE_ERROR_REMEDY,
                                    details={"status": 409})
            answer = self.exec_answers.get(argv[0] if argv else "", (127, f"exec: {argv[:1]}: not found"))
            return answer(container) if callable(answer) else answer

    def put_archive(self, name_or_id: str, path: str, data: bytes | IO[bytes]) -> None:
        with self._guard:
            self._record("put_archive", name_or_id)
            container = self._get(name_or_id)
            blob = data if isinstance(data, bytes) else data.read()
            try:
                with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
                    names = archive.getnames()
            except tarfile.TarError as exc:  # the engine answers 500 for a cut or garbled tar
                raise NemoclawError(f"Docker engine error while copying files into a container: {exc}",
                                    remedy=_ENGINE_ERROR_REMEDY, details={"status": 500}) from None
            volume = self._volume_of(container, path)
            for name in names:
                self.files.setdefault(volume, set()).add(f"{path.rstrip('/')}/{name}".replace("//", "/"))

    def path_exists(self, name_or_id: str, path: str) -> bool:
        with self._guard:
            self._record("path_exists", name_or_id)
            container = self._get(name_or_id)
            return path.rstrip("/") in self.files.get(self._volume_of(container, path), set())

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with self._guard:
            self._record("create_volume", name)
            self.volumes.setdefault(name, dict(labels))

    def remove_volume(self, name: str) -> bool:
        with self._guard:
            self._record("remove_volume", name)
            labels = self.volumes.get(name)
            if labels is None and f"volume:{name}" in self.files:
                labels = {}  # made by a mount: no labels
            if labels is None or labels.get("io.nemoclaw.runtime.managed") != "true":
                return False
            self.volumes.pop(name, None)
            self.files.pop(f"volume:{name}", None)
            return True

    @staticmethod
    def _volume_of(container: FakeContainer, path: str) -> str:
        """Files under a named volume's mount outlive the container (kept by volume name), others by container."""
        for mount in container.spec.mounts if container.spec else ():
            if mount.kind == "volume" and path.startswith(mount.target):
                return f"volume:{mount.source}"
        return f"container:{container.id}"

    # --- scenario helpers ------------------------------------------------------------------------------------------

    def emit_logs(self, name_or_id: str, *lines: str) -> None:
        with self._changed:
            self._get(name_or_id).logs.extend(lines)
            self._changed.notify_all()

    def crash(self, name_or_id: str, *, exit_code: int = 1, oom: bool = False) -> None:
        """The main process died. Under a restart policy the engine restarts it and counts the restart."""
        with self._changed:
            container = self._get(name_or_id)
            container.exit_code, container.oom_killed, container.finished_at = exit_code, oom, self._timestamp()
            if container.restart_policy in ("always", "unless-stopped", "on-failure"):
                container.restart_count += 1
                container.status = "restarting"
            else:
                container.status = "exited"
            self._changed.notify_all()

    def set_state(self, name_or_id: str, status: str, *, health: str | None = None) -> None:
        with self._changed:
            container = self._get(name_or_id)
            container.status, container.health = status, health
            self._changed.notify_all()

    def fail_next_start(self, name: str, error: Exception) -> None:
        """The next ``start_container`` of the container called ``name`` (created later, perhaps) raises ``error``."""
        with self._guard:
            self.start_failures[name] = error


def _labels_match(have: Mapping[str, str], want: Mapping[str, str | None]) -> bool:
    return all(key in have and (value is None or have[key] == value) for key, value in want.items())
