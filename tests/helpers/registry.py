"""A real OCI registry for tests: Debian's ``/usr/bin/docker-registry`` (distribution 2.8) as a subprocess.

It listens on 127.0.0.1:<free port> with its storage in a temp dir; the engine treats 127.0.0.0/8 registries as
insecure-allowed, so pushes and pulls need no daemon config. ``auth_registry`` adds htpasswd (bcrypt) basic
auth with the NGC-style user ``$oauthtoken``.

    digest = local_registry.push(docker_client, "nemoclaw-test/app:abc", "team/app", "1.0")
    digests = local_registry.push_multiarch_index("team/app", "multi", "team/app:1.0")
    # {"index": ..., "amd64": ..., "arm64": ..., "attestation": ...}

A multi-arch index is assembled through the registry's HTTP API (no buildx): the amd64 image's config and
layers are reused, a second config says arm64, and an ``unknown/unknown`` attestation entry is added that
clients must skip, as on nvcr.io and Docker Hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from tests.helpers.docker_env import free_port

if TYPE_CHECKING:
    import docker

REGISTRY_BINARY = "/usr/bin/docker-registry"
NGC_USERNAME = "$oauthtoken"

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_IN_TOTO = "application/vnd.in-toto+json"
ACCEPT_ALL_MANIFESTS = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])

_READY_TIMEOUT_S = 20.0
_START_ATTEMPTS = 3
_HTTP_TIMEOUT_S = 30.0


class RegistryError(RuntimeError):
    """The test registry failed to start, or refused something a helper asked of it."""


@dataclass
class LocalRegistry:
    """A running docker-registry. ``password`` is a throwaway test key, never a real secret."""

    host: str
    root: Path
    log_path: Path
    username: str | None = None
    password: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def auth_config(self) -> dict[str, str] | None:
        """docker-py's ``auth_config`` for pushes/pulls, or None when the registry has no auth."""
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password}

    def ref(self, repo: str, tag_or_digest: str) -> str:
        """``127.0.0.1:PORT/repo:tag`` or ``127.0.0.1:PORT/repo@sha256:…``."""
        separator = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{separator}{tag_or_digest}"

    def http(self) -> httpx.Client:
        """An httpx client on the registry's API, with basic auth when the registry wants it."""
        auth = (self.username, self.password) if self.username and self.password else None
        return httpx.Client(base_url=self.url, auth=auth, timeout=_HTTP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # --- through the engine ----------------------------------------------------------------------------
    def push(self, client: docker.DockerClient, local_tag: str, repo: str, tag: str) -> str:
        """Tag ``local_tag`` as ``host/repo:tag``, push it through the engine, return the manifest digest."""
        target = f"{self.host}/{repo}"
        client.images.get(local_tag).tag(target, tag)
        digest: str | None = None
        events = client.api.push(target, tag=tag, stream=True, decode=True, auth_config=self.auth_config)
        for event in events:
            if "error" in event:
                raise RegistryError(f"push of {target}:{tag} failed: {event['error']}")
            digest = (event.get("aux") or {}).get("Digest", digest)
        if digest is None:
            raise RegistryError(f"push of {target}:{tag} reported no digest")
        return str(digest)

    # --- through the HTTP API ---------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str, accept: str = ACCEPT_ALL_MANIFESTS) -> tuple[dict[str, Any], str]:
        """The manifest (or index) document and its digest, as a client asking with ``accept`` sees them."""
        with self.http() as http:
            response = http.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
            _raise_for(response, f"GET manifest {repo}:{reference}")
            digest = response.headers.get("Docker-Content-Digest") or _sha256(response.content)
            return response.json(), digest

    def push_multiarch_index(
        self, repo: str, tag: str, amd64_source_repo_tag: str, *, with_attestation: bool = True
    ) -> dict[str, str]:
        """Publish ``repo:tag`` as an OCI index: amd64 (the source image), arm64 (same layers, a config saying
        arm64) and, unless disabled, an ``unknown/unknown`` attestation manifest.

        ``amd64_source_repo_tag`` is ``repo:tag`` or ``repo@digest`` already in this registry (see ``push``).
        Returns the digests: ``index``, ``amd64``, ``arm64`` and ``attestation`` (when added).
        """
        source_repo, source_ref = _split_reference(amd64_source_repo_tag)
        with self.http() as http:
            target = _IndexBuilder(http, repo)
            manifest, config_bytes = target.fetch_image(source_repo, source_ref)
            for blob in [manifest["config"], *manifest["layers"]]:
                target.ensure_blob(source_repo, blob["digest"])
            layers = [_as_oci_layer(layer) for layer in manifest["layers"]]
            # amd64 keeps the config bytes as pushed, so pulling it gives the very image that was pushed.
            digests = {"amd64": target.put_image(config_bytes, layers)}
            arm_config = {**json.loads(config_bytes), "architecture": "arm64", "variant": "v8"}
            digests["arm64"] = target.put_image(_canonical(arm_config), layers)
            entries = [
                target.index_entry(digests["amd64"], {"architecture": "amd64", "os": "linux"}),
                target.index_entry(digests["arm64"], {"architecture": "arm64", "os": "linux", "variant": "v8"}),
            ]
            if with_attestation:
                digests["attestation"] = target.put_attestation(digests["amd64"])
                entry = target.index_entry(digests["attestation"], {"architecture": "unknown", "os": "unknown"})
                entry["annotations"] = {"vnd.docker.reference.digest": digests["amd64"],
                                        "vnd.docker.reference.type": "attestation-manifest"}
                entries.append(entry)
            index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
            digests["index"] = target.put_manifest(tag, index, MT_OCI_INDEX)
        return digests

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class _IndexBuilder:
    """Blob and manifest uploads into one repository, remembering each manifest's size for the index."""

    def __init__(self, http: httpx.Client, repo: str) -> None:
        self.http = http
        self.repo = repo
        self.sizes: dict[str, int] = {}

    def fetch_image(self, repo: str, reference: str) -> tuple[dict[str, Any], bytes]:
        accept = f"{MT_DOCKER_MANIFEST}, {MT_OCI_MANIFEST}"
        response = self.http.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
        _raise_for(response, f"GET manifest {repo}:{reference}")
        manifest = response.json()
        if "layers" not in manifest:
            raise RegistryError(f"{repo}:{reference} is not a single-platform image manifest")
        blob = self.http.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}", follow_redirects=True)
        _raise_for(blob, "GET config blob")
        return manifest, blob.content

    def ensure_blob(self, from_repo: str, digest: str) -> None:
        if self.http.head(f"/v2/{self.repo}/blobs/{digest}").status_code == 200:
            return
        mount = self.http.post(f"/v2/{self.repo}/blobs/uploads/", params={"mount": digest, "from": from_repo})
        if mount.status_code == 201:
            return
        _raise_for(mount, "start blob upload")
        data = self.http.get(f"/v2/{from_repo}/blobs/{digest}", follow_redirects=True)
        _raise_for(data, f"GET blob {digest}")
        self._finish_upload(mount, data.content, digest)

    def upload_blob(self, data: bytes) -> dict[str, Any]:
        digest = _sha256(data)
        if self.http.head(f"/v2/{self.repo}/blobs/{digest}").status_code != 200:
            started = self.http.post(f"/v2/{self.repo}/blobs/uploads/")
            _raise_for(started, "start blob upload")
            self._finish_upload(started, data, digest)
        return {"digest": digest, "size": len(data)}

    def _finish_upload(self, started: httpx.Response, data: bytes, digest: str) -> None:
        location = started.headers["Location"]
        # Append, do not pass params=: httpx would replace the upload's own _state query parameter.
        separator = "&" if "?" in location else "?"
        done = self.http.put(
            f"{location}{separator}digest={quote(digest)}", content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _raise_for(done, f"PUT blob {digest}")

    def put_image(self, config: bytes, layers: list[dict[str, Any]]) -> str:
        config_blob = self.upload_blob(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, **config_blob},
            "layers": layers,
        }
        return self.put_manifest(None, manifest, MT_OCI_MANIFEST)

    def put_attestation(self, subject_digest: str) -> str:
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "test-image", "digest": {"sha256": subject_digest.removeprefix("sha256:")}}],
            "predicate": {"builder": {"id": "nemoclaw-tests"}},
        }
        layer_blob = self.upload_blob(_canonical(statement))
        config = {"architecture": "unknown", "os": "unknown", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [layer_blob["digest"]]}}
        config_blob = self.upload_blob(_canonical(config))
        layer = {"mediaType": MT_IN_TOTO, **layer_blob,
                 "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}
        manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                    "config": {"mediaType": MT_OCI_CONFIG, **config_blob}, "layers": [layer]}
        return self.put_manifest(None, manifest, MT_OCI_MANIFEST)

    def index_entry(self, digest: str, platform: dict[str, str]) -> dict[str, Any]:
        return {"mediaType": MT_OCI_MANIFEST, "digest": digest, "size": self.sizes[digest], "platform": platform}

    def put_manifest(self, tag: str | None, document: dict[str, Any], media_type: str) -> str:
        body = _canonical(document)
        digest = _sha256(body)
        response = self.http.put(
            f"/v2/{self.repo}/manifests/{tag or digest}", content=body, headers={"Content-Type": media_type}
        )
        _raise_for(response, f"PUT manifest {self.repo}:{tag or digest}")
        self.sizes[digest] = len(body)
        return response.headers.get("Docker-Content-Digest", digest)


