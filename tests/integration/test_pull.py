"""Digest-pinned pulls against a real registry (Debian's docker-registry) and the real engine.

Each test pushes its own image (busybox + one layer of random bytes) under a unique repository, removes it from
the engine, then pulls it back through ``DockerImageStore`` — directly, or through ``StallProxy`` to make the
registry stall or trickle. The busybox layers stay local (``busybox_base``), so only the random layer travels.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled, ImageNotFound, PullStalled
from nemoclaw_runtime.kernel.events import Event, Info, Progress
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine, connect
from nemoclaw_runtime.runtimes.transfer.image_pull import DockerImageStore
from tests.helpers.docker_env import unique_name
from tests.helpers.images import build_busybox_image, unique_tag
from tests.helpers.registry import LocalRegistry
from tests.helpers.stall_proxy import StallProxy

pytestmark = pytest.mark.docker


@dataclass
class Pushed:
    registry: LocalRegistry
    repo: str
    single_digest: str  # the pushed single-platform manifest (tag "1.0")
    index: dict[str, str]  # digests of the multi-arch index (tag "multi")

    def ref(self, tag: str, host: str | None = None) -> str:
        return f"{host or self.registry.host}/{self.repo}:{tag}"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    def __call__(self, event: Event) -> None:
        self.events.append((time.monotonic(), event))

    def of(self, kind: type) -> list[Event]:
        return [event for _, event in self.events if isinstance(event, kind)]


def push_random_image(client: docker.DockerClient, registry: LocalRegistry, size: int) -> Pushed:
    """Push busybox + ``size`` random bytes as ``<repo>:1.0`` and an index ``<repo>:multi``; keep nothing local."""
    local = unique_tag("pull-src")
    image_id = build_busybox_image(client, local, {"/payload.bin": os.urandom(size)})
    repo = f"team/{unique_name('img')}"
    digest = registry.push(client, local, repo, "1.0")
    index = registry.push_multiarch_index(repo, "multi", f"{repo}:1.0")
    client.images.remove(image_id, force=True)
    return Pushed(registry, repo, digest, index)


def settings_for(tmp_path: Path, **changes: float) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path)}).replace(**changes)


def remove_quietly(client: docker.DockerClient, *refs: str) -> None:
    for ref in refs:
        try:
            client.images.remove(ref, force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def engine(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[DockerEngine]:
    port = connect(settings_for(tmp_path))
    yield port
    port.close()


@pytest.fixture
def pushed(docker_client: docker.DockerClient, busybox_base: str, local_registry: LocalRegistry) -> Iterator[Pushed]:
    image = push_random_image(docker_client, local_registry, 150 * 1024)
    yield image
    remove_quietly(docker_client, image.ref("multi"), image.ref("1.0"))


def test_multiarch_index_pins_amd64_and_retags(docker_client: docker.DockerClient, engine: DockerEngine,
                                                pushed: Pushed, tmp_path: Path) -> None:
    store = DockerImageStore(engine, settings_for(tmp_path), arch="x86_64")
    ref = pushed.ref("multi")
    events = Recorder()

    first = store.ensure_image(ref, events=events)
    second = store.ensure_image(ref, events=events)

    assert first.digest == pushed.index["amd64"] != pushed.index["attestation"]
    assert (first.platform, first.pulled, second.pulled, second.digest) == ("linux/amd64", True, False, first.digest)
    tagged = docker_client.images.get(ref)
    assert tagged.id == first.image_id
    assert f"{pushed.registry.host}/{pushed.repo}@{pushed.index['amd64']}" in tagged.attrs["RepoDigests"]
    progress = events.of(Progress)
    assert progress and all(p.task == "image" and p.subject == ref for p in progress)  # type: ignore[attr-defined]
    assert progress[-1].items_total and progress[-1].done_bytes > 100 * 1024  # type: ignore[attr-defined]


def test_single_platform_image_pins_its_own_digest(engine: DockerEngine, pushed: Pushed, tmp_path: Path) -> None:
    store = DockerImageStore(engine, settings_for(tmp_path), arch="amd64")

    pulled = store.ensure_image(pushed.ref("1.0"))

    assert (pulled.digest, pulled.pulled, pulled.platform) == (pushed.single_digest, True, "linux/amd64")


def test_no_matching_platform_pulls_by_tag_and_says_so(engine: DockerEngine, pushed: Pushed, tmp_path: Path) -> None:
    store = DockerImageStore(engine, settings_for(tmp_path), arch="riscv64")
    events = Recorder()

    pulled = store.ensure_image(pushed.ref("multi"), events=events)

    assert pulled.digest is None and pulled.pulled
    assert f"No platform manifest resolved; pulling {pushed.ref('multi')} by tag." in [
        e.message for e in events.of(Info)]  # type: ignore[attr-defined]


def test_unknown_tag_is_image_not_found(engine: DockerEngine, pushed: Pushed, tmp_path: Path) -> None:
    store = DockerImageStore(engine, settings_for(tmp_path))

    with pytest.raises(ImageNotFound) as caught:
        store.ensure_image(pushed.ref("no-such-tag"))

    assert caught.value.exit_code == 4


def test_stalled_registry_raises_pull_stalled_within_the_window(
        docker_client: docker.DockerClient, engine: DockerEngine, busybox_base: str, local_registry: LocalRegistry,
        tmp_path: Path) -> None:
    image = push_random_image(docker_client, local_registry, 1024 * 1024)
    window = 3.0
    settings = settings_for(tmp_path, pull_stall_timeout=window, pull_quiet_timeout=60.0)
    events = Recorder()
    with StallProxy(local_registry.host, mode="stall", stall_after=64 * 1024) as proxy:
        ref = image.ref("multi", host=proxy.host)
        with pytest.raises(PullStalled) as caught:
            DockerImageStore(engine, settings).ensure_image(ref, events=events)
        raised_at = time.monotonic()
        assert proxy.stalled_blobs >= 1

    last_event_at = events.events[-1][0] if events.events else raised_at - window
    assert window - 0.5 <= raised_at - last_event_at <= window + 2.0
    error = caught.value
    assert error.exit_code == 4 and error.details["layers"]
    assert any(layer["status"] == "Downloading" for layer in error.details["layers"])
    assert "stalled" in error.message and "Downloading at " in error.message and "iB of " in error.message
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(ref)
    engine.ping()  # the aborted connection is gone; the adapter still works
    assert engine.image_inspect(ref) is None


def test_trickling_registry_is_slow_but_never_stalled(
        docker_client: docker.DockerClient, engine: DockerEngine, busybox_base: str, local_registry: LocalRegistry,
        tmp_path: Path) -> None:
    image = push_random_image(docker_client, local_registry, 100 * 1024)  # ~10 s at 10 KB/s
    window = 3.0  # shorter than the whole trickle, longer than the gap between the engine's progress reports
    settings = settings_for(tmp_path, pull_stall_timeout=window, pull_quiet_timeout=30.0)
    with StallProxy(local_registry.host, mode="trickle", trickle_bytes_per_s=10 * 1024) as proxy:
        ref = image.ref("multi", host=proxy.host)
        started = time.monotonic()
        try:
            pulled = DockerImageStore(engine, settings).ensure_image(ref)
            took = time.monotonic() - started
        finally:
            remove_quietly(docker_client, ref)

    assert pulled.pulled and pulled.digest == image.index["amd64"]
    assert took > window  # the trickle outlasted the stall window, and was not killed


def test_cancellation_aborts_the_pull_and_tags_nothing(
        docker_client: docker.DockerClient, engine: DockerEngine, busybox_base: str, local_registry: LocalRegistry,
        tmp_path: Path) -> None:
    image = push_random_image(docker_client, local_registry, 512 * 1024)
    cancel = CancelToken()
    settings = settings_for(tmp_path, pull_stall_timeout=60.0)
    with StallProxy(local_registry.host, mode="stall", stall_after=16 * 1024) as proxy:
        ref = image.ref("multi", host=proxy.host)
        timer = threading.Timer(1.5, cancel.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            DockerImageStore(engine, settings).ensure_image(ref, cancel=cancel)
        timer.cancel()

    assert time.monotonic() - started < 10
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(ref)
