"""The lifecycle both test proxies share: a threaded HTTP server on 127.0.0.1 with a free port, started on a daemon
thread, stopped with a bounded join, usable as a context manager. Subclasses give their request handler."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

_S = TypeVar("_S", bound="LocalServer")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: Any  # the LocalServer that owns it; handlers reach their proxy through it


class LocalServer:
    """Subclasses set ``handler`` and ``thread_name``; ``_stopping`` is set when the server stops, so handlers that
    hold a connection (a stall) can wait on it instead of on the clock alone."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "local-server"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self.thread_name, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self: _S) -> _S:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["LocalServer"]
