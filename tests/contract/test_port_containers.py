"""The ``DockerPort`` container contract (runtimes/docker/port.py), held by FakeDocker and the real adapter alike:
create / start / inspect / list by label / logs / follow / stop / remove, and the errors each raises."""

from __future__ import annotations

import itertools
import re

import pytest

from nemoclaw_runtime.kernel.errors import (
    DockerUnavailable,
    ImageNotFound,
    NameTaken,
    NemoclawError,
    NoSuchContainer,
)
from tests.contract.worlds import World

# --- engine -----------------------------------------------------------------------------------------------------------


def test_ping_and_engine_info(world: World) -> None:
    world.port.ping()
    info = world.port.engine_info()
    assert info["OSType"] == "linux" and isinstance(info["Architecture"], str) and info["Architecture"]
    assert isinstance(info["NCPU"], int) and info["NCPU"] >= 1 and isinstance(info["ServerVersion"], str)


def test_an_engine_that_does_not_answer_is_docker_unavailable(world: World) -> None:
    down = world.unreachable()
    try:
        for call in (down.ping, lambda: down.inspect_container("anything"), lambda: down.list_containers({}),
                     lambda: down.image_inspect(world.image)):
            with pytest.raises(DockerUnavailable) as caught:
                call()  # never None / [] as if the engine had answered "absent"
            assert caught.value.exit_code == 3
    finally:
        down.close()


# --- create / inspect -------------------------------------------------------------------------------------------------


def test_create_makes_a_created_container_findable_by_name_id_and_prefix(world: World) -> None:
    spec = world.spec()
    container_id = world.port.create_container(spec)

    assert re.fullmatch(r"[0-9a-f]{64}", container_id)
    by_name = world.port.inspect_container(spec.name)
    assert by_name is not None
    assert world.port.inspect_container(container_id) == by_name == world.port.inspect_container(container_id[:12])
    assert (by_name.id, by_name.name, by_name.image) == (container_id, spec.name, spec.image_ref)
    assert dict(by_name.labels).items() >= world.labels.items()
    assert by_name.state.status == "created" and not by_name.state.running
    assert by_name.state.exit_code == 0 and by_name.state.restart_count == 0 and not by_name.state.oom_killed
    # not started yet: the configured binding is what there is to report
    assert by_name.ports == {"8080/tcp": (("127.0.0.1", spec.ports[0].host_port),)}
    assert world.port.container_logs(spec.name, tail=10) == []


def test_create_with_a_name_in_use_is_name_taken_and_leaves_the_holder(world: World) -> None:
    first = world.spec()
    first_id = world.port.create_container(first)
    with pytest.raises(NameTaken) as caught:
        world.port.create_container(world.spec(name=first.name, image=world.other_image))
    assert caught.value.exit_code == 3 and first.name in caught.value.message
    holder = world.port.inspect_container(first.name)
    assert holder is not None and holder.id == first_id and holder.image == world.image


def test_create_from_an_absent_image_is_image_not_found(world: World) -> None:
    spec = world.spec(image=world.absent_image())
    with pytest.raises(ImageNotFound) as caught:
        world.port.create_container(spec)
    assert spec.image in caught.value.message and caught.value.exit_code == 4
    assert world.port.inspect_container(spec.name) is None


def test_inspect_of_an_absent_container_is_none(world: World) -> None:
    assert world.port.inspect_container("contract-no-such-container") is None


# --- start / list -----------------------------------------------------------------------------------------------------


def test_start_runs_it_and_starting_again_is_a_no_op(world: World) -> None:
    spec = world.spec(lines=["up"])
    world.run(spec)
    running = world.port.inspect_container(spec.name)
    assert running is not None and running.state.running and running.state.started_at

    world.port.start_container(spec.name)  # already running: nothing happens, no error

    again = world.port.inspect_container(spec.name)
    assert again is not None and again.state.running and again.state.started_at == running.state.started_at
    assert again.ports == {"8080/tcp": (("127.0.0.1", spec.ports[0].host_port),)}


