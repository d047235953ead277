"""Reference parsing, platform selection and the registry's manifest API (httpx MockTransport, no network)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.kernel.errors import DownloadFailed, ImageNotFound, RegistryAuthFailed
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.runtimes.docker.manifests import (
    RETRY_ATTEMPTS,
    RETRY_BUDGET_S,
    BasicCredentials,
    ImageRef,
    RegistryClient,
    host_arch,
    is_loopback_registry,
    parse_image_ref,
    resolve_platform_manifest,
    select_platform_manifest,
)
from tests.fakes.clock import FakeClock

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
AMD, ARM, ATTEST = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64
KEY = "nvapi-unit-secret-key"


def index_doc(*, attestation_first: bool = True) -> dict[str, Any]:
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": AMD, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": ARM, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]
    attestation = {"mediaType": OCI_MANIFEST, "digest": ATTEST, "size": 1,
                   "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    return {"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [attestation, *entries] if attestation_first else [*entries, attestation]}


def factory(handler: Callable[[httpx.Request], httpx.Response]) -> Callable[..., RegistryClient]:
    def make(ref: ImageRef, credentials: BasicCredentials | None, **kw: Any) -> RegistryClient:
        client = httpx.Client(transport=httpx.MockTransport(handler))
        return RegistryClient(ref, credentials, client=client, clock=kw.get("clock"))

    return make


# --- references ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "registry", "repository", "reference", "url"), [
    ("127.0.0.1:5000/team/img:1.0", "127.0.0.1:5000", "team/img", "1.0",
     "http://127.0.0.1:5000/v2/team/img/manifests/1.0"),
    ("nvcr.io/nvidia/vllm:26.05.post1-py3", "nvcr.io", "nvidia/vllm", "26.05.post1-py3",
     "https://nvcr.io/v2/nvidia/vllm/manifests/26.05.post1-py3"),
    ("ollama/ollama:0.12.6", "docker.io", "ollama/ollama", "0.12.6",
     "https://registry-1.docker.io/v2/ollama/ollama/manifests/0.12.6"),
    ("docker.io/ollama/ollama", "docker.io", "ollama/ollama", "latest",
     "https://registry-1.docker.io/v2/ollama/ollama/manifests/latest"),
    ("busybox", "docker.io", "library/busybox", "latest",
     "https://registry-1.docker.io/v2/library/busybox/manifests/latest"),
    ("localhost:5000/x@" + AMD, "localhost:5000", "x", AMD, f"http://localhost:5000/v2/x/manifests/{AMD}"),
])
def test_parse_image_ref(ref: str, registry: str, repository: str, reference: str, url: str) -> None:
    parsed = parse_image_ref(ref)
    assert (parsed.registry, parsed.repository, parsed.reference, parsed.manifest_url()) == \
        (registry, repository, reference, url)


def test_registry_port_survives_in_the_engine_repository() -> None:
    assert parse_image_ref("127.0.0.1:5000/team/img:1.0").engine_repository == "127.0.0.1:5000/team/img"


@pytest.mark.parametrize(("registry", "loopback"), [
    ("127.0.0.1:5000", True), ("127.9.8.7:80", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("nvcr.io", False), ("10.0.0.1:5000", False)])
def test_only_loopback_registries_are_plain_http(registry: str, loopback: bool) -> None:
    assert is_loopback_registry(registry) is loopback


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "amd64"), ("AMD64", "amd64"), ("aarch64", "arm64"),
                                               ("arm64", "arm64")])
def test_host_arch(machine: str, arch: str) -> None:
    assert host_arch(machine) == arch


# --- platform selection -----------------------------------------------------------------------------------------


def test_select_skips_attestations_and_picks_the_host_arch() -> None:
    assert select_platform_manifest(index_doc(), "amd64")["digest"] == AMD  # type: ignore[index]
    assert select_platform_manifest(index_doc(), "arm64")["digest"] == ARM  # type: ignore[index]
    assert select_platform_manifest(index_doc(), "riscv64") is None
    assert select_platform_manifest({"manifests": []}, "amd64") is None


# --- the manifest API -------------------------------------------------------------------------------------------


def test_index_resolves_to_the_platform_digest() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept"])
        return httpx.Response(200, json=index_doc(), headers={"content-type": OCI_INDEX})

    ref = parse_image_ref("127.0.0.1:5000/team/img:multi")
    resolved = resolve_platform_manifest(ref, arch="amd64", client_factory=factory(handler))

    assert resolved is not None and (resolved.digest, resolved.platform, resolved.from_index) == \
        (AMD, "linux/amd64", True)
    assert OCI_INDEX in seen[0] and OCI_MANIFEST in seen[0]


def test_single_manifest_pins_its_own_digest_and_reads_its_platform() -> None:
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "sha256:" + "d" * 64}, "layers": []}
    body = json.dumps(manifest).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            return httpx.Response(200, json={"os": "linux", "architecture": "amd64"})
        return httpx.Response(200, content=body, headers={"content-type": OCI_MANIFEST})

    resolved = resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64",
                                         client_factory=factory(handler))

    assert resolved is not None
    assert (resolved.digest, resolved.platform, resolved.from_index) == \
        ("sha256:" + hashlib.sha256(body).hexdigest(), "linux/amd64", False)


def test_bearer_challenge_is_followed_with_the_credentials() -> None:
    token_requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            token_requests.append(request)
            return httpx.Response(200, json={"token": "tok123"})
        if request.headers.get("authorization") == "Bearer tok123":
            return httpx.Response(200, json=index_doc())
        return httpx.Response(401, headers={"www-authenticate":
                                            'Bearer realm="https://auth.example/token",service="nvcr.io",'
                                            'scope="repository:nvidia/vllm:pull"'})

    creds = BasicCredentials("$oauthtoken", Secret(KEY))
    resolved = resolve_platform_manifest(parse_image_ref("nvcr.io/nvidia/vllm:1"), arch="arm64", credentials=creds,
                                         client_factory=factory(handler))

    assert resolved is not None and resolved.digest == ARM
    (token,) = token_requests
    assert token.url.params["scope"] == "repository:nvidia/vllm:pull" and token.url.params["service"] == "nvcr.io"
    assert token.headers["authorization"] == "Basic " + base64.b64encode(f"$oauthtoken:{KEY}".encode()).decode()


def test_basic_challenge_with_credentials() -> None:
    expected = "Basic " + base64.b64encode(f"$oauthtoken:{KEY}".encode()).decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") == expected:
            return httpx.Response(200, json=index_doc())
        return httpx.Response(401, headers={"www-authenticate": 'Basic realm="x"'})

    resolved = resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64",
                                         credentials=BasicCredentials("$oauthtoken", Secret(KEY)),
                                         client_factory=factory(handler))
    assert resolved is not None and resolved.digest == AMD


@pytest.mark.parametrize("credentials", [None, BasicCredentials("$oauthtoken", Secret(KEY))])
def test_refused_access_is_registry_auth_failed_without_the_key(credentials: BasicCredentials | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"www-authenticate": 'Basic realm="x"'})

    with pytest.raises(RegistryAuthFailed) as caught:
        resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64", credentials=credentials,
                                  client_factory=factory(handler))

    assert caught.value.details["anonymous"] is (credentials is None)
    assert KEY not in json.dumps(caught.value.to_dict())


def test_missing_tag_is_image_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    with pytest.raises(ImageNotFound):
        resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:nope"), arch="amd64",
                                  client_factory=factory(handler))


def test_transient_5xx_is_retried_with_backoff_then_succeeds() -> None:
    platform_manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"size": 100},
                         "layers": [{"size": 1000}, {"size": 24}]}
    answers = iter([httpx.Response(503)] * 8 + [httpx.Response(200, json=index_doc()),
                                                 httpx.Response(200, json=platform_manifest)])
    clock = FakeClock(0.0)

    resolved = resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64", clock=clock,
                                         client_factory=factory(lambda request: next(answers)))

    assert resolved is not None and resolved.digest == AMD and resolved.size_bytes == 1124
    assert len(clock.sleeps) == 8 and clock.sleeps == sorted(clock.sleeps) and max(clock.sleeps) <= 2
    assert sum(clock.sleeps) <= RETRY_BUDGET_S


def test_a_registry_without_index_support_says_so_plainly() -> None:
    with pytest.raises(DownloadFailed) as caught:
        resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64", clock=FakeClock(0.0),
                                  client_factory=factory(lambda request: httpx.Response(415)))

    assert caught.value.details["no_index"] is True and "HTTP 415" in caught.value.message


def test_persistent_5xx_gives_up_bounded_with_a_plain_message() -> None:
    with pytest.raises(DownloadFailed) as caught:
        resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64", clock=FakeClock(0.0),
                                  client_factory=factory(lambda request: httpx.Response(503)))

    assert caught.value.details["transient"] is True and "no_index" not in caught.value.details
    assert "kept answering HTTP 503" in caught.value.message and "_Transient" not in caught.value.message


def test_persistent_5xx_or_reset_gives_up_after_bounded_attempts() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadError("connection reset by peer")

    with pytest.raises(DownloadFailed) as caught:
        resolve_platform_manifest(parse_image_ref("127.0.0.1:5000/a:1"), arch="amd64", clock=FakeClock(0.0),
                                  client_factory=factory(handler))

    assert len(calls) == RETRY_ATTEMPTS and caught.value.details["transient"] is True
    assert "ReadError" not in caught.value.message
