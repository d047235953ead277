"""The shared Docker engine as the tests see it: one session id, labels, free ports, and clean-up.

The engine is shared with other people's test runs, so everything a session creates carries the label
``io.nemoclaw.test-session=<SESSION_ID>`` and clean-up removes exactly that, never anything else.

Fixtures built on this module live in ``tests/integration/conftest.py``; plain helpers are importable from
anywhere (``from tests.helpers.docker_env import free_port, session_labels``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.runtimes.docker.spec import LABEL_MANAGED

if TYPE_CHECKING:
    import docker
    import pytest

log = logging.getLogger(__name__)

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"

SESSION_LABEL = "io.nemoclaw.test-session"
#: Runtime-managed containers (label set by the product) are removed too when they carry the session label.
MANAGED_LABEL = LABEL_MANAGED
#: One id per test process: helpers label with it even when called outside a fixture.
SESSION_ID = uuid.uuid4().hex
#: Set to 1 on a laptop without Docker to skip (instead of fail) the docker-marked tests.
ALLOW_NO_DOCKER_ENV = "NEMOCLAW_TEST_ALLOW_NO_DOCKER"
#: Read at import: the autouse ``clean_environ`` fixture removes NEMOCLAW_* variables before each test.
ALLOW_NO_DOCKER = os.environ.get(ALLOW_NO_DOCKER_ENV, "") == "1"

_PING_TIMEOUT_S = 10
_MAX_IMAGE_PASSES = 4


class DockerUnavailableForTests(RuntimeError):
    """No engine answered; the message says how to start one."""


def session_labels(session_id: str = SESSION_ID) -> dict[str, str]:
    """Labels to put on every container/image a test creates so session clean-up finds it."""
    return {SESSION_LABEL: session_id}


def session_filter(session_id: str = SESSION_ID) -> dict[str, str]:
    return {"label": f"{SESSION_LABEL}={session_id}"}


def unique_name(prefix: str) -> str:
    """A container/image name no concurrent test run will pick: ``<prefix>-<12 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def removed_after(client: docker.DockerClient, prefix: str) -> Iterator[str]:
    """For a fixture: a :func:`unique_name` container name, and the container of that name force-removed after the
    test whatever happened."""
    import docker

    chosen = unique_name(prefix)
    yield chosen
    try:
        client.containers.get(chosen).remove(force=True)
    except docker.errors.NotFound:
        pass


def serve_environment(monkeypatch: pytest.MonkeyPatch, hub_url: str, tmp_path: Path, *,
                      gpu_fixture: str = "h100_x8.json") -> dict[str, str]:
    """The environment an `up vllm` test runs in: a replayed GPU host, the fake hub, and the HF cache, state
    directory and vLLM port of this test alone. Set with ``monkeypatch`` and returned."""
    values = {
        "NEMOCLAW_GPU_SNAPSHOT": str(GPU_FIXTURES / gpu_fixture),
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(tmp_path / "hf"),
        "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
        "NEMOCLAW_VLLM_PORT": str(free_port()),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def free_port() -> int:
    """An ephemeral TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connect_docker() -> docker.DockerClient:
    """A client for the engine ``DOCKER_HOST`` (or the default socket) names, proven to answer a ping."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # docker.errors.DockerException, requests errors, socket errors alike
        raise DockerUnavailableForTests(
            f"no Docker engine answers ({type(exc).__name__}: {exc}). Start one with "
            "`bash scripts/ensure-docker.sh` (as root), or set "
            f"{ALLOW_NO_DOCKER_ENV}=1 to skip the docker tests on this machine."
        ) from exc
    return client


def cleanup_session(client: docker.DockerClient, session_id: str = SESSION_ID) -> list[str]:
    """Remove the session's containers, then its images. Returns a list of what could not be removed."""
    problems = _remove_containers(client, session_id)
    problems += _remove_labelled(client.networks.list(filters=session_filter(session_id)), "network")
    problems += _remove_labelled(client.volumes.list(filters=session_filter(session_id)), "volume")
    problems += _remove_images(client, session_id)
    for problem in problems:
        log.warning("test clean-up: %s", problem)
    return problems


def _remove_containers(client: docker.DockerClient, session_id: str) -> list[str]:
    import docker

    problems: list[str] = []
    # One filter catches plain test containers and runtime-managed ones (MANAGED_LABEL) started by a test.
    for container in client.containers.list(all=True, filters=session_filter(session_id)):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            problems.append(f"container {container.name}: {exc}")
    return problems


def _remove_labelled(resources: list[Any], kind: str) -> list[str]:
    """Networks and volumes a test labelled (after the containers using them are gone)."""
    import docker

    problems: list[str] = []
    for resource in resources:
        try:
            resource.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            problems.append(f"{kind} {resource.name}: {exc.explanation or exc}")
    return problems


def _remove_images(client: docker.DockerClient, session_id: str) -> list[str]:
    """Untag, then delete, newest first: images built later may be children of earlier ones (build cache)."""
    import docker

    problems: list[str] = []
    for _ in range(_MAX_IMAGE_PASSES):
        images = client.images.list(filters=session_filter(session_id))
        if not images:
            return []
        problems = []
        images.sort(key=lambda image: str(image.attrs.get("Created", "")), reverse=True)
        for image in images:
            # Removing by tag only untags when another run's image is built on ours (shared build cache):
            # that leaves no name of ours behind without touching their image.
            for ref in [*image.tags, image.id]:
                try:
                    client.images.remove(ref, force=(ref == image.id), noprune=False)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    problems.append(f"image {ref}: {exc.explanation or exc}")
    return problems
