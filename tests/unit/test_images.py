"""DockerImageStore on FakeDocker: pinning, retag, presence, fallbacks, progress, stall, cancellation, logins."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    DownloadFailed,
    ImageNotFound,
    MissingToken,
    PullStalled,
    RegistryAuthFailed,
)
from nemoclaw_runtime.kernel.events import Event, Info, Progress, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.manifests import BasicCredentials, ImageRef, ManifestResolution
from nemoclaw_runtime.runtimes.docker.port import StoredLogin
from nemoclaw_runtime.runtimes.transfer.image_pull import DockerImageStore
from tests.fakes.clock import FakeClock
from tests.fakes.fake_docker import FakeDocker

REF = "127.0.0.1:5000/team/img:1.0"
REPO = "127.0.0.1:5000/team/img"
AMD = "sha256:" + "a" * 64
KEY = "nvapi-unit-key-000111222"


class Resolver:
    """Stands in for the registry's manifest API: a fixed answer, or an error; records the credentials."""

    def __init__(self, answer: ManifestResolution | None | Exception = None) -> None:
        self.answers: list[ManifestResolution | None | Exception] = [answer]
        self.calls: list[BasicCredentials | None] = []

    def __call__(self, ref: ImageRef, *, arch: str, credentials: BasicCredentials | None = None,
                 **kw: Any) -> ManifestResolution | None:
        self.calls.append(credentials)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def pinned() -> Resolver:
    return Resolver(ManifestResolution(AMD, "linux/amd64", from_index=True))


def layer(status: str, layer_id: str = "l1", current: int | None = None, total: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"status": status, "id": layer_id}
    if current is not None:
        event["progressDetail"] = {"current": current, "total": total}
    return event


PULL_EVENTS = [
    {"status": "Pulling from team/img", "id": AMD},
    layer("Pulling fs layer"), layer("Already exists", "l0"),
    layer("Downloading", current=500, total=1000), layer("Downloading", current=1000, total=1000),
    layer("Download complete"), layer("Extracting", current=1000, total=1000), layer("Pull complete"),
    {"status": f"Digest: {AMD}"},
]


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path), **env})


def store(fake: FakeDocker, tmp_path: Path, resolver: Resolver, clock: Any = None, **env: str) -> DockerImageStore:
    return DockerImageStore(fake, settings(tmp_path, **env), clock=clock or FakeClock(0.0), arch="x86_64",
                            resolve=resolver)


