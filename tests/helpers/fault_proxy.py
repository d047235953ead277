"""A threaded HTTP proxy on 127.0.0.1 in front of a test registry that injects registry faults (tests/faults).

* ``fail_manifests``: the first N manifest requests (``GET|HEAD /v2/<repo>/manifests/<ref>``) are answered
  ``503 Service Unavailable``; every one after that passes through — a registry that hiccups, then recovers.
* ``throttle_bytes_per_s`` / ``throttle_min_size``: blobs at least that large are sent at that rate (so a pull
  lasts long enough to restart an engine under it); smaller blobs go at full speed.

It counts what it saw: ``manifest_503s``, ``blob_gets`` (digest → GETs begun) and ``blobs_done`` (digests whose
body was sent in full, in order). Every loop is bounded: a throttled blob never takes more than ``MAX_BLOB_S``.

    with FaultProxy(registry.host, fail_manifests=8) as proxy:
        ...  # pull f"{proxy.host}/team/img:1.0"
"""

from __future__ import annotations

import collections
import contextlib
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from tests.helpers.local_server import LocalServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate",
              "proxy-authorization", "content-length"}
CHUNK = 16 * 1024
MAX_BLOB_S = 120.0  # a throttled blob is never sent slower than this in total


class FaultProxy(LocalServer):
    thread_name = "fault-proxy"

    def __init__(self, upstream: str, *, fail_manifests: int = 0, throttle_bytes_per_s: int | None = None,
                 throttle_min_size: int = 0) -> None:
        self.upstream = upstream
        self.fail_manifests = fail_manifests
        self.throttle_bytes_per_s = throttle_bytes_per_s
        self.throttle_min_size = throttle_min_size
        self.manifest_503s = 0
        self.manifest_requests = 0
        self.blob_gets: collections.Counter[str] = collections.Counter()
        self.blobs_done: list[str] = []
        self.throttled_started_at: float | None = None  # time.monotonic() when a throttled blob began
        super().__init__()

    def take_manifest_fault(self) -> bool:
        with self._lock:
            self.manifest_requests += 1
            if self.manifest_503s < self.fail_manifests:
                self.manifest_503s += 1
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any  # the LocalServer's HTTP server; .proxy is the FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: tests read the counters
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        self._forward("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._forward("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._forward("PATCH")

    def _forward(self, method: str) -> None:
        proxy = self.server.proxy
        if method in ("GET", "HEAD") and "/manifests/" in self.path and proxy.take_manifest_fault():
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method == "GET":
                self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else None
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"]
        digest = self.path.rsplit("/blobs/", 1)[1].split("?")[0] if "/blobs/sha256:" in self.path else None
        with httpx.Client(base_url=f"http://{proxy.upstream}", timeout=60, follow_redirects=False) as client, \
                client.stream(method, self.path, headers=headers, content=body_in) as upstream:
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.multi_items():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            size = int(upstream.headers.get("content-length") or 0)
            if method == "HEAD":
                self.send_header("Content-Length", str(size))
                self.end_headers()
                return
            if method == "GET" and digest and upstream.status_code == 200 and size:
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self._send_blob(proxy, digest, size, upstream.iter_raw(CHUNK))
                return
            content = upstream.read()
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    def _send_blob(self, proxy: FaultProxy, digest: str, size: int, chunks: Any) -> None:
        with proxy._lock:
            proxy.blob_gets[digest] += 1
        rate = proxy.throttle_bytes_per_s if size >= proxy.throttle_min_size else None
        if rate:
            rate = max(rate, int(size / MAX_BLOB_S) + 1)
            with proxy._lock:
                proxy.throttled_started_at = proxy.throttled_started_at or time.monotonic()
        started, sent = time.monotonic(), 0
        with contextlib.suppress(OSError):  # the client (the engine) may go away at any time: that is the point
            for chunk in chunks:
                if proxy._stopping.is_set():
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                if rate:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(min(ahead, 1.0))
            self.wfile.flush()
            if sent == size:
                with proxy._lock:
                    proxy.blobs_done.append(digest)


FaultProxy.handler = _Handler  # the class is defined above its handler

__all__ = ["FaultProxy"]

