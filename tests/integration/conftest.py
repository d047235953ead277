"""Fixtures for tests that drive the real Docker engine (marker ``docker``).

- ``docker_client`` (session): docker.from_env(), proven to answer. No engine → docker tests FAIL with how to
  start one (``bash scripts/ensure-docker.sh``), unless NEMOCLAW_TEST_ALLOW_NO_DOCKER=1 lets them skip.
  At session end it removes every container and image labelled with this session's id.
- ``test_session_id`` (session) / ``test_labels``: the id and the labels to put on whatever a test creates.
- ``busybox_base`` (session): tag of a plain busybox image (sh, sleep, nc, httpd) built once.
- ``local_registry`` / ``auth_registry``: a real docker-registry subprocess (see tests/helpers/registry.py).
- ``fake_hf``: a fake Hugging Face Hub (see tests/fake_servers/fake_hf.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.fake_servers.fake_hf import fake_hf, fake_hf_server  # noqa: F401  (fixtures)
from tests.helpers.docker_env import (
    ALLOW_NO_DOCKER,
    SESSION_ID,
    DockerUnavailableForTests,
    cleanup_session,
    connect_docker,
    session_labels,
)
from tests.helpers.images import build_base_image
from tests.helpers.registry import auth_registry, local_registry  # noqa: F401  (fixtures)

if TYPE_CHECKING:
    import docker


@pytest.fixture(scope="session")
def test_session_id() -> str:
    return SESSION_ID


@pytest.fixture(scope="session")
def test_labels(test_session_id: str) -> dict[str, str]:
    """``{"io.nemoclaw.test-session": <id>}``: put these on every container a test starts."""
    return session_labels(test_session_id)


@pytest.fixture(scope="session")
def docker_client(test_session_id: str) -> Iterator[docker.DockerClient]:
    try:
        client = connect_docker()
    except DockerUnavailableForTests as exc:
        if ALLOW_NO_DOCKER:
            pytest.skip(str(exc))
        pytest.fail(str(exc), pytrace=False)
    try:
        yield client
    finally:
        cleanup_session(client, test_session_id)
        client.close()


@pytest.fixture(autouse=True)
def _docker_marked_tests_need_the_engine(request: pytest.FixtureRequest) -> None:
    """A docker-marked test that builds its own client still fails (not hangs or skips) without an engine,
    and still gets the session clean-up."""
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_client")


@pytest.fixture(scope="session")
def busybox_base(docker_client: docker.DockerClient, test_session_id: str) -> str:
    """Tag of the base image (fixtures/images/base/Dockerfile): busybox only, built once per session."""
    tag = f"nemoclaw-test/busybox-base:{test_session_id[:12]}"
    build_base_image(docker_client, tag)
    return tag