def test_pull_pins_the_platform_digest_then_tags_back(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.script_pull(REPO, AMD, PULL_EVENTS)
    events: list[Event] = []

    pulled = store(fake, tmp_path, pinned()).ensure_image(REF, events=events.append)

    assert (pulled.ref, pulled.digest, pulled.platform, pulled.pulled) == (REF, AMD, "linux/amd64", True)
    assert ("pull_stream", f"{REPO}:{AMD}") in fake.calls
    assert ("tag_image", f"{REPO}@{AMD} {REF}") in fake.calls
    assert fake.image_inspect(REF) is not None and pulled.image_id == fake.image_inspect(REF)["Id"]  # type: ignore
    final = [e for e in events if isinstance(e, Progress)][-1]
    assert (final.task, final.subject, final.done_bytes, final.total_bytes) == ("image", REF, 1000, 1000)
    assert (final.items_done, final.items_total) == (2, 2)


def test_present_with_the_pinned_digest_means_no_pull(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.add_image(f"{REPO}@{AMD}", digest=AMD)

    pulled = store(fake, tmp_path, pinned()).ensure_image(REF)

    assert pulled.pulled is False and pulled.digest == AMD
    assert not [c for c in fake.calls if c[0] == "pull_stream"]
    assert fake.image_inspect(REF) is not None  # the tag points at the pinned image


def test_no_platform_manifest_pulls_by_tag_and_says_so(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.script_pull(REPO, "1.0", PULL_EVENTS)
    events: list[Event] = []

    pulled = store(fake, tmp_path, Resolver(None)).ensure_image(REF, events=events.append)

    assert pulled.digest is None and pulled.pulled is True
    assert Info(f"No platform manifest resolved; pulling {REF} by tag.") in events
    assert ("pull_stream", f"{REPO}:1.0") in fake.calls


def test_a_failing_manifest_api_is_an_error_not_a_silent_tag_pull(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.script_pull(REPO, "1.0", PULL_EVENTS)
    down = DownloadFailed("The registry kept answering HTTP 503", details={"transient": True})

    with pytest.raises(DownloadFailed) as caught:
        store(fake, tmp_path, Resolver(down)).ensure_image(REF)

    assert caught.value is down and caught.value.exit_code == 4
    assert not [c for c in fake.calls if c[0] == "pull_stream"]


def test_a_registry_without_an_index_falls_back_to_the_tag_and_says_so(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.script_pull(REPO, "1.0", PULL_EVENTS)
    no_index = DownloadFailed("The registry serves no image index for it (HTTP 415)", details={"no_index": True})
    events: list[Event] = []

    assert store(fake, tmp_path, Resolver(no_index)).ensure_image(REF, events=events.append).digest is None
    warnings = [e for e in events if isinstance(e, Warning)]
    assert len(warnings) == 1 and "by tag, without a pinned digest" in warnings[0].message
    assert "_" not in warnings[0].message.split(";")[0]  # no internal class names


def test_unknown_image_is_image_not_found_before_any_pull(tmp_path: Path) -> None:
    fake = FakeDocker()
    with pytest.raises(ImageNotFound):
        store(fake, tmp_path, Resolver(ImageNotFound("no such tag"))).ensure_image(REF)
    assert not [c for c in fake.calls if c[0] == "pull_stream"]


def test_error_events_inside_the_stream_are_raised(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.script_pull(REPO, AMD, [layer("Pulling fs layer"), {"error": "unauthorized: authentication required",
                                                             "errorDetail": {"message": "unauthorized"}}])
    with pytest.raises(RegistryAuthFailed) as caught:
        store(fake, tmp_path, pinned()).ensure_image(REF)
    assert "NGC_API_KEY" in (caught.value.remedy or "")  # no credentials were used: say what fixes it
    assert not [c for c in fake.calls if c[0] == "tag_image"]


class TimedStream:
    """Pull events at fake-clock times; abort() ends it (like the real stream)."""

    def __init__(self, clock: FakeClock, events: Sequence[tuple[float, Mapping[str, Any]]]) -> None:
        self.clock, self.events, self.aborted = clock, events, False

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for at, event in self.events:
            if self.aborted:
                return
            self.clock.now = at
            yield event

    def set_read_timeout(self, seconds: float | None) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


class Completing:
    """Wraps a scripted stream: when it runs to its end un-aborted, the pinned image appears (as in the engine)."""

    def __init__(self, stream: Any, on_done: Any) -> None:
        self.stream, self.on_done = stream, on_done

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        yield from self.stream
        if not getattr(self.stream, "aborted", False) and not getattr(self.stream, "released", None):
            self.on_done()

    def set_read_timeout(self, seconds: float | None) -> None:
        self.stream.set_read_timeout(seconds)

    def abort(self) -> None:
        self.stream.abort()


class StreamPort(FakeDocker):
    """FakeDocker whose pulls replay the given streams (or raise the given errors), one per call."""

    def __init__(self, streams: list[Any]) -> None:
        super().__init__()
        self.streams = streams
        self.last_auth: Mapping[str, str] | None = None

    def pull_stream(self, repository: str, reference: str, *, auth: Mapping[str, str] | None = None,
                    platform: str | None = None) -> Any:
        self.calls.append(("pull_stream", f"{repository}:{reference}"))
        self.last_auth = auth
        stream = self.streams.pop(0)
        if isinstance(stream, Exception):
            raise stream
        return Completing(stream, lambda: self.add_image(f"{repository}@{reference}", digest=reference))


def test_events_without_progress_past_the_window_are_a_stall(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    stream = TimedStream(clock, [(0, layer("Pulling fs layer")), (1, layer("Downloading", current=10, total=99)),
                                 (200, layer("Downloading", current=10, total=99))])
    port = StreamPort([stream])

    with pytest.raises(PullStalled) as caught:
        store(port, tmp_path, pinned(), clock=clock).ensure_image(REF)

    assert stream.aborted and caught.value.details["layers"][0]["current"] == 10
    assert not [c for c in port.calls if c[0] == "tag_image"]


def test_silent_extraction_tail_within_the_quiet_window_completes(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    stream = TimedStream(clock, [(0, layer("Pulling fs layer")), (1, layer("Downloading", current=99, total=99)),
                                 (2, layer("Download complete")), (3, layer("Extracting", current=1, total=99)),
                                 (700, layer("Pull complete"))])
    port = StreamPort([stream])

    pulled = store(port, tmp_path, pinned(), clock=clock).ensure_image(REF)

    assert pulled.pulled is True and not stream.aborted
    assert ("tag_image", f"{REPO}@{AMD} {REF}") in port.calls


class BlockingStream:
    """Sends a little, then blocks (in real time) until aborted — the wedged registry."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.read_timeout: float | None = None

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        yield layer("Pulling fs layer")
        yield layer("Downloading", current=64, total=4096)
        self.released.wait(30)

    def set_read_timeout(self, seconds: float | None) -> None:
        self.read_timeout = seconds

    def abort(self) -> None:
        self.released.set()


def test_a_blocked_stream_is_aborted_by_the_watch_thread_within_the_window(tmp_path: Path) -> None:
    stream = BlockingStream()
    port = StreamPort([stream])
    quick = DockerImageStore(port, settings(tmp_path).replace(pull_stall_timeout=0.5, pull_quiet_timeout=5),
                             clock=SystemClock(), arch="amd64", resolve=pinned())
    started = time.monotonic()

    with pytest.raises(PullStalled):
        quick.ensure_image(REF)

    assert 0.4 <= time.monotonic() - started < 3
    assert stream.released.is_set() and stream.read_timeout == pytest.approx(10)


def test_cancellation_aborts_a_blocked_stream(tmp_path: Path) -> None:
    stream = BlockingStream()
    port = StreamPort([stream])
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()

    with pytest.raises(Cancelled):
        DockerImageStore(port, settings(tmp_path), clock=SystemClock(), arch="amd64",
                         resolve=pinned()).ensure_image(REF, cancel=cancel)

    assert stream.released.is_set()


def test_transient_pull_start_failures_are_retried_bounded(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    flaky = DownloadFailed("503 Service Unavailable", details={"transient": True})
    ok = TimedStream(clock, [(0, layer("Pulling fs layer")), (1, layer("Pull complete"))])
    port = StreamPort([flaky, flaky, ok])

    store(port, tmp_path, pinned(), clock=clock).ensure_image(REF)

    assert len([c for c in port.calls if c[0] == "pull_stream"]) == 3


def test_transient_failures_give_up_after_three_attempts(tmp_path: Path) -> None:
    flaky = DownloadFailed("503 Service Unavailable", details={"transient": True})
    port = StreamPort([flaky, flaky, flaky, flaky])
    with pytest.raises(DownloadFailed):
        store(port, tmp_path, pinned()).ensure_image(REF)
    assert len([c for c in port.calls if c[0] == "pull_stream"]) == 3


def test_auth_errors_are_never_retried(tmp_path: Path) -> None:
    port = StreamPort([RegistryAuthFailed("unauthorized"), RegistryAuthFailed("unauthorized")])
    with pytest.raises(RegistryAuthFailed):
        store(port, tmp_path, pinned()).ensure_image(REF)
    assert len([c for c in port.calls if c[0] == "pull_stream"]) == 1


def test_a_registry_wanting_a_login_gets_the_checked_ngc_key(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    port = StreamPort([TimedStream(clock, [(0, layer("Pull complete"))])])
    port.valid_logins = {"127.0.0.1:5000": ("$oauthtoken", KEY)}
    resolver = pinned()
    resolver.answers = [RegistryAuthFailed("401", details={"anonymous": True}),
                        ManifestResolution(AMD, "linux/amd64", True)]

    store(port, tmp_path, resolver, clock=clock, NGC_API_KEY=KEY).ensure_image(REF)

    assert resolver.calls[0] is None and resolver.calls[1] is not None
    assert resolver.calls[1].username == "$oauthtoken"
    assert port.logins == [("127.0.0.1:5000", "$oauthtoken")]
    assert port.last_auth is not None and port.last_auth["username"] == "$oauthtoken"


def test_nvcr_without_any_login_is_refused_before_the_registry_is_asked(tmp_path: Path) -> None:
    resolver = pinned()
    with pytest.raises(MissingToken) as caught:
        store(FakeDocker(), tmp_path, resolver).ensure_image("nvcr.io/nvidia/vllm:26.05.post1-py3")
    assert resolver.calls == []
    assert "docker login nvcr.io -u '$oauthtoken' --password-stdin" in (caught.value.remedy or "")


def test_a_docker_login_we_cannot_read_lets_the_engine_pull_by_tag(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.stored_logins["nvcr.io"] = StoredLogin()  # logged in, through a store we cannot read
    fake.script_pull("nvcr.io/nvidia/vllm", "1", PULL_EVENTS)
    resolver = Resolver(RegistryAuthFailed("401", details={"anonymous": True}))

    pulled = store(fake, tmp_path, resolver).ensure_image("nvcr.io/nvidia/vllm:1")

    assert resolver.calls == [None] and pulled.digest is None and pulled.pulled
    assert fake.logins == []  # no key was asked for or checked
