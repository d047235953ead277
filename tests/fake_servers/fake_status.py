"""In-process servers on 127.0.0.1 for the ``status`` unit tests: a fake vLLM / NIM / Ollama that answers health,
models and metrics the way the real ones do, a server that hangs, and one that does not speak HTTP.

    with FakeStatusServer("vllm") as server:          # /health 200, /v1/models, /metrics with vLLM's names
        server.prompt_tokens += 500                   # counters the test moves between two samples
    FakeStatusServer("vllm", health=503)              # engine dead
    FakeStatusServer("vllm", metrics="deprecated")    # vllm:gpu_cache_usage_perc, vllm:gpu_prefix_cache_*
    FakeStatusServer("vllm", metrics="garbage")       # /metrics is not Prometheus text
    FakeStatusServer("vllm", prompt_tps=1000)         # the prompt counter grows 1000 a second of real time
    FakeStatusServer("nim")                           # /v1/health/ready, /v1/metrics without the vllm: prefix
    FakeStatusServer("nim", ready=False)              # live but not ready (503)
    FakeStatusServer("ollama", loaded=[{...}])        # /api/version, /api/ps
    HungServer()                                      # accepts, reads, never answers
    NotHttpServer()                                   # answers bytes that are not HTTP

Every server binds a free port, serves from daemon threads, and stops on ``close()`` (or leaving the ``with``);
loops are bounded by a stop flag and a lifetime.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MAX_LIFETIME_S = 120.0


class _Base:
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> _Base:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class FakeStatusServer(_Base):
    def __init__(self, kind: str = "vllm", *, health: int = 200, ready: bool = True, metrics: str = "current",
                 served: str = "acme/tiny", max_model_len: int | None = 4096, models_body: str | None = None,
                 version: str = "0.12.6", loaded: Sequence[Mapping[str, Any]] = (), ps_body: str | None = None,
                 delay_s: float = 0.0, prompt_tps: float = 0.0) -> None:
        if kind not in ("vllm", "nim", "ollama"):
            raise ValueError(kind)
        self.kind, self.health, self.ready, self.metrics = kind, health, ready, metrics
        self.served, self.max_model_len, self.models_body = served, max_model_len, models_body
        self.version, self.loaded, self.ps_body, self.delay_s = version, list(loaded), ps_body, delay_s
        self.prompt_tokens = 1000.0
        self.prompt_tps = prompt_tps  # with it, the prompt counter also grows with real time
        self._started = time.monotonic()
        self.generation_tokens = 400.0
        self.prefix_queries = 800.0
        self.prefix_hits = 200.0
        self.preemptions = 3.0
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- answers ------------------------------------------------------------------------------------------------

    def answer(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) for GET ``path``."""
        self.requests.append(path)
        if self.delay_s:
            time.sleep(self.delay_s)
        route = getattr(self, f"_{self.kind}")
        found: tuple[int, str, str] | None = route(path)
        return found or (404, "application/json", '{"detail":"Not Found"}')

    def _models(self) -> tuple[int, str, str]:
        if self.models_body is not None:
            return 200, "application/json", self.models_body
        entry: dict[str, Any] = {"id": self.served, "object": "model", "owned_by": "vllm", "root": self.served}
        if self.max_model_len is not None:
            entry["max_model_len"] = self.max_model_len
        return 200, "application/json", json.dumps({"object": "list", "data": [entry]})

    def _vllm(self, path: str) -> tuple[int, str, str] | None:
        if path == "/health":
            return self.health, "application/json", ""
        if path == "/v1/models":
            return self._models()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", self.metrics_text(prefix="vllm:")
        return None

    def _nim(self, path: str) -> tuple[int, str, str] | None:
        if path == "/v1/health/ready":
            return (200 if self.ready else 503), "application/json", '{"message":"ready?"}'
        if path == "/v1/health/live":
            return 200, "application/json", '{"message":"live"}'
        if path == "/v1/models":
            return self._models()
        if path == "/v1/metrics":
            return 200, "text/plain; version=0.0.4", self.metrics_text(prefix="")
        return None

    def _ollama(self, path: str) -> tuple[int, str, str] | None:
        if path == "/api/version":
            return 200, "application/json", json.dumps({"version": self.version})
        if path == "/api/ps":
            body = self.ps_body if self.ps_body is not None else json.dumps({"models": self.loaded})
            return 200, "application/json", body
        return None

    def prompt_total(self) -> float:
        return self.prompt_tokens + self.prompt_tps * (time.monotonic() - self._started)

    def metrics_text(self, *, prefix: str) -> str:
        if self.metrics == "garbage":
            return "<html><body>{{{ this is not prometheus }}}</body></html>"
        if self.metrics == "empty":
            return ""
        labels = f'{{engine="0",model_name="{self.served}"}}'
        deprecated = self.metrics == "deprecated"
        kv = f"{prefix}gpu_cache_usage_perc" if deprecated or not prefix else f"{prefix}kv_cache_usage_perc"
        prefix_cache = f"{prefix}gpu_prefix_cache" if deprecated else f"{prefix}prefix_cache"
        lines = [
            f"# TYPE {prefix}num_requests_running gauge", f"{prefix}num_requests_running{labels} 2.0",
            f"# TYPE {prefix}num_requests_waiting gauge", f"{prefix}num_requests_waiting{labels} 1.0",
            f"# TYPE {kv} gauge", f"{kv}{labels} 0.25",
            f"# TYPE {prefix}prompt_tokens counter", f"{prefix}prompt_tokens_total{labels} {self.prompt_total()}",
            f"{prefix}prompt_tokens_created{labels} 1.7e+09",
            f"# TYPE {prefix}generation_tokens counter",
            f"{prefix}generation_tokens_total{labels} {self.generation_tokens}",
        ]
        if prefix:
            lines += [
                f"# TYPE {prefix}num_preemptions counter", f"{prefix}num_preemptions_total{labels} {self.preemptions}",
                f"# TYPE {prefix_cache}_queries counter", f"{prefix_cache}_queries_total{labels} {self.prefix_queries}",
                f"# TYPE {prefix_cache}_hits counter", f"{prefix_cache}_hits_total{labels} {self.prefix_hits}",
            ]
        return "\n".join(lines) + "\n"


def _handler_for(server: FakeStatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status, content_type, body = server.answer(self.path.split("?", 1)[0])
            data = body.encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler


class _SocketServer(_Base):
    """Accepts connections on a free port and hands each to ``handle``; bounded by ``close()`` and a lifetime."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + MAX_LIFETIME_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._listener.close()


class HungServer(_SocketServer):
    """Accepts every connection and never answers (the connection stays open until ``close()``)."""


class NotHttpServer(_SocketServer):
    """Answers every connection with bytes that are not HTTP, then hangs up."""

    def handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(0.5)
            conn.recv(4096)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6 definitely not http\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()