def _as_oci_layer(layer: dict[str, Any]) -> dict[str, Any]:
    # Same bytes (gzip tar) under the OCI name, so the whole index is OCI like nvcr.io's.
    return {"mediaType": MT_OCI_LAYER, "digest": layer["digest"], "size": layer["size"]}


def _split_reference(reference: str) -> tuple[str, str]:
    if "@" in reference:
        repo, digest = reference.split("@", 1)
        return repo, digest
    repo, _, tag = reference.rpartition(":")
    if not repo or "/" in tag:
        raise ValueError(f"expected repo:tag or repo@digest, got {reference!r}")
    return repo, tag


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise RegistryError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


# --- process management -------------------------------------------------------------------------------------
def write_htpasswd(path: Path, username: str, password: str) -> None:
    """A bcrypt htpasswd file. The password goes to htpasswd on stdin (-i), never on its argv."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        subprocess.run(
            [htpasswd, "-Bic", str(path), username], input=password.encode(), check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
        )
        return
    try:
        import bcrypt
    except ImportError as exc:
        raise RegistryError("need htpasswd (apt-get install apache2-utils) or the bcrypt module") from exc
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    path.write_text(f"{username}:{hashed}\n")


def _write_config(workdir: Path, port: int, htpasswd: Path | None, realm: str) -> Path:
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": realm, "path": str(htpasswd)}}
    path = workdir / f"config-{port}.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML; no YAML writer needed
    return path


def start_registry(
    workdir: Path, *, username: str | None = None, password: str | None = None, realm: str = "nemoclaw-test"
) -> LocalRegistry:
    """Start docker-registry in ``workdir`` and wait (bounded) until ``/v2/`` answers. Call ``.stop()`` after."""
    if not Path(REGISTRY_BINARY).exists():
        raise RegistryError(f"{REGISTRY_BINARY} missing: apt-get install docker-registry (scripts/test.sh does)")
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if username is not None and password is not None:
        htpasswd = workdir / "htpasswd"
        write_htpasswd(htpasswd, username, password)
    last_error = ""
    for _ in range(_START_ATTEMPTS):  # another process may grab the free port between probe and bind
        port = free_port()
        registry = LocalRegistry(host=f"127.0.0.1:{port}", root=workdir / "data",
                                 log_path=workdir / f"registry-{port}.log", username=username, password=password)
        registry.process = _spawn(_write_config(workdir, port, htpasswd, realm), registry.log_path)
        if _wait_ready(registry):
            return registry
        registry.stop()
        last_error = registry.log_tail()
        if "address already in use" not in last_error:
            break
    raise RegistryError(f"docker-registry did not become ready; log tail:\n{last_error}")


def _spawn(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}  # no stray overrides
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def _wait_ready(registry: LocalRegistry) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            assert registry.process is not None
            if registry.process.poll() is not None:
                return False
            with contextlib.suppress(httpx.TransportError):
                if http.get(f"{registry.url}/v2/").status_code in (200, 401):
                    return True
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def running_registry(
    workdir: Path, *, username: str | None = None, password: str | None = None
) -> Iterator[LocalRegistry]:
    registry = start_registry(workdir, username=username, password=password)
    try:
        yield registry
    finally:
        registry.stop()


# --- fixtures (registered in tests/integration/conftest.py) ---------------------------------------------------
@pytest.fixture
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A fresh registry without auth, stopped after the test."""
    with running_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A fresh registry with NGC-style basic auth: user ``$oauthtoken``, a random key as password."""
    key = "nvapi-test-" + secrets.token_hex(16)
    with running_registry(tmp_path_factory.mktemp("auth-registry"), username=NGC_USERNAME, password=key) as registry:
        yield registry
