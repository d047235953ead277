"""The ``world`` fixture: every contract test runs once against ``FakeDocker`` and once (marker ``docker``)
against the real adapter on the local engine. The engine fixtures are the integration suite's, shared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.contract.worlds import FakeWorld, RealWorld, World, contract_images
from tests.integration.conftest import (  # noqa: F401  (fixtures: the engine client, its clean-up, the guard)
    _docker_marked_tests_need_the_engine,
    docker_client,
    test_session_id,
)

if TYPE_CHECKING:
    import docker


@pytest.fixture(scope="session")
def real_images(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    client: docker.DockerClient = request.getfixturevalue("docker_client")
    yield from contract_images(client)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.docker)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if request.param == "fake":
        chosen: World = FakeWorld()
    else:
        chosen = RealWorld(request.getfixturevalue("docker_client"), request.getfixturevalue("real_images"),
                           tmp_path_factory.mktemp("contract"))
    try:
        yield chosen
    finally:
        chosen.close()
