"""A threaded fake Ollama server on 127.0.0.1:<free port>, faithful to Ollama's HTTP API (docs/api.md).

Use it as a context manager (``with FakeOllama() as fake: fake.base_url``) or through the ``fake_ollama`` pytest
fixture (import it into a conftest or test module). Behaviour is switched through ``fake.config`` (a mutable
:class:`FakeOllamaConfig`) at any time, also while a request is in flight; every request is recorded in
``fake.requests`` for assertions.

Protocol facts kept faithful (the Ollama driver's busybox image fake will copy them):

- ``GET /api/tags`` → ``{"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}``.
- ``GET /api/version`` → ``{"version": "0.12.6"}``.
- ``POST /api/pull {"model", "stream": true}`` → 200, ``application/x-ndjson``, chunked; lines
  ``{"status":"pulling manifest"}``, ``{"status":"pulling <12 hex>","digest":"sha256:…","total":N[,"completed":M]}``
  (repeated on a timer even when nothing moved, as Ollama's progress ticker does), ``{"status":"verifying sha256
  digest"}``, ``{"status":"writing manifest"}``, ``{"status":"success"}``; a failure is a ``{"error": "..."}`` line
  in the same 200 stream (an unknown tag: ``pull model manifest: file does not exist``).
- ``POST /api/show {"model"}`` → ``{"modelfile", "template", "details", "model_info", "capabilities": [...]}``, or
  404 ``{"error": "model 'x' not found"}``.
- ``POST /api/generate`` (``stream: false``) → one JSON object with ``response`` / ``done`` / durations; errors are
  ``{"error": "..."}`` with status 400/404/500 as Ollama sends them; ``keep_alive: 0`` with no prompt unloads
  (``done_reason: "unload"``).
- ``GET /api/ps`` → ``{"models": [{"name", "model", "size", "size_vram", "expires_at", ...}]}``.
- Foreign-listener mode answers every path with an HTML page, as another web server on :11434 would.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PULL_MODES = ("normal", "trickle", "stall", "error", "quiet", "unknown")
GENERATE_MODES = ("normal", "slow_first", "slow", "crash", "empty", "memory", "no_tools", "non_json", "error")
RUNNER_CRASH_ERROR = "llama runner process has terminated: exit status 2"
NOT_FOUND_PULL_ERROR = "pull model manifest: file does not exist"


def fake_digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


@dataclass
class FakeModel:
    """An installed model: what ``/api/tags``, ``/api/show`` and ``/api/ps`` say about it."""

    name: str
    size: int = 4_000_000
    capabilities: tuple[str, ...] = ("completion", "tools")
    family: str = "qwen3"

    @property
    def digest(self) -> str:
        return fake_digest(self.name)[7:]  # /api/tags reports the bare hex digest

    def tags_entry(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.name, "modified_at": "2026-01-02T03:04:05.123456789Z",
                "size": self.size, "digest": self.digest,
                "details": {"parent_model": "", "format": "gguf", "family": self.family, "families": [self.family],
                            "parameter_size": "9B", "quantization_level": "Q4_K_M"}}


@dataclass
class FakeOllamaConfig:
    """Switches; change them between or during requests."""

    version: str = "0.12.6"
    foreign: bool = False  # answer every path with HTML (another server holds the port)
    foreign_status: int = 200
    models: dict[str, FakeModel] = field(default_factory=dict)  # installed, by name
    # --- /api/pull ---
    pull_mode: str = "normal"  # one of PULL_MODES
    layer_sizes: tuple[int, ...] = (3_000, 1_000, 200)  # bytes per blob (the first is the weights)
    pull_chunk: int = 500  # bytes completed per progress tick
    tick_s: float = 0.005  # delay between progress lines in normal mode
    trickle_s: float = 0.2  # delay between 1-byte advances in trickle mode
    trickle_bytes: int = 1
    stall_after_bytes: int = 1_500  # "stall": stop advancing after this many bytes of the first layer
    stall_silent: bool = False  # "stall": send nothing (True) or keep repeating the same line (False, like Ollama)
    error_after_bytes: int = 1_000  # "error": emit {"error": ...} once this many bytes are done
    pull_error: str = "max retries exceeded: read tcp 10.0.0.2:443: connection reset by peer"
    quiet_s: float = 2.0  # "quiet": silent seconds after "verifying sha256 digest"
    pull_capabilities: tuple[str, ...] = ("completion", "tools")  # of models added by a pull
    unknown_tags: frozenset[str] = frozenset()  # tags the "library" does not have (any mode)
    # --- /api/generate ---
    generate_mode: str = "normal"  # one of GENERATE_MODES
    slow_s: float = 1.0  # "slow_first": the first probe takes this long; "slow": every probe does
    memory_required_gib: float = 21.3
    memory_available_gib: float = 15.5
    generate_error: str = "something went wrong"
    cpu_only: bool = False  # /api/ps reports size_vram 0 for loaded models
    response_text: str = "Hello there!"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any  # the parsed JSON body, or the raw text when it is not JSON, or None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeOllama


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ------------------------------------------------------------------------------------------------

    @property
    def fake(self) -> FakeOllama:
        return self.server.fake

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _line(self, payload: dict[str, Any]) -> None:
        data = (json.dumps(payload) + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _dispatch(self, method: str) -> None:
        body = self._read_body() if method == "POST" else None
        self.fake.requests.append(RecordedRequest(method, self.path, body))
        config = self.fake.config
        if config.foreign:
            page = b"<!doctype html><html><head><title>Welcome</title></head><body>It works!</body></html>"
            self._send(config.foreign_status, page, "text/html; charset=utf-8")
            return
        route = _ROUTES.get((method, self.path.split("?", 1)[0]))
        if route is None:
            self._send(404, b"404 page not found", "text/plain")  # what Ollama's router says
            return
        try:
            route(self, body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (cancelled or timed out): that is the point of several tests

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # --- endpoints -----------------------------------------------------------------------------------------------

    def tags(self, body: dict[str, Any]) -> None:
        self._json(200, {"models": [m.tags_entry() for m in self.fake.config.models.values()]})

    def version(self, body: dict[str, Any]) -> None:
        self._json(200, {"version": self.fake.config.version})

    def show(self, body: dict[str, Any]) -> None:
        model = self.fake.find_model(str(body.get("model") or body.get("name") or ""))
        if model is None:
            self._error(404, f"model '{body.get('model')}' not found")
            return
        template = "{{ if .Tools }}tools{{ end }}{{ .Prompt }}" if "tools" in model.capabilities else "{{ .Prompt }}"
        self._json(200, {"modelfile": f"FROM {model.name}\n", "parameters": "", "template": template,
                         "details": model.tags_entry()["details"],
                         "model_info": {"general.architecture": model.family, f"{model.family}.context_length": 40960},
                         "capabilities": list(model.capabilities), "modified_at": "2026-01-02T03:04:05Z"})

    def ps(self, body: dict[str, Any]) -> None:
        loaded = []
        for name in list(self.fake.loaded):
            model = self.fake.find_model(name)
            size = model.size if model else 1
            loaded.append({"name": name, "model": name, "size": size, "digest": fake_digest(name)[7:],
                           "details": {"format": "gguf"}, "expires_at": "2026-01-02T03:19:05Z",
                           "size_vram": 0 if self.fake.config.cpu_only else size, "context_length": 4096})
        self._json(200, {"models": loaded})

    def generate(self, body: dict[str, Any]) -> None:
        name = str(body.get("model") or "")
        model = self.fake.find_model(name)
        if model is None:
            self._error(404, f"model '{name}' not found")
            return
        if body.get("keep_alive") in (0, "0", "0s") and not body.get("prompt"):
            self.fake.loaded.discard(model.name)
            self._json(200, {"model": model.name, "created_at": "2026-01-02T03:04:05Z", "response": "",
                             "done": True, "done_reason": "unload"})
            return
        self.fake.generate_calls += 1
        _GENERATE_MODES[self.fake.config.generate_mode](self, model)

    def pull(self, body: dict[str, Any]) -> None:
        tag = str(body.get("model") or body.get("name") or "")
        self._start_stream()
        self._line({"status": "pulling manifest"})
        config = self.fake.config
        if tag in config.unknown_tags or config.pull_mode == "unknown":
            self._line({"error": NOT_FOUND_PULL_ERROR})
            self._end_stream()
            return
        if _PullScript(self, config).run():
            self.fake.add_model(FakeModel(_with_latest(tag), size=sum(config.layer_sizes),
                                          capabilities=config.pull_capabilities))
        self._end_stream()


def _with_latest(tag: str) -> str:
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


class _PullScript:
    """Plays one pull in the configured mode; ``run`` returns True when it ended in ``success``."""

    def __init__(self, handler: _Handler, config: FakeOllamaConfig) -> None:
        self.h = handler
        self.config = config
        self.stop = handler.fake.stopping
        self.bytes_done = 0

    def _wait(self, seconds: float) -> bool:
        return not self.stop.wait(seconds)

    def _layer_line(self, index: int, total: int, completed: int) -> dict[str, Any]:
        digest = fake_digest(f"layer-{index}-{total}")
        line: dict[str, Any] = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        if completed:
            line["completed"] = completed  # Ollama omits "completed" until some bytes are done
        return line

    def run(self) -> bool:
        for index, total in enumerate(self.config.layer_sizes):
            if not self._layer(index, total):
                return False
        self.h._line({"status": "verifying sha256 digest"})
        if self.config.pull_mode == "quiet" and not self._wait(self.config.quiet_s):
            return False
        self.h._line({"status": "writing manifest"})
        self.h._line({"status": "success"})
        return True

    def _layer(self, index: int, total: int) -> bool:
        mode = self.config.pull_mode
        completed = 0
        self.h._line(self._layer_line(index, total, 0))
        while completed < total:
            if mode == "error" and self.bytes_done >= self.config.error_after_bytes:
                self.h._line({"error": self.config.pull_error})
                return False
            if mode == "stall" and self.bytes_done >= self.config.stall_after_bytes:
                return self._stall(index, total, completed)
            step = self.config.trickle_bytes if mode == "trickle" else self.config.pull_chunk
            step = min(step, total - completed)
            if mode == "stall":
                step = min(step, self.config.stall_after_bytes - self.bytes_done)
            completed += step
            self.bytes_done += step
            if not self._wait(self.config.trickle_s if mode == "trickle" else self.config.tick_s):
                return False
            self.h._line(self._layer_line(index, total, completed))
        return True

    def _stall(self, index: int, total: int, completed: int) -> bool:
        """Hold the connection open and move nothing, until the client leaves or the server stops."""
        for _ in range(12_000):  # at most 10 minutes, like any loop here: bounded
            if not self._wait(0.05):
                break
            if not self.config.stall_silent:
                self.h._line(self._layer_line(index, total, completed))
        return False


def _generate_ok(h: _Handler, model: FakeModel, text: str | None = None) -> None:
    h.fake.loaded.add(model.name)
    h._json(200, {"model": model.name, "created_at": "2026-01-02T03:04:05.5Z",
                  "response": h.fake.config.response_text if text is None else text, "done": True,
                  "done_reason": "length", "total_duration": 1_200_000_000, "load_duration": 900_000_000,
                  "prompt_eval_count": 12, "eval_count": 5})


def _generate_slow(h: _Handler, model: FakeModel, every: bool) -> None:
    if every or h.fake.generate_calls == 1:
        h.fake.stopping.wait(h.fake.config.slow_s)
    _generate_ok(h, model)


def _generate_empty(h: _Handler, model: FakeModel) -> None:
    h._send(200, b"", "application/json; charset=utf-8")


_GENERATE_MODES: dict[str, Any] = {
    "normal": _generate_ok,
    "slow_first": lambda h, m: _generate_slow(h, m, every=False),
    "slow": lambda h, m: _generate_slow(h, m, every=True),
    "crash": lambda h, m: h._error(500, RUNNER_CRASH_ERROR),
    "empty": _generate_empty,
    "memory": lambda h, m: h._error(500, f"model requires more system memory ({h.fake.config.memory_required_gib}"
                                         f" GiB) than is available ({h.fake.config.memory_available_gib} GiB)"),
    "no_tools": lambda h, m: h._error(400, f"registry.ollama.ai/library/{m.name} does not support tools"),
    "non_json": lambda h, m: h._send(200, b"Hello from a proxy\n", "text/plain"),
    "error": lambda h, m: h._error(500, h.fake.config.generate_error),
}

_ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/api/tags"): _Handler.tags,
    ("GET", "/api/version"): _Handler.version,
    ("GET", "/api/ps"): _Handler.ps,
    ("POST", "/api/show"): _Handler.show,
    ("POST", "/api/generate"): _Handler.generate,
    ("POST", "/api/pull"): _Handler.pull,
    ("HEAD", "/"): lambda h, b: h._send(200, b"", "text/plain"),
    ("GET", "/"): lambda h, b: h._send(200, b"Ollama is running", "text/plain; charset=utf-8"),
}


class FakeOllama:
    """The server. ``with FakeOllama(models=["qwen3.5:9b"]) as fake:`` starts it on a free loopback port."""

    def __init__(self, config: FakeOllamaConfig | None = None, *, models: tuple[str, ...] | list[str] = ()) -> None:
        self.config = config or FakeOllamaConfig()
        for name in models:
            self.config.models[_with_latest(name)] = FakeModel(_with_latest(name))
        self.requests: list[RecordedRequest] = []
        self.loaded: set[str] = set()
        self.generate_calls = 0
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeOllama is not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_model(self, model: FakeModel) -> None:
        self.config.models[model.name] = model

    def find_model(self, name: str) -> FakeModel | None:
        return self.config.models.get(name) or self.config.models.get(_with_latest(name))

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    def start(self) -> FakeOllama:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-ollama-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes stalled / slow handlers so they end
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StepClock:
    """A fake clock for the watchdog: every ``monotonic()`` call moves time ``step`` seconds; ``sleep`` records
    and advances. Real waiting stays the client's short poll, so minutes of watchdog time pass in milliseconds."""

    def __init__(self, step: float = 0.0, start: float = 1000.0) -> None:
        self.step = step
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)


def free_port() -> int:
    """A loopback port nothing listens on right now (for "nothing answers" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A started fake with one installed tool-capable model, ``qwen3.5:9b``."""
    with FakeOllama(models=["qwen3.5:9b"]) as fake:
        yield fake


__all__ = [
    "GENERATE_MODES",
    "NOT_FOUND_PULL_ERROR",
    "PULL_MODES",
    "RUNNER_CRASH_ERROR",
    "FakeModel",
    "FakeOllama",
    "FakeOllamaConfig",
    "RecordedRequest",
    "StepClock",
    "fake_digest",
    "fake_ollama",
    "free_port",
]
