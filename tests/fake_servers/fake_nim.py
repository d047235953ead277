"""The fake NIM image (fixtures/images/fake-nim): busybox + an entrypoint that behaves like an LLM NIM.

    published = publish_fake_nim(docker_client, auth_registry, expected_key=auth_registry.password)
    # published.ref == "127.0.0.1:PORT/nim/fake-<id>:1", an OCI index (amd64, arm64, attestation) in the registry;
    # nothing is left in the engine, so `up nim --image published.ref` must log in and pull it.

The image starts its server from its own ENTRYPOINT (no command), refuses to serve unless ``NGC_API_KEY`` equals the
key baked into the image as a file at build time (it prints ``Authentication Error`` and exits, as NIMs do), and
serves ``/v1/health/ready`` (503 for ``FAKE_NIM_READY_DELAY_S``), ``/v1/models`` (id ``FAKE_NIM_SERVED_ID``) and
``/v1/chat/completions``. ``/v1/models`` and plain chat answers come from the fake vLLM handler
(fixtures/images/fake-vllm/handler.sh), which the image carries. The image is labelled with the test session, and
containers inherit image labels, so session clean-up also removes the containers ``up nim`` creates from it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fake_servers.fake_vllm import FAKE_VLLM_DIR
from tests.fake_servers.fake_vllm import HANDLER_PATH as VLLM_HANDLER_PATH
from tests.helpers.docker_env import session_labels, unique_name
from tests.helpers.images import build_busybox_image, unique_tag

if TYPE_CHECKING:
    import docker

    from tests.helpers.registry import LocalRegistry

FAKE_NIM_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "images" / "fake-nim"
ENTRYPOINT_PATH = "/opt/nim/fake/start-server"
HANDLER_PATH = "/opt/nim/fake/handler.sh"
KEY_PATH = "/opt/nim/fake/expected-ngc-key"
CONTAINER_PORT = 8000
#: Contains a space, ";" and "<": fails ``^[A-Za-z0-9._:/-]+$`` and must never be echoed.
UNSAFE_SERVED_ID = "evil model;<script>"


def fake_nim_files(expected_key: str) -> dict[str, str]:
    """Image path → content. The key is a file of the build context (never a build arg on anyone's argv)."""
    return {
        ENTRYPOINT_PATH: (FAKE_NIM_DIR / "start-server").read_text(encoding="utf-8"),
        HANDLER_PATH: (FAKE_NIM_DIR / "handler.sh").read_text(encoding="utf-8"),
        VLLM_HANDLER_PATH: (FAKE_VLLM_DIR / "handler.sh").read_text(encoding="utf-8"),
        KEY_PATH: expected_key,
    }


def build_fake_nim_image(client: docker.DockerClient, tag: str, *, expected_key: str,
                         env: Mapping[str, str] | None = None) -> str:
    """Build the image as fixtures/images/fake-nim/Dockerfile describes; returns the image id.

    ``env`` bakes switches into the image (``FAKE_NIM_READY_DELAY_S`` …): ``up nim`` sets no env of its own
    besides the key, so image defaults are how a test shapes the server it will start.
    """
    return build_busybox_image(client, tag, fake_nim_files(expected_key),
                               env={"PATH": "/usr/local/bin:/usr/bin:/bin", **(env or {})},
                               entrypoint=[ENTRYPOINT_PATH])


@dataclass(frozen=True)
class PublishedNim:
    """A fake NIM pushed as a multi-arch index: ``ref`` (tag form) and the index's digests."""

    registry_host: str
    repo: str
    tag: str
    digests: dict[str, str] = field(default_factory=dict)  # index, amd64, arm64, attestation

    @property
    def ref(self) -> str:
        return f"{self.registry_host}/{self.repo}:{self.tag}"

    @property
    def repository(self) -> str:
        return f"{self.registry_host}/{self.repo}"


def publish_fake_nim(client: docker.DockerClient, registry: LocalRegistry, *, expected_key: str,
                     env: Mapping[str, str] | None = None, tag: str = "1") -> PublishedNim:
    """Build, push as ``nim/fake-<id>:<tag>`` (an OCI index like nvcr.io's), and keep nothing in the engine."""
    local = unique_tag("fake-nim")
    image_id = build_fake_nim_image(client, local, expected_key=expected_key, env=env)
    repo = f"nim/{unique_name('fake')}"
    source_tag = f"src-{uuid.uuid4().hex[:8]}"
    registry.push(client, local, repo, source_tag)
    digests = registry.push_multiarch_index(repo, tag, f"{repo}:{source_tag}")
    with contextlib.suppress(Exception):  # the session clean-up gets it otherwise (it carries the label)
        client.images.remove(image_id, force=True)
    return PublishedNim(registry.host, repo, tag, digests)


def local_images_of(client: docker.DockerClient, repository: str) -> list[Any]:
    """Engine images with a tag or a repo digest in ``repository`` (``host/repo``)."""
    found = []
    for image in client.images.list():
        names = [*image.tags, *(image.attrs.get("RepoDigests") or [])]
        if any(name.split("@", 1)[0].rsplit(":", 1)[0] == repository for name in names):
            found.append(image)
    return found


def run_fake_nim(client: docker.DockerClient, image: str, *, port: int, env: Mapping[str, str] | None = None,
                 name: str | None = None) -> Any:
    """Run the fake NIM detached as the image starts it (no command), on 127.0.0.1:``port``."""
    return client.containers.run(
        image, name=name or unique_name("fake-nim"), detach=True, environment=dict(env or {}),
        ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)}, labels=session_labels())
