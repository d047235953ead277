"""The ground every Docker test stands on: a FROM-scratch busybox image serves HTTP on a published loopback
port, and a local registry takes a push and gives the same image back by digest."""

from __future__ import annotations

import time

import docker
import httpx
import pytest

from tests.helpers.docker_env import free_port, unique_name
from tests.helpers.images import build_busybox_image, unique_tag
from tests.helpers.registry import LocalRegistry

pytestmark = pytest.mark.docker

# busybox nc runs this once per connection (-ll -e): read the request line and headers, answer, exit.
HANDLER = """#!/bin/sh
read -r request_line
while read -r header; do
    header=$(printf '%s' "$header" | tr -d '\\r')
    [ -z "$header" ] && break
done
body="hello from busybox: $GREETING"
printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %s\\r\\nConnection: close\\r\\n\\r\\n%s' \\
    "${#body}" "$body"
"""


def _get_when_up(url: str, container: docker.models.containers.Container, budget_s: float = 30.0) -> httpx.Response:
    """Poll until the server answers; bounded, and fails fast if the container died."""
    deadline = time.monotonic() + budget_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError as exc:
            last_error = exc
        container.reload()
        if container.status == "exited":
            pytest.fail(f"server container exited: {container.logs(tail=20).decode(errors='replace')}")
        time.sleep(0.2)
    pytest.fail(f"no HTTP answer from {url} within {budget_s}s: {last_error}")


def test_busybox_image_serves_http_on_a_published_loopback_port(
    docker_client: docker.DockerClient, test_labels: dict[str, str]
) -> None:
    tag = unique_tag("smoke-http")
    build_busybox_image(
        docker_client, tag, {"/handler.sh": HANDLER},
        cmd=["nc", "-ll", "-p", "8080", "-e", "/handler.sh"], env={"GREETING": "it works"},
    )
    port = free_port()
    container = docker_client.containers.run(
        tag, detach=True, name=unique_name("nemoclaw-test-smoke"), labels=test_labels,
        ports={"8080/tcp": ("127.0.0.1", port)},
    )
    try:
        response = _get_when_up(f"http://127.0.0.1:{port}/v1/models", container)
        assert response.status_code == 200
        assert response.text == "hello from busybox: it works"
    finally:
        container.remove(force=True)


def test_local_registry_round_trips_an_image_by_digest(
    docker_client: docker.DockerClient, busybox_base: str, local_registry: LocalRegistry
) -> None:
    repo = f"smoke/{unique_name('base')}"
    digest = local_registry.push(docker_client, busybox_base, repo, "v1")
    pushed_id = docker_client.images.get(busybox_base).id
    docker_client.images.remove(local_registry.ref(repo, "v1"))  # untag only: the pull below must fetch

    pulled = docker_client.images.pull(local_registry.ref(repo, digest))

    assert digest.startswith("sha256:")
    assert pulled.id == pushed_id
    assert local_registry.ref(repo, digest) in pulled.attrs["RepoDigests"]
