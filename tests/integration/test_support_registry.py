"""The registry helpers others build on: a multi-arch OCI index (with an attestation entry clients must skip)
and NGC-style basic auth."""

from __future__ import annotations

import docker
import httpx
import pytest

from tests.helpers.docker_env import unique_name
from tests.helpers.registry import MT_OCI_INDEX, MT_OCI_MANIFEST, NGC_USERNAME, LocalRegistry, RegistryError

pytestmark = pytest.mark.docker


def test_multiarch_index_lists_amd64_arm64_and_an_attestation(
    docker_client: docker.DockerClient, busybox_base: str, local_registry: LocalRegistry
) -> None:
    repo = f"multi/{unique_name('app')}"
    local_registry.push(docker_client, busybox_base, repo, "amd64-src")

    digests = local_registry.push_multiarch_index(repo, "1.0", f"{repo}:amd64-src")
    index, served_digest = local_registry.get_manifest(repo, "1.0", accept=MT_OCI_INDEX)

    assert index["mediaType"] == MT_OCI_INDEX
    assert served_digest == digests["index"]
    platforms = {e["digest"]: (e["platform"]["os"], e["platform"]["architecture"]) for e in index["manifests"]}
    assert platforms == {
        digests["amd64"]: ("linux", "amd64"),
        digests["arm64"]: ("linux", "arm64"),
        digests["attestation"]: ("unknown", "unknown"),
    }
    arm64, _ = local_registry.get_manifest(repo, digests["arm64"], accept=MT_OCI_MANIFEST)
    config = local_registry.http().get(f"/v2/{repo}/blobs/{arm64['config']['digest']}").json()
    assert config["architecture"] == "arm64"


def test_engine_pulls_the_host_platform_from_the_index(
    docker_client: docker.DockerClient, busybox_base: str, local_registry: LocalRegistry
) -> None:
    repo = f"multi/{unique_name('pull')}"
    local_registry.push(docker_client, busybox_base, repo, "src")
    digests = local_registry.push_multiarch_index(repo, "1.0", f"{repo}:src")

    distribution = docker_client.api.inspect_distribution(local_registry.ref(repo, "1.0"))
    pulled = docker_client.images.pull(local_registry.ref(repo, digests["amd64"]))

    assert distribution["Descriptor"]["digest"] == digests["index"]
    assert {p["architecture"] for p in distribution["Platforms"]} >= {"amd64", "arm64"}
    assert pulled.id == docker_client.images.get(busybox_base).id


def test_auth_registry_refuses_without_credentials_and_accepts_with_them(auth_registry: LocalRegistry) -> None:
    anonymous = httpx.get(f"{auth_registry.url}/v2/")
    wrong = httpx.get(f"{auth_registry.url}/v2/", auth=(NGC_USERNAME, "nvapi-wrong"))
    with auth_registry.http() as http:
        authorised = http.get("/v2/")

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert wrong.status_code == 401
    assert authorised.status_code == 200
    assert auth_registry.username == NGC_USERNAME


def test_engine_push_to_auth_registry_needs_the_key(
    docker_client: docker.DockerClient, busybox_base: str, auth_registry: LocalRegistry
) -> None:
    repo = f"private/{unique_name('app')}"
    anonymous = LocalRegistry(host=auth_registry.host, root=auth_registry.root, log_path=auth_registry.log_path)

    with pytest.raises(RegistryError, match="(?i)auth|unauthorized"):
        anonymous.push(docker_client, busybox_base, repo, "v1")
    digest = auth_registry.push(docker_client, busybox_base, repo, "v1")

    assert digest.startswith("sha256:")
    with pytest.raises(docker.errors.APIError):
        docker_client.login(username=NGC_USERNAME, password="nvapi-wrong", registry=auth_registry.host)
