"""A fake Hugging Face Hub on 127.0.0.1, good enough for huggingface_hub's model_info, auth_check,
hf_hub_download and snapshot_download (pass ``endpoint=fake_hf.url``, or ``fake_hf.patch_default_endpoint``).

Repos:
- ``acme/tiny-model``: public; config.json + a valid ~256 KB model.safetensors (LFS, like the real Hub).
- ``acme/gated-model``: same files, gated. Files, auth-check: 401 without a token, 403 with a wrong one, 200 with
  ``fake_hf.token`` (all with ``X-Error-Code: GatedRepo``, which huggingface_hub maps to GatedRepoError).
  Its metadata (model_info, file tree) is public, as on the real Hub.

Routes: ``/api/models/{repo}[/revision/{rev}]``, ``/api/models/{repo}/auth-check``,
``/api/models/{repo}/tree/{rev}[/{path}]``, ``/api/whoami-v2`` and ``HEAD|GET /{repo}/resolve/{rev}/{file}`` with
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``/``X-Linked-Size``, ``Content-Length`` and ``Range`` (206/416).

Range requests are answered from the byte range asked (206), and every body sent is recorded as a
:class:`ServedSpan`; ``bytes_beyond_headers(repo)`` sums what was served of ``*.safetensors`` files past their
JSON header — the tensor data — so a test can prove a client read only headers (``safetensors_file`` builds a
valid file of given dtypes and shapes, ``sharded_safetensors_repo`` a whole sharded repo with its index).

Switches for download tests: ``slow_downloads(delay)`` (per chunk), ``drop_downloads_after(n)`` (cut the
connection mid-body, so clients resume with Range), ``stall_downloads_after(n)`` (stop sending until
``reset()``), ``rate_limit()`` (every request answered 429), ``fail_requests(n, status=503)`` (the next ``n``
requests answered ``status``, then normal again). Every request is recorded with whether it carried an
Authorization header, never the value.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

PUBLIC_REPO = "acme/tiny-model"
GATED_REPO = "acme/gated-model"
DEFAULT_CHUNK_SIZE = 64 * 1024
_MAX_STALL_S = 600.0
_API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class FakeFile:
    path: str
    content: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % self.size + self.content).hexdigest()  # noqa: S324 (git's own id)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    gated: bool = False
    commit: str | None = None  # a fixed commit id (a registry-pinned revision); else one derived from the files

    @property
    def sha(self) -> str:
        if self.commit:
            return self.commit
        digest = hashlib.sha1(self.repo_id.encode())  # noqa: S324 (a stable fake commit id)
        for path in sorted(self.files):
            digest.update(self.files[path].git_oid.encode())
        return digest.hexdigest()

    def has_revision(self, revision: str) -> bool:
        return revision in ("main", self.sha)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    authorized: bool  # an Authorization header was present (its value is never kept)
    token_valid: bool  # it carried the fake's token
    range: str | None


def tiny_safetensors(rows: int = 1000, cols: int = 64) -> bytes:
    """A valid safetensors file with one F32 tensor (rows*cols*4 bytes of data)."""
    size = rows * cols * 4
    header = {
        "__metadata__": {"format": "pt"},
        "model.embed_tokens.weight": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, size]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    return struct.pack("<Q", len(raw)) + raw + data


def tiny_model_files() -> dict[str, bytes]:
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000,
        "max_position_embeddings": 2048, "torch_dtype": "float32",
    }
    return {"config.json": json.dumps(config, indent=2).encode(), "model.safetensors": tiny_safetensors()}


@dataclass(frozen=True)
class ServedSpan:
    """Bytes ``[start, end)`` of ``path`` in ``repo_id`` sent in one response body."""

    repo_id: str
    path: str
    start: int
    end: int


#: Bytes per element of the safetensors dtypes the builders below accept.
SAFETENSORS_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "F16": 2, "BF16": 2,
                           "I32": 4, "F32": 4, "I64": 8, "F64": 8}


def safetensors_file(tensors: Mapping[str, tuple[str, list[int]]], fill: int = 0x5A) -> bytes:
    """A valid safetensors file holding ``{name: (dtype, shape)}``; every data byte is ``fill``."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = SAFETENSORS_DTYPE_SIZES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes([fill]) * offset


def safetensors_header_end(content: bytes) -> int:
    """Offset of the first data byte of a safetensors file (8 + the header length)."""
    return 8 + struct.unpack("<Q", content[:8])[0]


