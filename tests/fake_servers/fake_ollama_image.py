"""The fake Ollama image (fixtures/images/fake-ollama): busybox + an ``ollama`` script that serves Ollama's HTTP API.

    ref = fake_ollama_registry.ref()                                  # 127.0.0.1:<port>/nemoclaw-test/fake-ollama:…
    ref = fake_ollama_registry.ref({"FAKE_OLLAMA_NO_TOOLS": "1"})     # a variant with switches baked in

The driver's container spec carries no test switches, so each switch set is its own image: the same files plus
``ENV`` lines (the build cache makes a variant cost one tiny layer). Images are built the way
``tests/fake_servers/fake_vllm.py`` builds the fake vLLM (``build_busybox_image``) and pushed to a docker-registry
(``tests/helpers/registry.py``) kept for the whole session, since ``up`` pulls pinned to a registry digest.
Switches: see fixtures/images/fake-ollama/ollama.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.docker_env import unique_name
from tests.helpers.images import build_busybox_image
from tests.helpers.registry import LocalRegistry, running_registry

if TYPE_CHECKING:
    import docker

FAKE_OLLAMA_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "images" / "fake-ollama"
OLLAMA_PATH = "/bin/ollama"
HANDLER_PATH = "/usr/local/lib/fake-ollama/handler.sh"
CONTAINER_PORT = 11434
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "OLLAMA_HOST": f"0.0.0.0:{CONTAINER_PORT}"}


def fake_ollama_files() -> dict[str, str]:
    return {
        OLLAMA_PATH: (FAKE_OLLAMA_DIR / "ollama").read_text(encoding="utf-8"),
        HANDLER_PATH: (FAKE_OLLAMA_DIR / "handler.sh").read_text(encoding="utf-8"),
    }


def build_fake_ollama_image(client: docker.DockerClient, tag: str, switches: Mapping[str, str] | None = None) -> str:
    """Build the image as fixtures/images/fake-ollama/Dockerfile describes, plus ``switches`` as ENV; returns its id."""
    return build_busybox_image(client, tag, fake_ollama_files(), env={**BASE_ENV, **(switches or {})},
                               entrypoint=[OLLAMA_PATH], cmd=["serve"])


@dataclass
class FakeOllamaRegistry:
    """Fake Ollama variants in a session registry, built and pushed on first use."""

    client: docker.DockerClient
    registry: LocalRegistry
    session: str
    repo: str = "nemoclaw-test/fake-ollama"
    _refs: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict)

    def ref(self, switches: Mapping[str, str] | None = None) -> str:
        """``127.0.0.1:<port>/nemoclaw-test/fake-ollama:<variant>`` for this switch set."""
        key = tuple(sorted((switches or {}).items()))
        if key not in self._refs:
            variant = f"{self.session[:8]}-v{len(self._refs)}"
            local = f"nemoclaw-test/fake-ollama:{variant}"
            build_fake_ollama_image(self.client, local, dict(key))
            self.registry.push(self.client, local, self.repo, variant)
            self._refs[key] = self.registry.ref(self.repo, variant)
        return self._refs[key]


@pytest.fixture(scope="session")
def fake_ollama_image(docker_client: docker.DockerClient, test_session_id: str) -> str:
    """Tag of the plain fake Ollama image (local only), built once per test session."""
    tag = f"nemoclaw-test/fake-ollama:{test_session_id[:12]}"
    build_fake_ollama_image(docker_client, tag)
    return tag


@pytest.fixture(scope="session")
def fake_ollama_registry(docker_client: docker.DockerClient, test_session_id: str,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOllamaRegistry]:
    """A docker-registry for the session with the fake Ollama variants pushed on demand (``.ref(switches)``)."""
    with running_registry(tmp_path_factory.mktemp("ollama-registry")) as registry:
        yield FakeOllamaRegistry(docker_client, registry, test_session_id)


def remove_ollama_container(client: docker.DockerClient, name: str, volume: str | None = None) -> None:
    """Remove the container ``name`` and its model volume (``<name>-models`` unless given), if they exist."""
    import docker as docker_module

    try:
        client.containers.get(name).remove(force=True, v=True)
    except docker_module.errors.NotFound:
        pass
    try:
        client.volumes.get(volume or f"{name}-models").remove(force=True)
    except docker_module.errors.NotFound:
        pass


def unique_ollama_name() -> str:
    return unique_name("nrt-ollama")


__all__ = ["FakeOllamaRegistry", "build_fake_ollama_image", "fake_ollama_files", "fake_ollama_image",
           "fake_ollama_registry", "remove_ollama_container", "unique_ollama_name"]
