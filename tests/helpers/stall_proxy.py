"""A small threaded HTTP proxy on 127.0.0.1 in front of a test registry that can misbehave on blob downloads.

Everything passes through unchanged (manifests, auth challenges, HEADs) except blob bodies
(``GET /v2/<repo>/blobs/sha256:…``), which follow the proxy's ``mode``:

* ``pass``: full speed;
* ``stall``: send the first ``stall_after`` bytes of each blob, then hold the connection open and send nothing
  (what a wedged CDN does) until the client goes away or the proxy stops;
* ``trickle``: send ``trickle_bytes_per_s`` (about 10 KB/s) in small slices — slow, but moving.

The engine pulls through ``proxy.host`` (``127.0.0.1:<port>/repo:tag``), a different name for the same
registry; 127.0.0.0/8 registries need no daemon config.

    with StallProxy(registry.host) as proxy:
        proxy.mode = "stall"; proxy.stall_after = 64 * 1024
        ...  # pull f"{proxy.host}/team/img:1.0"
"""

from __future__ import annotations

import contextlib
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

import httpx

from tests.helpers.local_server import LocalServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate",
              "proxy-authorization", "content-length"}
SLICE_S = 0.1  # trickle granularity
MAX_HOLD_S = 600.0  # a stalled handler never outlives this, even if nobody stops the proxy
CHUNK = 64 * 1024

Mode = Literal["pass", "stall", "trickle"]


class StallProxy(LocalServer):
    thread_name = "stall-proxy"

    def __init__(self, upstream: str, *, mode: Mode = "pass", stall_after: int = 0,
                 trickle_bytes_per_s: int = 10 * 1024) -> None:
        self.upstream = upstream  # host:port of the registry
        self.mode: Mode = mode
        self.stall_after = stall_after
        self.trickle_bytes_per_s = trickle_bytes_per_s
        self.blob_bytes_sent = 0
        self.blob_requests = 0
        self.stalled_blobs = 0
        self.first_stall_at: float | None = None  # time.monotonic() when a blob first stopped flowing
        super().__init__()

    def count(self, sent: int) -> None:
        with self._lock:
            self.blob_bytes_sent += sent

    def hold(self) -> None:
        """Send nothing until the proxy stops (bounded)."""
        with self._lock:
            self.stalled_blobs += 1
            if self.first_stall_at is None:
                self.first_stall_at = time.monotonic()
        self._stopping.wait(MAX_HOLD_S)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any  # the LocalServer's HTTP server; .proxy is the StallProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: tests read the proxy's counters
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
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        # a list, not a dict: the engine sends several Accept headers and every one matters
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"]
        is_blob = method == "GET" and "/blobs/sha256:" in self.path
        with httpx.Client(base_url=f"http://{proxy.upstream}", timeout=60, follow_redirects=False) as client, \
                client.stream(method, self.path, headers=headers, content=body) as upstream:
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.multi_items():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            if method == "HEAD":
                self.send_header("Content-Length", upstream.headers.get("content-length", "0"))
                self.end_headers()
                return
            if is_blob and upstream.status_code == 200 and upstream.headers.get("content-length"):
                self.send_header("Content-Length", upstream.headers["content-length"])
                self.end_headers()
                proxy.blob_requests += 1
                self._send_blob(proxy, upstream.iter_raw(CHUNK))
                return
            content = upstream.read()
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    def _send_blob(self, proxy: StallProxy, chunks: Any) -> None:
        sent = 0
        with contextlib.suppress(OSError):  # the client (the engine) may go away at any time: that is the point
            for chunk in chunks:
                if proxy.mode == "stall" and sent + len(chunk) > proxy.stall_after:
                    head = chunk[: max(0, proxy.stall_after - sent)]
                    self.wfile.write(head)
                    self.wfile.flush()
                    proxy.count(len(head))
                    proxy.hold()
                    self.close_connection = True
                    return
                if proxy.mode == "trickle":
                    sent += self._trickle(proxy, chunk)
                    continue
                self.wfile.write(chunk)
                proxy.count(len(chunk))
                sent += len(chunk)

    def _trickle(self, proxy: StallProxy, chunk: bytes) -> int:
        step = max(1, int(proxy.trickle_bytes_per_s * SLICE_S))
        for start in range(0, len(chunk), step):
            piece = chunk[start:start + step]
            self.wfile.write(piece)
            self.wfile.flush()
            proxy.count(len(piece))
            time.sleep(SLICE_S)
        return len(chunk)


StallProxy.handler = _Handler