def test_list_containers_filters_by_label_and_running(world: World) -> None:
    running, created = world.spec(lines=["up"]), world.spec()
    world.run(running)
    world.port.create_container(created)
    key, value = "io.nemoclaw.contract", world.labels["io.nemoclaw.contract"]

    def names(labels: dict[str, str | None], *, all: bool = True) -> set[str]:
        return {info.name for info in world.port.list_containers(labels, all=all)}

    assert names({key: value}) == {running.name, created.name}
    assert names({key: value}, all=False) == {running.name}
    assert names(dict(world.labels)) == {running.name, created.name}  # every label must match
    assert {running.name, created.name} <= names({key: None})  # key only: any value
    assert names({key: "someone-else"}) == set()
    assert names({key: value, "io.nemoclaw.contract.absent": None}) == set()
    listed = world.port.list_containers({key: value}, all=False)
    assert [info.state.status for info in listed] == ["running"]


def test_a_host_port_already_published_fails_the_start_and_the_container_stays_created(world: World) -> None:
    holder = world.spec(lines=["up"])
    world.run(holder)
    clash = world.spec(host_port=holder.ports[0].host_port)
    world.port.create_container(clash)

    with pytest.raises(NemoclawError) as caught:
        world.port.start_container(clash.name)

    # The adapter has no translation for this engine error: a plain NemoclawError (exit 1), not PortInUse.
    assert type(caught.value) is NemoclawError and caught.value.exit_code == 1
    assert caught.value.details.get("status") == 500
    assert f"Bind for 127.0.0.1:{holder.ports[0].host_port} failed: port is already allocated" in caught.value.message
    state = world.port.inspect_container(clash.name)
    assert state is not None and state.state.status == "created" and state.state.exit_code == 128
    assert "port is already allocated" in (state.state.error or "")
    first = world.port.inspect_container(holder.name)
    assert first is not None and first.state.running


# --- logs -------------------------------------------------------------------------------------------------------------


def test_container_logs_are_the_last_lines_oldest_first(world: World) -> None:
    spec = world.spec(lines=["one", "two", "three"])
    world.run(spec)
    assert world.wait_for_logs(spec.name, 3) == ["one", "two", "three"]
    assert world.port.container_logs(spec.name, tail=2) == ["two", "three"]
    assert world.port.container_logs(spec.name, tail=10) == ["one", "two", "three"]
    assert world.port.container_logs(spec.name, tail=0) == []


def test_follow_logs_of_a_running_container_yields_lines_as_they_come(world: World) -> None:
    spec = world.spec(lines=["one", "two", "three"])
    world.run(spec)
    assert list(itertools.islice(world.port.follow_logs(spec.name, tail=2), 2)) == ["two", "three"]


def test_follow_logs_of_an_exited_container_ends(world: World) -> None:
    spec = world.spec(lines=["one", "two"], then="exit")
    world.run(spec)
    exited = world.port.inspect_container(spec.name)
    assert exited is not None and exited.state.status == "exited" and exited.state.exit_code == 0
    assert list(world.port.follow_logs(spec.name, tail=10)) == ["one", "two"]


# --- stop / remove ----------------------------------------------------------------------------------------------------


def test_stop_ends_a_running_container_and_is_idempotent(world: World) -> None:
    spec = world.spec(lines=["up"])
    world.run(spec)

    world.port.stop_container(spec.name, timeout=5)
    stopped = world.port.inspect_container(spec.name)
    assert stopped is not None and stopped.state.status == "exited" and not stopped.state.running
    assert stopped.state.exit_code is not None and stopped.state.finished_at
    assert world.port.list_containers(dict(world.labels), all=False) == []

    world.port.stop_container(spec.name, timeout=5)  # already stopped: no error, no change
    again = world.port.inspect_container(spec.name)
    assert again is not None and again.state == stopped.state
    # a stopped container still reports the binding it was created with
    assert again.ports == {"8080/tcp": (("127.0.0.1", spec.ports[0].host_port),)}


def test_stop_of_a_created_container_leaves_it_created(world: World) -> None:
    spec = world.spec()
    world.port.create_container(spec)
    world.port.stop_container(spec.name, timeout=1)
    info = world.port.inspect_container(spec.name)
    assert info is not None and info.state.status == "created"


