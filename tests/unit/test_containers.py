"""DockerContainerManager over FakeDocker: idempotent runs, ownership labels, foreign containers, stop and logs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.errors import InvalidInput, NameTaken, NoSuchContainer, PortInUse
from nemoclaw_runtime.kernel.events import Event, Info, PhaseChanged, Warning
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.containers import (
    DockerContainerManager,
    ManagedContainerView,
    base_url,
    list_managed,
    managed_labels,
    managed_logs,
    stop_managed,
)
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_HOST,
    LABEL_IMAGE,
    LABEL_IMAGE_DIGEST,
    LABEL_MANAGED,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_RUNTIME,
    LABEL_SPEC_HASH,
    LABEL_VERSION,
    ContainerSpec,
    PortBinding,
)
from tests.fakes.fake_docker import FakeDocker

IMAGE = "127.0.0.1:5000/team/vllm:1.0"
DIGEST = "sha256:" + "ab" * 32
TOKEN = "hf_supersecretvalue123"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir_override=tmp_path / "state")


@pytest.fixture
def fake() -> FakeDocker:
    docker = FakeDocker()
    docker.add_image(IMAGE, digest=DIGEST)
    return docker


@pytest.fixture
def manager(fake: FakeDocker, settings: Settings) -> DockerContainerManager:
    return DockerContainerManager(fake, settings, lock_wait_s=0.5)


def make_spec(name: str = "nemoclaw-vllm", **changes: object) -> ContainerSpec:
    spec = ContainerSpec(name=name, runtime="vllm", image=IMAGE, command=("vllm", "serve", "m"),
                         env=(("HF_HOME", "/hf"), ("HF_TOKEN", Secret(TOKEN))),
                         labels=((LABEL_MODEL, "nano-4b"),), ports=(PortBinding(8000, 18000),))
    return dataclasses.replace(spec, **changes)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def infos(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, Info)]


# --- ensure_running: the four actions ---------------------------------------------------------------------------


def test_absent_is_created_and_started(manager: DockerContainerManager, fake: FakeDocker) -> None:
    events = Recorder()
    outcome = manager.ensure_running(make_spec(), events=events)
    assert outcome.action == "started"
    assert outcome.container.state.running and outcome.container.name == "nemoclaw-vllm"
    assert [c[0] for c in fake.write_calls] == ["create_container", "start_container"]
    assert any(isinstance(e, PhaseChanged) and e.phase == "start" for e in events.events)
    assert any("Creating container nemoclaw-vllm" in m for m in events.infos())


def test_same_spec_running_is_reused_without_engine_writes(manager: DockerContainerManager,
                                                           fake: FakeDocker) -> None:
    first = manager.ensure_running(make_spec(), events=Recorder())
    writes_before = len(fake.write_calls)
    events = Recorder()
    again = manager.ensure_running(make_spec(), events=events)
    assert again.action == "reused" and again.container.id == first.container.id
    assert len(fake.write_calls) == writes_before
    assert any("Reusing running container" in m for m in events.infos())


def test_changed_spec_is_replaced(manager: DockerContainerManager, fake: FakeDocker) -> None:
    first = manager.ensure_running(make_spec(), events=Recorder())
    events = Recorder()
    second = manager.ensure_running(make_spec(command=("vllm", "serve", "other")), events=events)
    assert second.action == "replaced" and second.container.id != first.container.id
    assert first.container.id not in fake.containers and len(fake.containers) == 1
    writes = [c[0] for c in fake.write_calls][-4:]
    assert writes == ["stop_container", "remove_container", "create_container", "start_container"]
    assert any("spec changed" in m for m in events.infos())


def test_stopped_with_same_spec_is_restarted(manager: DockerContainerManager, fake: FakeDocker) -> None:
    no_secrets = make_spec(env=(("HF_HOME", "/hf"),))
    first = manager.ensure_running(no_secrets, events=Recorder())
    fake.stop_container(first.container.id)
    events = Recorder()
    again = manager.ensure_running(no_secrets, events=events)
    assert again.action == "restarted" and again.container.id == first.container.id
    assert again.container.state.running
    assert any("Restarting stopped container" in m for m in events.infos())


def test_stopped_with_secrets_is_recreated_so_a_fixed_key_reaches_it(manager: DockerContainerManager,
                                                                      fake: FakeDocker) -> None:
    first = manager.ensure_running(make_spec(), events=Recorder())
    fake.stop_container(first.container.id)
    again = manager.ensure_running(make_spec(env=(("HF_HOME", "/hf"), ("HF_TOKEN", Secret("hf_fixed12345")))),
                                   events=Recorder())
    assert again.action == "replaced" and again.container.id != first.container.id


def test_crash_looping_container_with_same_spec_is_replaced(manager: DockerContainerManager,
                                                            fake: FakeDocker) -> None:
    first = manager.ensure_running(make_spec(), events=Recorder())
    fake.crash(first.container.id, exit_code=1)  # unless-stopped: the engine keeps restarting it
    assert fake.inspect_container(first.container.id).state.restart_count == 1  # type: ignore[union-attr]
    again = manager.ensure_running(make_spec(), events=Recorder())
    assert again.action == "replaced" and again.container.state.restart_count == 0


def test_start_failure_leaves_nothing_behind(manager: DockerContainerManager, fake: FakeDocker) -> None:
    fake.fail_next_start("nemoclaw-vllm", PortInUse("Bind for 127.0.0.1:18000 failed: port is already allocated"))
    with pytest.raises(PortInUse):
        manager.ensure_running(make_spec(), events=Recorder())
    assert fake.containers == {}


# --- foreign containers -------------------------------------------------------------------------------------------


def test_foreign_container_holding_the_name_is_name_taken_and_untouched(manager: DockerContainerManager,
                                                                         fake: FakeDocker) -> None:
    foreign_id = fake.add_foreign_container("nemoclaw-vllm", image="someone/else:1")
    with pytest.raises(NameTaken) as caught:
        manager.ensure_running(make_spec(), events=Recorder())
    assert caught.value.exit_code == 3
    assert "nemoclaw-vllm" in caught.value.message and foreign_id[:12] in caught.value.message
    assert "docker rm" in (caught.value.remedy or "") and "--name" in (caught.value.remedy or "")
    assert fake.write_calls == [] and fake.containers[foreign_id].status == "running"


def test_a_name_that_is_an_id_prefix_of_another_container_is_still_free(manager: DockerContainerManager,
                                                                         fake: FakeDocker) -> None:
    foreign_id = fake.add_foreign_container("other")
    name = foreign_id[:8]  # the engine would resolve this to the foreign container by id prefix
    assert manager.get(name) is None
    outcome = manager.ensure_running(make_spec(name), events=Recorder())
    assert outcome.action == "started" and outcome.container.name == name
    assert fake.containers[foreign_id].status == "running"


def test_get_returns_ours_none_or_refuses_foreign(manager: DockerContainerManager, fake: FakeDocker) -> None:
    assert manager.get("nemoclaw-vllm") is None
    manager.ensure_running(make_spec(), events=Recorder())
    assert manager.get("nemoclaw-vllm") is not None
    fake.add_foreign_container("theirs")
    with pytest.raises(NameTaken):
        manager.get("theirs")


def test_foreign_created_between_look_and_create_is_name_taken(manager: DockerContainerManager, fake: FakeDocker,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_inspect = fake.inspect_container
    looks = iter([None])  # the first look sees nothing; then a foreign container appears

    def racing_inspect(name_or_id: str) -> ContainerInfo | None:
        first = next(looks, "real")
        if first is None:
            fake.add_foreign_container(name_or_id)
            return None
        return real_inspect(name_or_id)

    monkeypatch.setattr(fake, "inspect_container", racing_inspect)
    with pytest.raises(NameTaken) as caught:
        manager.ensure_running(make_spec(), events=Recorder())
    assert "did not create" in caught.value.message


# --- labels and secrets -------------------------------------------------------------------------------------------


def test_labels_are_stamped(manager: DockerContainerManager, fake: FakeDocker) -> None:
    spec = make_spec()
    outcome = manager.ensure_running(spec, events=Recorder())
    labels = outcome.container.labels
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_SPEC_HASH] == spec.spec_hash()
    assert labels[LABEL_VERSION] == __version__
    assert labels[LABEL_RUNTIME] == "vllm" and labels[LABEL_IMAGE] == IMAGE
    assert labels[LABEL_IMAGE_DIGEST] == DIGEST  # found through image inspect (RepoDigests)
    assert labels[LABEL_HOST] == "127.0.0.1" and labels[LABEL_PORT] == "18000"
    assert labels[LABEL_MODEL] == "nano-4b"  # the driver's own label survives


def test_pinned_digest_is_used_for_the_label(fake: FakeDocker, settings: Settings) -> None:
    other = "sha256:" + "cd" * 32
    fake.add_image(f"127.0.0.1:5000/team/vllm@{other}", digest=other)
    manager = DockerContainerManager(fake, settings)
    outcome = manager.ensure_running(make_spec(image_digest=other), events=Recorder())
    assert outcome.container.labels[LABEL_IMAGE_DIGEST] == other
    assert outcome.container.image == f"127.0.0.1:5000/team/vllm@{other}"


@pytest.mark.parametrize("reserved", [LABEL_MANAGED, LABEL_SPEC_HASH, LABEL_VERSION])
def test_driver_labels_may_not_claim_reserved_keys(manager: DockerContainerManager, fake: FakeDocker,
                                                   reserved: str) -> None:
    spec = make_spec(labels=((reserved, "true"),))
    with pytest.raises(InvalidInput) as caught:
        manager.ensure_running(spec, events=Recorder())
    assert reserved in caught.value.message
    assert fake.calls == []


def test_driver_labels_may_not_contradict_the_spec() -> None:
    with pytest.raises(InvalidInput, match=LABEL_RUNTIME):
        managed_labels(make_spec(labels=((LABEL_RUNTIME, "nim"),)))
    assert dict(managed_labels(make_spec(labels=((LABEL_RUNTIME, "vllm"),))))[LABEL_RUNTIME] == "vllm"


def test_secret_values_never_reach_labels_or_displays(manager: DockerContainerManager, fake: FakeDocker) -> None:
    outcome = manager.ensure_running(make_spec(), events=Recorder())
    created = fake.containers[outcome.container.id]
    assert created.spec is not None and dict(created.spec.env)["HF_TOKEN"] == Secret(TOKEN)  # the engine gets it
    assert all(TOKEN not in k and TOKEN not in v for k, v in outcome.container.labels.items())
    assert TOKEN not in json.dumps(created.spec.to_dict()) and TOKEN not in repr(created.spec)
    views = list_managed(Settings(), docker=fake)
    assert TOKEN not in json.dumps([v.to_dict() for v in views])


def test_a_label_carrying_a_secret_value_is_refused_without_echoing_it() -> None:
    spec = make_spec(labels=(("io.example.note", f"token={TOKEN}"),))
    with pytest.raises(InvalidInput) as caught:
        managed_labels(spec)
    assert "HF_TOKEN" in caught.value.message and TOKEN not in caught.value.message
    assert TOKEN not in json.dumps(caught.value.to_dict())


# --- list / views ---------------------------------------------------------------------------------------------------


def test_list_managed_selects_by_label_only(manager: DockerContainerManager, fake: FakeDocker,
                                            settings: Settings) -> None:
    manager.ensure_running(make_spec("b-vllm"), events=Recorder())
    manager.ensure_running(make_spec("a-ollama", runtime="ollama", ports=(PortBinding(11434, 11434),)),
                           events=Recorder())
    fake.add_foreign_container("foreign", labels={"io.nemoclaw.runtime.runtime": "vllm"})  # no managed label
    views = list_managed(settings, docker=fake)
    assert [v.name for v in views] == ["a-ollama", "b-vllm"]
    assert [v.name for v in list_managed(settings, docker=fake, runtime="vllm")] == ["b-vllm"]
    by_name = {v.name: v for v in views}
    assert by_name["b-vllm"].base_url == "http://127.0.0.1:18000/v1"
    assert by_name["a-ollama"].base_url == "http://127.0.0.1:11434/v1"
    assert by_name["b-vllm"].model == "nano-4b" and by_name["b-vllm"].image_digest == DIGEST
    document = by_name["b-vllm"].to_dict()
    assert {"name", "runtime", "model", "state", "health", "base_url", "image", "image_digest",
            "created"} <= document.keys()
    assert fake.write_calls[-1][0] == "start_container"  # listing wrote nothing
    assert not fake.closed  # an injected port is the caller's to close


def test_list_managed_of_an_empty_engine_is_empty(fake: FakeDocker, settings: Settings) -> None:
    assert list_managed(settings, docker=fake) == []


def test_views_are_frozen_and_show_the_exit_code_when_stopped(manager: DockerContainerManager,
                                                              fake: FakeDocker) -> None:
    outcome = manager.ensure_running(make_spec(), events=Recorder())
    fake.stop_container(outcome.container.id)
    view = ManagedContainerView.from_info(fake.inspect_container(outcome.container.id))  # type: ignore[arg-type]
    assert view.state == "exited" and view.exit_code == 143
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("runtime", "host", "port", "expected"), [
    ("vllm", "127.0.0.1", "8000", "http://127.0.0.1:8000/v1"),
    ("nim", "0.0.0.0", "8000", "http://127.0.0.1:8000/v1"),
    ("ollama", "127.0.0.1", "11434", "http://127.0.0.1:11434/v1"),
    ("vllm", "::1", "8000", "http://[::1]:8000/v1"),
    ("vllm", "127.0.0.1", None, None),
])
def test_base_url(runtime: str, host: str, port: str | None, expected: str | None) -> None:
    assert base_url(runtime, host, port) == expected


# --- stop -----------------------------------------------------------------------------------------------------------


def test_stop_removes_ours_and_leaves_images(manager: DockerContainerManager, fake: FakeDocker,
                                             settings: Settings) -> None:
    manager.ensure_running(make_spec(), events=Recorder())
    assert stop_managed(settings, ["nemoclaw-vllm"], docker=fake) == ["nemoclaw-vllm"]
    assert fake.containers == {} and fake.image_inspect(IMAGE) is not None


def test_stop_validates_every_name_before_touching_any(manager: DockerContainerManager, fake: FakeDocker,
                                                        settings: Settings) -> None:
    manager.ensure_running(make_spec("ours"), events=Recorder())
    foreign_id = fake.add_foreign_container("theirs")
    writes_before = len(fake.write_calls)
    with pytest.raises(NoSuchContainer) as caught:
        stop_managed(settings, ["ours", "theirs", "ghost"], docker=fake)
    assert caught.value.exit_code == 6
    assert "ghost" in caught.value.message and "theirs" in caught.value.message
    assert "not created by nemoclaw-runtime" in caught.value.message
    assert caught.value.details == {"missing": ["ghost"], "foreign": ["theirs"]}
    assert len(fake.write_calls) == writes_before
    assert fake.inspect_container("ours").state.running  # type: ignore[union-attr]
    assert fake.containers[foreign_id].status == "running"


def test_stop_all_with_runtime_filter(manager: DockerContainerManager, fake: FakeDocker, settings: Settings) -> None:
    manager.ensure_running(make_spec("v1"), events=Recorder())
    manager.ensure_running(make_spec("o1", runtime="ollama", ports=(PortBinding(11434, 11434),)), events=Recorder())
    fake.add_foreign_container("theirs")
    assert stop_managed(settings, all=True, runtime="vllm", docker=fake) == ["v1"]
    assert {c.name for c in fake.containers.values()} == {"o1", "theirs"}
    assert stop_managed(settings, all=True, docker=fake) == ["o1"]
    assert stop_managed(settings, all=True, docker=fake) == []
    assert [c.name for c in fake.containers.values()] == ["theirs"]


def test_stop_with_a_runtime_filter_refuses_a_name_of_another_runtime(manager: DockerContainerManager,
                                                                     fake: FakeDocker, settings: Settings) -> None:
    manager.ensure_running(make_spec("v1"), events=Recorder())
    with pytest.raises(NoSuchContainer, match="managed ollama container"):
        stop_managed(settings, ["v1"], runtime="ollama", docker=fake)
    assert len(fake.containers) == 1


@pytest.mark.parametrize(("names", "all_"), [((), False), (("x",), True)])
def test_stop_needs_names_or_all_but_not_both(fake: FakeDocker, settings: Settings, names: tuple[str, ...],
                                              all_: bool) -> None:
    with pytest.raises(InvalidInput):
        stop_managed(settings, names, all=all_, docker=fake)


def test_before_stop_hook_runs_first_and_its_failure_does_not_block(manager: DockerContainerManager,
                                                                     fake: FakeDocker, settings: Settings) -> None:
    manager.ensure_running(make_spec("aa"), events=Recorder())
    manager.ensure_running(make_spec("bb", ports=(PortBinding(8000, 18001),)), events=Recorder())
    seen: list[tuple[str, str]] = []

    def hook(info: ContainerInfo) -> None:
        seen.append((info.name, info.state.status))
        if info.name == "aa":
            raise RuntimeError("ollama did not answer")

    events = Recorder()
    assert stop_managed(settings, ["aa", "bb"], docker=fake, before_stop=hook, events=events) == ["aa", "bb"]
    assert seen == [("aa", "running"), ("bb", "running")]
    assert any(isinstance(e, Warning) and "ollama did not answer" in e.message for e in events.events)
    assert fake.containers == {}


def test_manager_stop_without_remove_keeps_the_container(manager: DockerContainerManager, fake: FakeDocker) -> None:
    manager.ensure_running(make_spec(), events=Recorder())
    manager.stop("nemoclaw-vllm", remove=False)
    assert manager.state("nemoclaw-vllm").status == "exited"
    manager.stop("nemoclaw-vllm")
    assert fake.containers == {}
    with pytest.raises(NoSuchContainer):
        manager.stop("nemoclaw-vllm")


# --- logs and state -------------------------------------------------------------------------------------------------


def test_logs_tail_of_ours(manager: DockerContainerManager, fake: FakeDocker, settings: Settings) -> None:
    outcome = manager.ensure_running(make_spec(), events=Recorder())
    fake.emit_logs(outcome.container.id, *(f"line {i}" for i in range(10)))
    assert manager.logs("nemoclaw-vllm", tail=3) == ["line 7", "line 8", "line 9"]
    assert list(managed_logs(settings, "nemoclaw-vllm", tail=2, docker=fake)) == ["line 8", "line 9"]


def test_logs_follow_ends_when_the_container_stops(manager: DockerContainerManager, fake: FakeDocker,
                                                   settings: Settings) -> None:
    outcome = manager.ensure_running(make_spec(), events=Recorder())
    fake.emit_logs(outcome.container.id, "booting")
    lines = managed_logs(settings, "nemoclaw-vllm", tail=5, follow=True, docker=fake)
    assert next(lines) == "booting"
    fake.emit_logs(outcome.container.id, "ready")
    fake.stop_container(outcome.container.id)
    assert list(lines) == ["ready"]


def test_logs_and_state_of_foreign_or_absent_are_no_such_container(manager: DockerContainerManager,
                                                                    fake: FakeDocker, settings: Settings) -> None:
    fake.add_foreign_container("theirs")
    fake.emit_logs("theirs", "private")
    with pytest.raises(NoSuchContainer, match="not created by nemoclaw-runtime"):
        managed_logs(settings, "theirs", tail=5, docker=fake)  # refused before any iteration
    with pytest.raises(NoSuchContainer, match="no managed container named ghost".capitalize()):
        managed_logs(settings, "ghost", tail=5, docker=fake)
    with pytest.raises(NoSuchContainer):
        manager.state("theirs")
    assert not any(c[0] in ("container_logs", "follow_logs") for c in fake.calls)


def test_state_carries_the_exit_code(manager: DockerContainerManager, fake: FakeDocker) -> None:
    outcome = manager.ensure_running(make_spec(restart_policy=None), events=Recorder())
    fake.crash(outcome.container.id, exit_code=137, oom=True)
    state = manager.state("nemoclaw-vllm")
    assert state.status == "exited" and state.exit_code == 137 and state.oom_killed


def test_negative_tail_is_invalid(fake: FakeDocker, settings: Settings) -> None:
    with pytest.raises(InvalidInput):
        managed_logs(settings, "x", tail=-1, docker=fake)


# --- connecting -----------------------------------------------------------------------------------------------------


def test_without_a_port_the_library_connects_once_per_call_and_closes(fake: FakeDocker, settings: Settings,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The module functions need a port; ``nemoclaw_runtime.api`` opens one through ``runtimes/wiring.py``."""
    from nemoclaw_runtime import api
    from nemoclaw_runtime.runtimes import wiring

    connected: list[Settings] = []

    def connect(s: Settings) -> FakeDocker:
        connected.append(s)
        fake.closed = False
        return fake

    monkeypatch.setattr(wiring, "open_docker", connect)
    DockerContainerManager(fake, settings).ensure_running(make_spec(), events=Recorder())
    assert [v.name for v in api.list_managed(settings=settings)] == ["nemoclaw-vllm"] and fake.closed
    lines = api.logs("nemoclaw-vllm", tail=5, settings=settings)
    assert not fake.closed
    assert list(lines) == [] and fake.closed
    with pytest.raises(NoSuchContainer):
        api.logs("ghost", tail=5, settings=settings)
    assert fake.closed
    assert api.stop(all=True, settings=settings) == ["nemoclaw-vllm"] and fake.closed
    assert connected == [settings] * 4


