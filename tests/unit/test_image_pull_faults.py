"""DockerImageStore on FakeDocker under faults: the engine restarting mid-pull, and too little disk for the layers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.kernel.errors import DockerUnavailable, DownloadFailed, InsufficientResources
from nemoclaw_runtime.kernel.events import Event, Info, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.units import GIB, MIB
from nemoclaw_runtime.runtimes.docker.manifests import ImageRef, ManifestResolution
from nemoclaw_runtime.runtimes.transfer import image_pull
from nemoclaw_runtime.runtimes.transfer.image_pull import ENGINE_RETURN_WAIT_S, DockerImageStore
from tests.fakes.clock import FakeClock
from tests.fakes.fake_docker import FakeDocker, FakePullStream

REF = "127.0.0.1:5000/team/img:1.0"
REPO = "127.0.0.1:5000/team/img"
AMD = "sha256:" + "a" * 64
EVENTS = [{"status": "Pulling fs layer", "id": "l1"}, {"status": "Pull complete", "id": "l1"}]


def resolver(size: int | None = None) -> Any:
    def resolve(ref: ImageRef, **kw: Any) -> ManifestResolution:
        return ManifestResolution(AMD, "linux/amd64", from_index=True, size_bytes=size)
    return resolve


def store(fake: FakeDocker, tmp_path: Path, size: int | None = None, **env: str) -> DockerImageStore:
    return DockerImageStore(fake, Settings.from_env({"HOME": str(tmp_path), **env}), clock=FakeClock(0.0),
                            arch="x86_64", resolve=resolver(size))


class _BrokenStream(FakePullStream):
    """Yields the first event, then breaks as the real stream does when the engine goes away."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        yield dict(self._events[0])
        raise DownloadFailed("The pull stream broke: connection reset", details={"transient": True})


class RestartingDocker(FakeDocker):
    """An engine that goes away during the first pull and answers again after ``down_for`` pings (or never)."""

    def __init__(self, down_for: int | None) -> None:
        super().__init__()
        self.down_for = down_for
        self.down = False
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.down and (self.down_for is None or self.pings <= self.down_for):
            raise DockerUnavailable("Cannot reach the Docker engine: connection refused")
        self.down = False

    def pull_stream(self, repository: str, reference: str, **kw: Any) -> FakePullStream:
        if self.down:
            raise DockerUnavailable("Cannot reach the Docker engine: connection refused")
        stream = super().pull_stream(repository, reference, **kw)
        if not [c for c in self.calls if c[0] == "pull_stream"][1:]:  # the first pull: the engine goes away
            self.down = True
            return _BrokenStream(EVENTS, None)
        return stream


def test_an_engine_restarted_mid_pull_is_waited_for_and_the_pull_resumes(tmp_path: Path) -> None:
    fake = RestartingDocker(down_for=3)
    fake.script_pull(REPO, AMD, EVENTS)
    events: list[Event] = []

    pulled = store(fake, tmp_path).ensure_image(REF, events=events.append)

    assert pulled.pulled and pulled.digest == AMD
    assert len([c for c in fake.calls if c[0] == "pull_stream"]) == 2
    waits = [e for e in events if isinstance(e, Warning) and "stopped answering" in e.message]
    assert len(waits) == 1 and "60 s" in waits[0].message
    assert any(isinstance(e, Info) and "is back" in e.message for e in events)


def test_an_engine_that_does_not_come_back_is_exit_3_after_the_bounded_wait(tmp_path: Path) -> None:
    fake = RestartingDocker(down_for=None)
    fake.script_pull(REPO, AMD, EVENTS)
    s = store(fake, tmp_path)
    started = s.clock.monotonic()

    with pytest.raises(DockerUnavailable) as caught:
        s.ensure_image(REF)

    assert caught.value.exit_code == 3 and "did not come back within 60 s" in caught.value.message
    assert ENGINE_RETURN_WAIT_S <= s.clock.monotonic() - started <= ENGINE_RETURN_WAIT_S + 15
    assert fake.image_inspect(REF) is None  # nothing tagged


def test_an_engine_missing_before_the_pull_is_exit_3_at_once(tmp_path: Path) -> None:
    fake = RestartingDocker(down_for=None)
    fake.down = True
    s = store(fake, tmp_path)

    with pytest.raises(DockerUnavailable):
        s.ensure_image(REF)
    assert s.clock.monotonic() == 0.0  # no wait


class RootedDocker(FakeDocker):
    def engine_info(self) -> Mapping[str, Any]:
        return {**super().engine_info(), "DockerRootDir": "/var/lib/docker"}


def test_layers_larger_than_the_free_space_are_refused_before_pulling(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RootedDocker()
    fake.script_pull(REPO, AMD, EVENTS)
    monkeypatch.setattr(image_pull, "data_root_free_bytes", lambda path: 512 * MIB)

    with pytest.raises(InsufficientResources) as caught:
        store(fake, tmp_path, size=3 * GIB).ensure_image(REF)

    assert caught.value.exit_code == 3
    assert "3.0 GiB" in caught.value.message and "512 MiB" in caught.value.message
    assert "/var/lib/docker" in caught.value.message
    assert not [c for c in fake.calls if c[0] == "pull_stream"]


def test_layers_that_fit_are_pulled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RootedDocker()
    fake.script_pull(REPO, AMD, EVENTS)
    monkeypatch.setattr(image_pull, "data_root_free_bytes", lambda path: 10 * GIB)

    assert store(fake, tmp_path, size=3 * GIB).ensure_image(REF).pulled


def test_a_remote_engine_skips_the_disk_check_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RootedDocker()
    fake.script_pull(REPO, AMD, EVENTS)
    monkeypatch.setattr(image_pull, "data_root_free_bytes", lambda path: 0)
    events: list[Event] = []

    s = store(fake, tmp_path, size=3 * GIB, DOCKER_HOST="tcp://gpu-box.example:2376")
    assert s.ensure_image(REF, events=events.append).pulled
    assert any(isinstance(e, Info) and "remote" in e.message for e in events)
