"""Resolve an image reference to the host platform's manifest digest through the registry's own API (httpx).

``docker manifest inspect`` and docker-py's ``inspect_distribution`` only give the *index* digest; pinning the
per-platform manifest (what nvcr.io needs, NemoClaw #3885) takes ``GET /v2/<repo>/manifests/<ref>`` with the
index and manifest media types, following the registry's ``WWW-Authenticate`` challenge (Bearer token or Basic).
Registries on 127.0.0.0/8 (and ``localhost``) speak plain http; every other registry https. Docker Hub names
(``ollama/ollama``) map to ``registry-1.docker.io`` and ``library/`` for official images.
"""

from __future__ import annotations

import hashlib
import ipaddress
import platform as platform_module
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from nemoclaw_runtime.kernel.clock import Clock, SystemClock
from nemoclaw_runtime.kernel.errors import DownloadFailed, ImageNotFound, RegistryAuthFailed
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.text import loads_json, plain_reason
from nemoclaw_runtime.runtimes.docker.spec import image_repository, split_reference
from nemoclaw_runtime.runtimes.net import http_client

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)

#: Transient failures (5xx, a reset) are retried like the engine's pull: bounded in count and in time, with a
#: backoff from 0.25 s doubling to 2 s (ten attempts ride out a registry answering 503 eight times, ~12 s).
RETRY_ATTEMPTS = 10
RETRY_BUDGET_S = 30.0
#: HTTP statuses by which a registry says it cannot serve the index / manifest media types we ask for.
NO_INDEX_STATUSES = (406, 415)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

_ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "armv8": "arm64", "armv7l": "arm"}