def test_log_lines_never_iterated_still_close_the_engine(fake: FakeDocker, settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that takes the lines and never reads them: close() (or dropping them) closes the engine."""
    import gc

    from nemoclaw_runtime import api
    from nemoclaw_runtime.runtimes import wiring

    def connect(s: Settings) -> FakeDocker:
        fake.closed = False
        return fake

    monkeypatch.setattr(wiring, "open_docker", connect)
    DockerContainerManager(fake, settings).ensure_running(make_spec(), events=Recorder())
    lines = api.logs("nemoclaw-vllm", tail=5, settings=settings)
    assert not fake.closed
    lines.close()  # type: ignore[attr-defined]
    assert fake.closed
    lines = api.logs("nemoclaw-vllm", tail=5, settings=settings)
    assert not fake.closed
    del lines
    gc.collect()
    assert fake.closed


def test_services_close_the_engine_even_when_the_http_client_fails_to_close(fake: FakeDocker,
                                                                            settings: Settings) -> None:
    from nemoclaw_runtime.kernel.clock import SystemClock
    from nemoclaw_runtime.runtimes.drivers.contract import Services

    class BrokenHttp:
        def close(self) -> None:
            raise OSError("the transport would not close")

    svc = Services(settings, fake, None, None, BrokenHttp(), SystemClock())  # type: ignore[arg-type]
    with pytest.raises(OSError):
        svc.close()
    assert fake.closed


def test_interrupted_right_after_start_leaves_no_container(manager: DockerContainerManager, fake: FakeDocker,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(container_id: str, name: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(manager, "_inspect_started", interrupted)
    with pytest.raises(KeyboardInterrupt):
        manager.ensure_running(make_spec(), events=Recorder())
    assert fake.containers == {}
