"""The ``DockerPort`` image contract (runtimes/docker/port.py), held by FakeDocker and the real adapter alike:
image_inspect / tag_image / pull_stream / login, and the errors each raises."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from nemoclaw_runtime.kernel.errors import ImageNotFound, RegistryAuthFailed
from tests.contract.worlds import Login, World


def test_image_inspect_of_a_present_image(world: World) -> None:
    attrs = world.port.image_inspect(world.image)
    assert attrs is not None and str(attrs["Id"]).startswith("sha256:")
    assert world.image in attrs["RepoTags"]
    assert attrs["Os"] == "linux" and attrs["Architecture"]
    assert world.port.image_inspect(str(attrs["Id"])) == attrs  # by id too


def test_image_inspect_of_an_absent_image_is_none(world: World) -> None:
    assert world.port.image_inspect(world.absent_image()) is None
    # a repository name alone means :latest, which no test image has
    assert world.port.image_inspect(world.image.rsplit(":", 1)[0]) is None


def test_tag_image_adds_a_name_to_the_same_image(world: World) -> None:
    source = world.port.image_inspect(world.image)
    target = world.new_tag()
    world.port.tag_image(world.image, target)
    tagged = world.port.image_inspect(target)
    assert source is not None and tagged is not None and tagged["Id"] == source["Id"]
    assert {world.image, target} <= set(tagged["RepoTags"])


def test_tag_image_moves_a_name_from_the_image_that_had_it(world: World) -> None:
    target = world.new_tag()
    world.port.tag_image(world.image, target)
    world.port.tag_image(world.other_image, target)

    other, first = world.port.image_inspect(world.other_image), world.port.image_inspect(world.image)
    moved = world.port.image_inspect(target)
    assert other is not None and first is not None and moved is not None
    assert moved["Id"] == other["Id"] != first["Id"]
    assert target not in first["RepoTags"] and target in other["RepoTags"]


def test_tag_image_without_a_tag_means_latest(world: World) -> None:
    repository = world.new_tag().rsplit(":", 1)[0]
    world.port.tag_image(world.image, repository)
    tagged = world.port.image_inspect(repository)
    assert tagged is not None and f"{repository}:latest" in tagged["RepoTags"]
    assert repository not in tagged["RepoTags"]


def test_tag_image_of_an_absent_image_is_image_not_found(world: World) -> None:
    absent = world.absent_image()
    with pytest.raises(ImageNotFound) as caught:
        world.port.tag_image(absent, world.new_tag())
    assert absent in caught.value.message


def test_pull_by_tag_streams_events_and_leaves_the_image_with_its_digest(world: World) -> None:
    published = world.publish()
    assert world.port.image_inspect(published.ref) is None

    events = list(world.port.pull_stream(published.repository, published.tag))

    assert events and all(isinstance(event, Mapping) for event in events)
    assert not any("error" in event for event in events)
    pulled = world.port.image_inspect(published.ref)
    assert pulled is not None and published.ref in pulled["RepoTags"]
    assert f"{published.repository}@{published.digest}" in pulled["RepoDigests"]


def test_pull_by_digest_leaves_the_image_under_its_digest(world: World) -> None:
    published = world.publish()
    list(world.port.pull_stream(published.repository, published.digest))
    pinned = world.port.image_inspect(f"{published.repository}@{published.digest}")
    assert pinned is not None and f"{published.repository}@{published.digest}" in pinned["RepoDigests"]


def test_pull_of_an_unknown_tag_is_image_not_found(world: World) -> None:
    published = world.publish()
    with pytest.raises(ImageNotFound) as caught:
        list(world.port.pull_stream(published.repository, "no-such-tag"))  # at the call or on iteration
    assert caught.value.exit_code == 4 and published.repository in caught.value.message
    assert world.port.image_inspect(f"{published.repository}:no-such-tag") is None


def test_an_aborted_pull_stream_ends_quietly(world: World) -> None:
    published = world.publish()
    stream = world.port.pull_stream(published.repository, published.tag)
    stream.set_read_timeout(30)
    stream.abort()
    for event in stream:  # ends without raising; whatever arrived before the abort is still an event
        assert isinstance(event, Mapping)


def test_login_with_the_right_key_succeeds_and_a_wrong_key_is_registry_auth_failed(world: World) -> None:
    login = world.registry_login()
    world.port.login(login.registry, login.username, login.password)

    wrong = login.password + "-wrong"
    with pytest.raises(RegistryAuthFailed) as caught:
        world.port.login(login.registry, login.username, wrong)
    assert caught.value.exit_code == 4 and login.registry in caught.value.message
    assert wrong not in caught.value.message and login.password not in caught.value.message


def test_stored_credentials_are_what_the_docker_config_holds(world: World) -> None:
    login = Login("127.0.0.1:5000", "$oauthtoken", "nvapi-test-stored")
    assert world.port.stored_credentials(login.registry) is None  # nothing stored yet

    world.store_login(login)

    stored = world.port.stored_credentials(login.registry)
    assert stored is not None and stored.readable and stored.username == login.username
    assert stored.password is not None and stored.password.reveal() == login.password
    assert login.password not in repr(stored)
    assert world.port.stored_credentials("registry.example.com") is None  # another registry: nothing