def test_removing_a_running_container_without_force_is_refused_and_leaves_it_running(world: World) -> None:
    spec = world.spec(lines=["up"])
    container_id = world.run(spec)

    with pytest.raises(NemoclawError) as caught:
        world.port.remove_container(spec.name)

    # The engine answers 409 Conflict; the adapter translates it to a plain NemoclawError (exit 1).
    assert type(caught.value) is NemoclawError and caught.value.exit_code == 1
    assert f"You cannot remove a running container {container_id}" in caught.value.message
    assert caught.value.details.get("status") == 409
    info = world.port.inspect_container(spec.name)
    assert info is not None and info.state.running


def test_remove_with_force_removes_a_running_container(world: World) -> None:
    spec = world.spec(lines=["up"])
    world.run(spec)
    world.port.remove_container(spec.name, force=True)
    assert world.port.inspect_container(spec.name) is None
    assert world.port.list_containers(dict(world.labels)) == []


def test_remove_of_a_stopped_container_needs_no_force(world: World) -> None:
    spec = world.spec(lines=["bye"], then="exit")
    container_id = world.run(spec)
    world.port.remove_container(container_id)
    assert world.port.inspect_container(spec.name) is None


def test_every_call_on_an_absent_container_is_no_such_container(world: World) -> None:
    spec = world.spec()
    world.port.create_container(spec)
    world.port.remove_container(spec.name)
    for call in (lambda: world.port.start_container(spec.name),
                 lambda: world.port.stop_container(spec.name, timeout=1),
                 lambda: world.port.remove_container(spec.name),
                 lambda: world.port.remove_container(spec.name, force=True),
                 lambda: world.port.container_logs(spec.name, tail=5),
                 lambda: world.port.follow_logs(spec.name, tail=5)):  # raised by the call, not on iteration
        with pytest.raises(NoSuchContainer) as caught:
            call()
        assert caught.value.exit_code == 6 and spec.name in caught.value.message
    assert world.port.inspect_container(spec.name) is None


# --- files into a named volume (how weights reach another node's cache) -----------------------------------------


def _tar(*names: str) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"ok"))
    return buffer.getvalue()


def test_files_put_into_a_created_containers_volume_outlive_it_until_the_volume_goes(world: World) -> None:
    import dataclasses
    import uuid

    from nemoclaw_runtime.runtimes.docker.spec import Mount

    volume = f"nemoclaw-contract-{uuid.uuid4().hex[:12]}"
    world.port.create_volume(volume, {"io.nemoclaw.runtime.managed": "true"})
    world.port.create_volume(volume, {"io.nemoclaw.runtime.managed": "true"})  # already there: left as it is
    first = dataclasses.replace(world.spec(), mounts=(Mount(volume, "/data", "volume"),))
    world.port.create_container(first)  # never started: an engine copies into a created container
    try:
        assert not world.port.path_exists(first.name, "/data/hub/m/config.json")
        world.port.put_archive(first.name, "/data", _tar("hub/m/config.json", "hub/m/model.safetensors"))
        assert world.port.path_exists(first.name, "/data/hub/m/config.json")
        assert world.port.path_exists(first.name, "/data/hub/m/model.safetensors")
        world.port.remove_container(first.name)

        second = dataclasses.replace(world.spec(), mounts=(Mount(volume, "/data", "volume"),))
        world.port.create_container(second)
        assert world.port.path_exists(second.name, "/data/hub/m/config.json"), "the volume keeps the files"
        world.port.remove_container(second.name)
    finally:
        assert world.port.remove_volume(volume)
    assert not world.port.remove_volume(volume)  # already gone: not an error
    third = dataclasses.replace(world.spec(), mounts=(Mount(volume, "/data", "volume"),))  # made by the mount
    world.port.create_container(third)
    try:
        assert not world.port.path_exists(third.name, "/data/hub/m/config.json")
    finally:
        world.port.remove_container(third.name)
        assert not world.port.remove_volume(volume), "a volume without our label is never removed"
    with pytest.raises(NoSuchContainer):
        world.port.path_exists(third.name, "/data")
    _remove_unlabelled_volume(world, volume)


def _remove_unlabelled_volume(world: World, volume: str) -> None:
    """The test's own clean-up of the volume it let a mount make (the port refuses to, rightly)."""
    import docker

    from tests.fakes.fake_docker import FakeDocker

    if isinstance(world.port, FakeDocker):
        return
    client = docker.from_env()
    try:
        client.volumes.get(volume).remove(force=True)
    finally:
        client.close()