def sharded_safetensors_repo(shards: list[Mapping[str, tuple[str, list[int]]]],
                             config: Mapping[str, Any]) -> dict[str, bytes]:
    """Files of a sharded repo: ``config.json``, ``model.safetensors.index.json`` and one file per shard."""
    files: dict[str, bytes] = {"config.json": json.dumps(config, indent=2).encode()}
    weight_map: dict[str, str] = {}
    total = 0
    for number, tensors in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        files[name] = safetensors_file(tensors)
        total += len(files[name]) - safetensors_header_end(files[name])
        weight_map.update({tensor: name for tensor in tensors})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    return files


@dataclass
class _Switches:
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_delay_s: float = 0.0
    drop_after_bytes: int | None = None
    drops_left: int = 0
    stall_after_bytes: int | None = None
    rate_limited: bool = False
    failures_left: int = 0
    failure_status: int = 503


class FakeHub:
    """The server. ``url``, ``token`` and ``requests`` are what tests use; see the module docstring."""

    def __init__(self) -> None:
        self.token = "hf_fake_" + secrets.token_hex(16)
        self.repos: dict[str, FakeRepo] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._served: list[ServedSpan] = []
        self._switches = _Switches()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-hf", daemon=True)
        self.reset()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def served(self) -> list[ServedSpan]:
        with self._lock:
            return list(self._served)

    def bytes_beyond_headers(self, repo_id: str) -> int:
        """Bytes of tensor data (past each safetensors file's JSON header) served for ``repo_id`` so far."""
        repo = self.repos[repo_id]
        total = 0
        for span in self.served:
            if span.repo_id != repo_id or not span.path.endswith(".safetensors"):
                continue
            data_start = safetensors_header_end(repo.files[span.path].content)
            total += max(0, span.end - max(span.start, data_start))
        return total

    def requests_to(self, fragment: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if fragment in r.path and (method is None or r.method == method)]

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Back to the two default repos, normal speed, no recorded requests; wakes any stalled download."""
        with self._lock:
            self._requests.clear()
            self._served.clear()
            self._switches = _Switches()
            self._release.set()
            self._release = threading.Event()
            self.repos = {}
        self.add_repo(PUBLIC_REPO, tiny_model_files())
        self.add_repo(GATED_REPO, tiny_model_files(), gated=True)

    def add_repo(self, repo_id: str, files: Mapping[str, bytes], *, gated: bool = False,
                 commit: str | None = None) -> FakeRepo:
        """Serve another repo; ``*.safetensors``/``*.bin``/``*.gguf`` files are LFS files, like on the Hub.
        ``commit`` fixes its commit id (to serve a revision the registry pins)."""
        entries = {path: FakeFile(path, data, lfs=path.endswith((".safetensors", ".bin", ".gguf")))
                   for path, data in files.items()}
        repo = FakeRepo(repo_id, entries, gated=gated, commit=commit)
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    # --- download behaviour switches -------------------------------------------------------------------
    def slow_downloads(self, chunk_delay_s: float, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        with self._lock:
            self._switches.chunk_delay_s = chunk_delay_s
            self._switches.chunk_size = chunk_size

    def drop_downloads_after(self, n_bytes: int, times: int = 1) -> None:
        """The next ``times`` file bodies are cut (connection closed) after ``n_bytes``."""
        with self._lock:
            self._switches.drop_after_bytes = n_bytes
            self._switches.drops_left = times

    def stall_downloads_after(self, n_bytes: int) -> None:
        """File bodies stop after ``n_bytes`` with the connection open, until ``reset()`` (max 10 min)."""
        with self._lock:
            self._switches.stall_after_bytes = n_bytes

    def rate_limit(self) -> None:
        """Every request is answered ``429 Too Many Requests`` (as the Hub answers anonymous clients over quota)."""
        with self._lock:
            self._switches.rate_limited = True

    def fail_requests(self, times: int, status: int = 503) -> None:
        """The next ``times`` requests (any route) are answered ``status``; later ones normally."""
        with self._lock:
            self._switches.failures_left = times
            self._switches.failure_status = status

    def _take_failure(self) -> int | None:
        with self._lock:
            if self._switches.rate_limited:
                return 429
            if self._switches.failures_left > 0:
                self._switches.failures_left -= 1
                return self._switches.failure_status
            return None

    def patch_default_endpoint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """For code that relies on HF_ENDPOINT: huggingface_hub reads it once at import, so patch both."""
        from huggingface_hub import constants

        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            self.url + "/{repo_id}/resolve/{revision}/{filename}")

    # --- used by the handler ---------------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _record_served(self, span: ServedSpan) -> None:
        with self._lock:
            self._served.append(span)

    def _take_switches(self) -> tuple[_Switches, threading.Event, bool]:
        """A snapshot of the switches for one body, consuming one drop if armed."""
        with self._lock:
            switches = _Switches(**vars(self._switches))
            drop = self._switches.drop_after_bytes is not None and self._switches.drops_left > 0
            if drop:
                self._switches.drops_left -= 1
            return switches, self._release, drop


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], hub: FakeHub) -> None:
        self.hub = hub
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass  # quiet: pytest output is for test failures

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._dispatch(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(head=True)

    # --- routing -------------------------------------------------------------------------------------
    def _dispatch(self, *, head: bool) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        auth = self.headers.get("Authorization")
        self.token_valid = auth == f"Bearer {hub.token}"
        hub._record(RecordedRequest(self.command, unquote(split.path), split.query, auth is not None,
                                    self.token_valid, self.headers.get("Range")))
        try:
            failure = hub._take_failure()
            if failure is not None:
                return self._error(failure, None, "Too Many Requests" if failure == 429 else "Service Unavailable",
                                   {"Retry-After": "0"} if failure == 429 else None)
            self._route(hub, split.path, parse_qs(split.query), head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, hub: FakeHub, path: str, query: dict[str, list[str]], head: bool) -> None:
        if path == "/api/whoami-v2":
            return self._whoami()
        if match := _API_RE.match(path):
            return self._api(hub, unquote(match["repo"]), match["rest"] or "", query)
        if match := _RESOLVE_RE.match(path):
            return self._resolve(hub, unquote(match["repo"]), unquote(match["rev"]), unquote(match["file"]), head)
        return self._error(404, None, "Not found")

    def _api(self, hub: FakeHub, repo_id: str, rest: str, query: dict[str, list[str]]) -> None:
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if rest == "/auth-check":
            if self._refuse_gated(repo):
                return None
            return self._json({"ok": True})
        parts = [unquote(p) for p in rest.split("/")[1:]]
        if not parts:
            return self._json(_model_info(repo, "blobs" in query))
        if parts[0] == "revision" and len(parts) == 2:
            if not repo.has_revision(parts[1]):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {parts[1]}")
            return self._json(_model_info(repo, "blobs" in query))
        if parts[0] == "tree" and len(parts) >= 2:
            if not repo.has_revision(parts[1]):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {parts[1]}")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._json(_tree(repo, "/".join(parts[2:]), recursive))
        return self._error(404, None, "Not found")

    def _whoami(self) -> None:
        if not self.token_valid:
            return self._error(401, None, "Invalid credentials in Authorization header")
        return self._json({"type": "user", "name": "fake-user", "auth": {"type": "access_token"}})

    # --- files -----------------------------------------------------------------------------------------
    def _resolve(self, hub: FakeHub, repo_id: str, revision: str, filename: str, head: bool) -> None:
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if self._refuse_gated(repo):
            return None
        if not repo.has_revision(revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        file = repo.files.get(filename)
        if file is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist", {"X-Repo-Commit": repo.sha})
        byte_range = self._parse_range(file.size)
        if byte_range is None:
            return self._error(416, None, "Range not satisfiable", {"Content-Range": f"bytes */{file.size}"})
        start, end = byte_range
        partial = (start, end) != (0, file.size - 1) and self.headers.get("Range") is not None
        self.send_response(206 if partial else 200)
        for name, value in _file_headers(repo, file).items():
            self.send_header(name, value)
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{file.size}")
        self.send_header("Content-Length", str(end - start + 1 if file.size else 0))
        self.end_headers()
        if not head:
            if file.size:
                hub._record_served(ServedSpan(repo_id, filename, start, end + 1))
            self._send_body(hub, file.content[start:end + 1])

    def _parse_range(self, size: int) -> tuple[int, int] | None:
        """(start, end) inclusive; the whole file when no usable Range; None when unsatisfiable."""
        header = self.headers.get("Range")
        match = _RANGE_RE.match(header.strip()) if header else None
        if match is None or (not match[1] and not match[2]):
            return 0, max(size - 1, 0)
        if not match[1]:  # suffix range: the last N bytes
            return max(size - int(match[2]), 0), size - 1
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
        if start >= size or start > end:
            return None
        return start, end

    def _send_body(self, hub: FakeHub, body: bytes) -> None:
        switches, release, drop = hub._take_switches()
        sent = 0
        while sent < len(body):
            if drop and switches.drop_after_bytes is not None and sent >= switches.drop_after_bytes:
                self._cut_connection()
                return
            if switches.stall_after_bytes is not None and sent >= switches.stall_after_bytes:
                release.wait(_MAX_STALL_S)
                self._cut_connection()
                return
            limit = len(body)
            for threshold in (switches.drop_after_bytes if drop else None, switches.stall_after_bytes):
                if threshold is not None and threshold > sent:
                    limit = min(limit, threshold)
            chunk = body[sent:min(sent + switches.chunk_size, limit)]
            self.wfile.write(chunk)
            self.wfile.flush()
            sent += len(chunk)
            if switches.chunk_delay_s > 0 and sent < len(body):
                release.wait(switches.chunk_delay_s)

    def _cut_connection(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- auth and responses --------------------------------------------------------------------------
    def _refuse_gated(self, repo: FakeRepo) -> bool:
        """Send the Hub's gated-repo refusal when needed; True when the request was refused."""
        if not repo.gated or self.token_valid:
            return False
        if self.headers.get("Authorization") is None:
            self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have access to "
                                          "it and be authenticated to access it. Please log in.")
        else:
            self._error(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in the "
                                          "authorized list.")
        return True

    def _json(self, payload: Any, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, extra: Mapping[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _file_headers(repo: FakeRepo, file: FakeFile) -> dict[str, str]:
    headers = {
        "X-Repo-Commit": repo.sha,
        "ETag": f'"{file.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(file.path.rsplit('/', 1)[-1])}",
    }
    if file.lfs:
        headers["X-Linked-Etag"] = f'"{file.etag}"'
        headers["X-Linked-Size"] = str(file.size)
    return headers


def _model_info(repo: FakeRepo, blobs: bool) -> dict[str, Any]:
    siblings = []
    for file in repo.files.values():
        sibling: dict[str, Any] = {"rfilename": file.path}
        if blobs:
            sibling.update(size=file.size, blobId=file.git_oid)
            if file.lfs:
                sibling["lfs"] = {"size": file.size, "sha256": file.sha256, "pointerSize": 134}
        siblings.append(sibling)
    return {
        "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
        "sha": repo.sha, "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
        "private": False, "gated": "manual" if repo.gated else False, "disabled": False,
        "downloads": 0, "likes": 0, "library_name": "transformers", "pipeline_tag": "text-generation",
        "tags": ["transformers", "safetensors", "llama", "text-generation"],
        "siblings": siblings, "usedStorage": sum(f.size for f in repo.files.values()),
    }


def _tree(repo: FakeRepo, prefix: str, recursive: bool) -> list[dict[str, Any]]:
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    entries: list[dict[str, Any]] = []
    folders: set[str] = set()
    for file in repo.files.values():
        if not file.path.startswith(base):
            continue
        rest = file.path[len(base):]
        if "/" in rest and not recursive:
            folders.add(base + rest.split("/", 1)[0])
            continue
        entry: dict[str, Any] = {"type": "file", "oid": file.git_oid, "size": file.size, "path": file.path}
        if file.lfs:
            entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
        entries.append(entry)
    folder_entries = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}  # noqa: S324
                      for f in sorted(folders)]
    return folder_entries + entries


# --- fixtures (register with: from tests.fake_servers.fake_hf import fake_hf, fake_hf_server) --------------------
@pytest.fixture(scope="session")
def fake_hf_server() -> Iterator[FakeHub]:
    hub = FakeHub().start()
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture
def fake_hf(fake_hf_server: FakeHub) -> Iterator[FakeHub]:
    """The fake Hub, reset for this test (default repos and speed, no recorded requests)."""
    fake_hf_server.reset()
    yield fake_hf_server
    fake_hf_server.reset()  # wakes anything this test left stalled


__all__ = [
    "GATED_REPO", "PUBLIC_REPO", "SAFETENSORS_DTYPE_SIZES", "FakeFile", "FakeHub", "FakeRepo", "RecordedRequest",
    "ServedSpan", "fake_hf", "fake_hf_server", "safetensors_file", "safetensors_header_end",
    "sharded_safetensors_repo", "tiny_model_files", "tiny_safetensors",
]