def host_arch(machine: str | None = None) -> str:
    """The OCI architecture of ``machine`` (default ``platform.machine()``): x86_64 → amd64, aarch64 → arm64."""
    raw = (machine or platform_module.machine() or "").strip().lower()
    return _ARCH_ALIASES.get(raw, raw)


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference."""

    original: str  # what the user wrote
    registry: str  # as written (or docker.io): the docker-config key and what `docker login` takes
    repository: str  # the path inside the registry, library/ added for official Docker Hub images
    reference: str  # tag or sha256:… digest

    @property
    def engine_repository(self) -> str:
        """The repository as the engine names it (the user's spelling without tag/digest)."""
        return str(image_repository(self.original))

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def scheme(self) -> str:
        return "http" if is_loopback_registry(self.registry) else "https"

    @property
    def is_digest(self) -> bool:
        return self.reference.startswith("sha256:")

    def manifest_url(self, reference: str | None = None) -> str:
        return f"{self.scheme}://{self.api_host}/v2/{self.repository}/manifests/{reference or self.reference}"

    def blob_url(self, digest: str) -> str:
        return f"{self.scheme}://{self.api_host}/v2/{self.repository}/blobs/{digest}"


def parse_image_ref(ref: str) -> ImageRef:
    """Split ``ref`` into registry, repository and tag/digest, the way the engine does."""
    text = ref.strip()
    repo_part, reference = split_reference(text)
    first, sep, remainder = repo_part.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, repo_part
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(original=text, registry=registry, repository=path, reference=reference)


def is_loopback_registry(registry: str) -> bool:
    if registry.startswith("["):  # [::1]:5000
        host = registry[1:].split("]", 1)[0]
    else:
        host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ManifestResolution:
    digest: str  # sha256:… of the platform manifest (or the single manifest)
    platform: str | None  # linux/amd64
    from_index: bool  # True when picked out of an index / manifest list
    #: The compressed size of the platform image (config + layers) from its manifest; None when unknown.
    size_bytes: int | None = None


def select_platform_manifest(index: Mapping[str, Any], arch: str, os_name: str = "linux") -> Mapping[str, Any] | None:
    """The first ``manifests[]`` entry for ``os_name/arch`` with a digest; attestations (unknown/unknown) skipped."""
    candidates = []
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") or {}
        annotations = entry.get("annotations") or {}
        if plat.get("os") == "unknown" or annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        if plat.get("os") == os_name and plat.get("architecture") == arch and entry.get("digest"):
            candidates.append(entry)
    if arch == "arm64":  # prefer v8 (or no variant) over anything exotic
        candidates.sort(key=lambda e: (e.get("platform") or {}).get("variant") not in (None, "", "v8"))
    return candidates[0] if candidates else None


# --- HTTP with the registry's challenge ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BasicCredentials:
    username: str
    password: Secret


class RegistryClient:
    """Speaks the distribution API for one image: manifests and small blobs, anonymous or with credentials."""

    def __init__(self, ref: ImageRef, credentials: BasicCredentials | None = None, *,
                 client: httpx.Client | None = None, clock: Clock | None = None, proxy: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.ref = ref
        self.credentials = credentials
        self.clock = clock or SystemClock()
        self._own_client = client is None
        if client is None:
            use_proxy = None if is_loopback_registry(ref.registry) else proxy
            client = http_client(timeout=timeout_s, connect=10.0, follow_redirects=True, proxy=use_proxy)
        self._client = client
        self._authorization: str | None = None

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> RegistryClient:  # noqa: PYI034 - a plain class, never subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, accept: str) -> httpx.Response:
        """GET ``url``, answering one auth challenge; transient failures retried (bounded)."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS) | _StopAfterBudget(self.clock, RETRY_BUDGET_S),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            retry=tenacity.retry_if_exception(_is_transient),
            sleep=self.clock.sleep,
            reraise=True,
        )
        try:
            return retrying(self._get_once, url, accept)
        except _TransientStatus as exc:
            raise DownloadFailed(f"The registry {self.ref.registry} kept answering HTTP {exc.status} for "
                                 f"{self.ref.original} (gave up after {RETRY_ATTEMPTS} tries or "
                                 f"{RETRY_BUDGET_S:.0f} s)",
                                 remedy="the registry is failing or overloaded: run the command again later",
                                 details={"registry": self.ref.registry, "transient": True,
                                          "status": exc.status}) from None
        except httpx.TransportError as exc:
            reason = plain_reason(str(exc)) or "the connection failed"
            raise DownloadFailed(f"Cannot reach the registry {self.ref.registry}: {reason}",
                                 remedy="check the network (and HTTPS_PROXY) and the registry address",
                                 details={"registry": self.ref.registry, "transient": True}) from None

    def _get_once(self, url: str, accept: str) -> httpx.Response:
        response = self._send(url, accept)
        if response.status_code == 401:
            challenge = response.headers.get("www-authenticate", "")
            if self._answer_challenge(challenge):
                response = self._send(url, accept)
        if response.status_code >= 500:
            raise _TransientStatus(response.status_code)
        return response

    def _send(self, url: str, accept: str) -> httpx.Response:
        headers = {"Accept": accept}
        if self._authorization:
            headers["Authorization"] = self._authorization
        return self._client.get(url, headers=headers)

    def _answer_challenge(self, challenge: str) -> bool:
        scheme, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        if scheme.lower() == "basic":
            if self.credentials is None:
                return False
            self._authorization = _basic_header(self.credentials)
            return True
        if scheme.lower() == "bearer" and params.get("realm"):
            token = self._fetch_token(params)
            if token:
                self._authorization = f"Bearer {token}"
                return True
        return False

    def _fetch_token(self, params: Mapping[str, str]) -> str | None:
        query = {"service": params.get("service", ""),
                 "scope": params.get("scope") or f"repository:{self.ref.repository}:pull"}
        headers = {"Authorization": _basic_header(self.credentials)} if self.credentials else {}
        response = self._client.get(params["realm"], params=query, headers=headers)
        if response.status_code >= 500:
            raise _TransientStatus(response.status_code)
        if response.status_code != 200:
            return None
        body = _json(response)  # a token endpoint that answers garbage means "no token", not a crash
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None


class _StopAfterBudget(tenacity.stop.stop_base):
    """A tenacity stop condition on ``clock`` (the fake clock in tests): no new attempt past ``budget_s``."""

    def __init__(self, clock: Clock, budget_s: float) -> None:
        self.clock = clock
        self.budget_s = budget_s
        self.started = clock.monotonic()

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock.monotonic() - self.started >= self.budget_s


class _TransientStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (_TransientStatus, httpx.TransportError))


def _basic_header(credentials: BasicCredentials | None) -> str:
    import base64

    assert credentials is not None
    raw = f"{credentials.username}:{credentials.password.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode()


# --- resolution -----------------------------------------------------------------------------------------------------


def resolve_platform_manifest(ref: ImageRef, *, arch: str, credentials: BasicCredentials | None = None,
                              clock: Clock | None = None, proxy: str | None = None,
                              client_factory: Callable[..., RegistryClient] = RegistryClient,
                              ) -> ManifestResolution | None:
    """The host platform's manifest digest for ``ref``; ``None`` when the index lists no ``linux/<arch>``.

    Raises RegistryAuthFailed (401/403; ``details['anonymous']`` tells whether we had credentials),
    ImageNotFound (404) and DownloadFailed (transient failures after the retries; ``details['transient']``).
    """
    with client_factory(ref, credentials, clock=clock, proxy=proxy) as client:
        response = client.get(ref.manifest_url(), ACCEPT)
        _raise_for_status(ref, response, anonymous=credentials is None)
        document = _json(response)
        media_type = str(document.get("mediaType") or response.headers.get("content-type", "")).split(";")[0]
        if media_type in INDEX_TYPES or "manifests" in document:
            entry = select_platform_manifest(document, arch)
            if entry is None:
                return None
            plat = entry.get("platform") or {}
            return ManifestResolution(str(entry["digest"]), _platform_text(plat), from_index=True,
                                      size_bytes=_platform_size(client, ref, str(entry["digest"])))
        if media_type and media_type not in MANIFEST_TYPES and "layers" not in document:
            raise DownloadFailed(f"The registry {ref.registry} serves {ref.original} as {media_type}, neither an "
                                 "image index nor an OCI / Docker v2 manifest",
                                 remedy="push the image again with a current client (docker push, buildx)",
                                 details={"registry": ref.registry, "no_index": True, "transient": False})
        digest = response.headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(
            response.content).hexdigest()
        return ManifestResolution(digest, _single_platform(client, ref, document), from_index=False,
                                  size_bytes=image_size(document))


def image_size(manifest: Mapping[str, Any]) -> int | None:
    """The compressed size of an image manifest's config and layers; None when a size is missing."""
    parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    sizes = [part.get("size") for part in parts if isinstance(part, Mapping)]
    counted = [size for size in sizes if isinstance(size, int) and not isinstance(size, bool) and size >= 0]
    if not sizes or len(counted) != len(sizes):
        return None
    return sum(counted)


def _platform_size(client: RegistryClient, ref: ImageRef, digest: str) -> int | None:
    """The size of the platform manifest ``digest`` of an index (best effort: None when it cannot be read)."""
    try:
        response = client.get(ref.manifest_url(digest), ", ".join(MANIFEST_TYPES))
    except DownloadFailed:
        return None
    return image_size(_json(response)) if response.status_code == 200 else None


def _single_platform(client: RegistryClient, ref: ImageRef, manifest: Mapping[str, Any]) -> str | None:
    """The platform a single-platform image was built for, from its config blob (best effort)."""
    config_digest = (manifest.get("config") or {}).get("digest")
    if not config_digest:
        return None
    try:
        response = client.get(ref.blob_url(str(config_digest)), "*/*")
        if response.status_code != 200:
            return None
        config = loads_json(response.text)
    except (DownloadFailed, ValueError):
        return None
    return _platform_text(config) if isinstance(config, Mapping) else None


def _platform_text(plat: Mapping[str, Any]) -> str | None:
    os_name, arch = plat.get("os"), plat.get("architecture")
    if not os_name or not arch:
        return None
    variant = plat.get("variant")
    return f"{os_name}/{arch}" + (f"/{variant}" if variant else "")


def _json(response: httpx.Response) -> Mapping[str, Any]:
    try:
        document = loads_json(response.text)
    except ValueError:  # JSONDecodeError, JsonTooDeep, or a body that does not decode
        return {}
    return document if isinstance(document, Mapping) else {}


def _raise_for_status(ref: ImageRef, response: httpx.Response, *, anonymous: bool) -> None:
    status = response.status_code
    if status in (401, 403):
        raise RegistryAuthFailed(
            f"The registry {ref.registry} refused access to {ref.original} (HTTP {status})",
            remedy=f"log in: docker login {ref.registry}, or set NGC_API_KEY for nvcr.io",
            details={"registry": ref.registry, "anonymous": anonymous, "status": status})
    if status == 404:
        raise ImageNotFound(f"Image {ref.original} was not found in {ref.registry}",
                            remedy="check the image name and tag (or the NEMOCLAW_*_IMAGE override)",
                            details={"image": ref.original})
    if status in NO_INDEX_STATUSES:
        raise DownloadFailed(f"The registry {ref.registry} serves no image index for {ref.original} "
                             f"(HTTP {status}: the media types are not supported)",
                             remedy="use a registry that speaks the OCI distribution API",
                             details={"registry": ref.registry, "status": status, "no_index": True,
                                      "transient": False})
    if status >= 400:
        raise DownloadFailed(f"The registry {ref.registry} answered HTTP {status} for {ref.original}",
                             remedy="check the image reference and the registry",
                             details={"registry": ref.registry, "status": status, "transient": False})


__all__ = [
    "NO_INDEX_STATUSES", "RETRY_ATTEMPTS", "RETRY_BUDGET_S", "BasicCredentials", "ImageRef", "ManifestResolution",
    "RegistryClient", "host_arch", "image_size", "is_loopback_registry", "parse_image_ref", "resolve_platform_manifest",
    "select_platform_manifest",
]
