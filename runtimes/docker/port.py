"""The contracts of the Docker layer: what drivers and the orchestrator may ask of it.

``DockerPort`` is the seam around docker-py (implemented by ``runtimes/docker/adapter.py``, the only module that
imports docker-py; faked by ``tests/fakes/fake_docker.py`` in unit tests). ``ImageStore`` (digest-pinned pulls
with the watchdog, ``runtimes/transfer/image_pull.py``) and ``ContainerManager`` (managed containers: labels,
idempotence, locks, ``runtimes/docker/containers.py``) are built on it. Values crossing these seams are the frozen
dataclasses below.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol, runtime_checkable

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.events import EventSink
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec

# --- values --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PulledImage:
    """The outcome of ``ImageStore.ensure_image``."""

    ref: str  # what was asked for, e.g. 127.0.0.1:5000/team/img:1.0
    digest: str | None  # sha256:… of the platform manifest (or the single manifest); None when pulled by tag
    platform: str | None  # linux/amd64, linux/arm64
    pulled: bool  # False when the pinned digest was already present
    image_id: str | None = None  # the local image id (sha256:… of the config)
    #: A key typed at the login prompt and accepted by the registry; it supersedes the one from the environment.
    prompted_key: Secret | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.ref, "digest": self.digest, "platform": self.platform, "pulled": self.pulled,
                "image_id": self.image_id}


@dataclass(frozen=True)
class ContainerState:
    """``docker inspect`` State, reduced to what readiness and diagnostics need."""

    status: str  # created | running | restarting | paused | exited | dead | removing
    exit_code: int | None = None
    restart_count: int = 0
    oom_killed: bool = False
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    health: str | None = None  # healthy | unhealthy | starting | None (no healthcheck)

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ContainerInfo:
    """One container as the engine reports it (ours or not: ``labels`` tell)."""

    id: str
    name: str
    image: str
    labels: Mapping[str, str]
    state: ContainerState
    created: str | None = None
    ports: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # "8000/tcp" -> ((ip, port),)


@dataclass(frozen=True)
class StoredLogin:
    """A login the docker config holds for one registry (an ``auths`` entry, a ``credHelpers`` helper or the
    ``credsStore``), as docker-py's ``docker.auth`` resolves it.

    ``password`` is ``None`` when a login is there but cannot be read here (an identity token, a helper or store
    that did not answer): the engine may still pull with it, so it counts as "logged in".
    """

    username: str | None = None
    password: Secret | None = None

    @property
    def readable(self) -> bool:
        return bool(self.username and self.password)


@dataclass(frozen=True)
class RunOutcome:
    container: ContainerInfo
    action: Literal["started", "reused", "replaced", "restarted"]


# --- the seam around docker-py -------------------------------------------------------------------------------------


class DockerPort(Protocol):
    """Thin, typed wrapper over docker-py. Every docker-py error leaves it translated into our errors tree:
    engine unreachable / permission denied → DockerUnavailable; image missing → ImageNotFound; registry auth →
    RegistryAuthFailed; name conflict → NameTaken; container gone → NoSuchContainer."""

    def ping(self) -> None: ...

    def engine_info(self) -> Mapping[str, Any]: ...

    # images
    def image_inspect(self, ref: str) -> Mapping[str, Any] | None: ...  # None when absent

    def pull_stream(self, repository: str, reference: str, *, auth: Mapping[str, str] | None = None,
                    platform: str | None = None) -> PullStream: ...

    def tag_image(self, source_ref: str, target_ref: str) -> None: ...

    def login(self, registry: str, username: str, password: str) -> None: ...  # password: reveal() at call site only

    def stored_credentials(self, registry: str) -> StoredLogin | None: ...  # the docker config's login; None: none

    # containers
    def create_container(self, spec: ContainerSpec) -> str: ...  # returns the container id; spec.labels applied

    def start_container(self, name_or_id: str) -> None: ...

    def inspect_container(self, name_or_id: str) -> ContainerInfo | None: ...  # None when absent

    def list_containers(self, labels: Mapping[str, str | None], *, all: bool = True) -> list[ContainerInfo]: ...

    def container_logs(self, name_or_id: str, *, tail: int) -> list[str]: ...  # stdout+stderr, oldest first

    def follow_logs(self, name_or_id: str, *, tail: int) -> Iterator[str]: ...

    def container_pids(self, name_or_id: str) -> list[int]: ...  # `docker top`: host PIDs; [] when not running

    def stop_container(self, name_or_id: str, *, timeout: float = 10) -> None: ...

    def remove_container(self, name_or_id: str, *, force: bool = False) -> None: ...

    def exec_in_container(self, name_or_id: str, argv: Sequence[str]) -> tuple[int, str]: ...  # (exit code, output)

    def put_archive(self, name_or_id: str, path: str, data: bytes | IO[bytes]) -> None: ...  # a tar, unpacked at path

    def path_exists(self, name_or_id: str, path: str) -> bool: ...  # in the container's filesystem and mounts

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None: ...  # an existing one is left as is

    def remove_volume(self, name: str) -> bool: ...  # only one carrying our label; False: absent or not ours

    def close(self) -> None: ...


class PullStream(Protocol):
    """The decoded event stream of one pull. ``set_read_timeout`` bounds each blocking read (the watchdog's lever);
    ``abort`` ends the pull from another thread (the engine then cancels it and tags nothing)."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]: ...

    def set_read_timeout(self, seconds: float | None) -> None: ...

    def abort(self) -> None: ...


# --- services built on the seam ------------------------------------------------------------------------------------


class ImageStore(Protocol):
    def ensure_image(self, ref: str, *, events: EventSink, cancel: CancelToken) -> PulledImage:
        """Digest-pinned pull (host platform manifest), with progress events and the stall watchdog;
        no pull when the pinned digest is already present."""
        ...

    def image_present(self, ref: str) -> bool: ...


@runtime_checkable
class DigestResolver(Protocol):
    def resolve_digest(self, ref: str, *, events: EventSink) -> str | None:
        """This platform's manifest digest behind ``ref``, read from the registry without pulling."""
        ...


class ContainerManager(Protocol):
    def lock(self, name: str, *, events: EventSink = ...) -> AbstractContextManager[None]:
        """A per-name inter-process lock; released on any exit, SIGINT included."""
        ...

    def ensure_running(self, spec: ContainerSpec, *, events: EventSink) -> RunOutcome:
        """Same spec hash and running → reused; ours but different → replaced; ours and stopped with the same
        spec → restarted; absent → started. A container we do not own holding the name → NameTaken."""
        ...

    def get(self, name: str) -> ContainerInfo | None:
        """Our container by name; None when absent. A foreign container by that name → NameTaken."""
        ...

    def list_managed(self, runtime: str | None = None) -> list[ContainerInfo]: ...

    def state(self, name: str) -> ContainerState: ...

    def logs(self, name: str, *, tail: int = 80) -> list[str]: ...

    def stop(self, name: str, *, remove: bool = True) -> None:
        """Stop (and by default remove) our container; NoSuchContainer when absent or not ours (untouched)."""
        ...


__all__ = [
    "ContainerInfo", "ContainerManager", "ContainerState", "DigestResolver", "DockerPort", "ImageStore", "PullStream",
    "PulledImage", "RunOutcome", "StoredLogin",
]
