"""What a runtime's server answers: the readiness probes, and the probe that finds a server already running.

A probe is one or two HTTP requests: :class:`VllmModelsProbe` (``/v1/models`` lists the served id),
:class:`NimReadyProbe` (``/v1/health/ready``, then ``/v1/models``), :class:`OllamaTagsProbe` (``/api/tags``). Each
returns :class:`Ready`, :class:`NotYet` or :class:`Failed`; transport errors propagate, and the wait loop
(``server/readiness.py``) reads them as port states through :data:`PORT_CLOSED_ERRORS` /
:data:`PORT_OPEN_ERRORS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from nemoclaw_runtime.kernel.checks import MAX_CONTEXT_LENGTH
from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.registry import is_safe_model_id

__all__ = [
    "ExistingServer", "Failed", "HttpProbe", "MAX_MODEL_LEN_CEILING", "NimReadyProbe", "NotYet", "OllamaTagsProbe",
    "MAX_BODY_BYTES", "PORT_CLOSED_ERRORS", "PORT_OPEN_ERRORS", "Ready", "VllmModelsProbe", "get_bounded",
    "parse_max_model_len",
    "probe_existing_vllm",
]

#: Per-request bounds: a closed port fails in well under a poll; a server that accepted but is still loading
#: holds one request at most this long (and answers it the moment it is up).
PROBE_TIMEOUT = httpx.Timeout(connect=0.5, read=2.0, write=2.0, pool=0.5)
#: The largest max_model_len a server's report is believed at: the kernel's one largest context.
MAX_MODEL_LEN_CEILING = MAX_CONTEXT_LENGTH
_POSITIVE_INT = re.compile(r"[1-9][0-9]{0,19}")  # used with fullmatch: a server reports plain digits
MAX_BODY_BYTES = 4 * 1024 * 1024  # a foreign listener could stream anything at us

# Transport errors that mean "nothing answers on the port yet" (including docker-proxy accepting on the host
# and dropping the connection because nothing listens inside the container) ...
PORT_CLOSED_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
)
# ... and those that mean "the port accepted the connection but the server does not answer yet".
PORT_OPEN_ERRORS: tuple[type[Exception], ...] = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)


# --- probe results and probes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The probe passed. ``entry`` is the ``data[]`` element of the served model, where the API has one."""

    payload: Any
    served_id: str | None = None
    entry: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class NotYet:
    reason: str


@dataclass(frozen=True)
class Failed:
    """The server answered in a way that will not get better by waiting."""

    reason: str


ProbeResult = Ready | NotYet | Failed


class HttpProbe(Protocol):
    """A runtime's readiness check: one or two HTTP requests against ``base_url``.

    Transport errors (connection refused, read timeout) propagate: the loop reads them as port states.
    """

    # Read-only members, so that the frozen dataclasses below satisfy the protocol.
    @property
    def label(self) -> str:
        """"vLLM", "NIM", "Ollama": used in messages."""
        ...

    @property
    def timeout_variable(self) -> str | None:
        """The setting that raises the readiness timeout, named in the remedy."""
        ...

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult: ...


def get_bounded(http: httpx.Client, url: str, timeout: httpx.Timeout,
                stop_reading: Callable[[], None] | None = None) -> tuple[int, str | None, str]:
    """GET ``url`` and read at most ``MAX_BODY_BYTES`` of its body. ``stop_reading`` is called after each chunk
    and may raise to abandon a body that trickles past a caller's deadline."""
    with http.stream("GET", url, timeout=timeout) as response:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                break
            if stop_reading is not None:
                stop_reading()
        body = b"".join(chunks)[:MAX_BODY_BYTES].decode("utf-8", "replace")
        return response.status_code, response.headers.get("content-type"), body


def _get_json(http: httpx.Client, url: str) -> tuple[int, Any]:
    """GET ``url``; (status, decoded JSON or None when the body is not JSON). The body read is bounded: the
    listener may be anything."""
    status, _, body = get_bounded(http, url, PROBE_TIMEOUT)
    try:
        return status, loads_json(body)
    except ValueError:
        return status, None


def _models_data(body: Any) -> list[Mapping[str, Any]] | None:
    """The ``data`` array of an OpenAI ``/v1/models`` answer (dict entries only), or None when absent."""
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
        return None
    return [entry for entry in body["data"] if isinstance(entry, Mapping)]


def _listed_ids(data: Sequence[Mapping[str, Any]]) -> list[str]:
    return [entry["id"] for entry in data if isinstance(entry.get("id"), str)]


def _describe_ids(ids: Sequence[str]) -> str:
    safe = [i for i in ids if is_safe_model_id(i)]
    return ", ".join(safe[:5]) or "nothing"


@dataclass(frozen=True)
class VllmModelsProbe:
    """vLLM: ``GET /v1/models`` answers JSON whose ``data[].id`` lists the served model.

    With ``model_id=None`` any listed model counts (adopting an existing server); its first entry is served.
    """

    model_id: str | None
    label: str = "vLLM"
    timeout_variable: str | None = "NEMOCLAW_VLLM_READY_TIMEOUT"

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult:
        status, body = _get_json(http, f"{base_url}/v1/models")
        if status != 200:
            return NotYet(f"/v1/models answered HTTP {status}")
        data = _models_data(body)
        if data is None:
            return NotYet("/v1/models did not answer JSON with a data array")
        ids = _listed_ids(data)
        if self.model_id is None:
            if not ids:
                return NotYet("/v1/models lists no model yet")
            return Ready(body, ids[0], data[0])
        for entry in data:
            if entry.get("id") == self.model_id:
                return Ready(body, self.model_id, entry)
        return NotYet(f"model {self.model_id} not listed yet (serving: {_describe_ids(ids)})")


@dataclass(frozen=True)
class NimReadyProbe:
    """NIM: ``GET /v1/health/ready`` is 200, then ``/v1/models`` lists a model.

    A safe served id different from ``model_id`` is adopted (NIMs serve under their own names).
    """

    model_id: str | None = None
    label: str = "NIM"
    timeout_variable: str | None = "NEMOCLAW_NIM_READY_TIMEOUT"

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult:
        health = http.get(f"{base_url}/v1/health/ready", timeout=PROBE_TIMEOUT)
        if health.status_code != 200:
            return NotYet(f"/v1/health/ready answered HTTP {health.status_code}")
        status, body = _get_json(http, f"{base_url}/v1/models")
        data = _models_data(body) if status == 200 else None
        if not data:
            return NotYet("/v1/models lists no model yet")
        for entry in data:
            if self.model_id is not None and entry.get("id") == self.model_id:
                return Ready(body, self.model_id, entry)
        first = data[0].get("id")
        if isinstance(first, str) and is_safe_model_id(first):
            return Ready(body, first, data[0])
        return Ready(body, self.model_id, data[0])  # an unsafe served id is never adopted or echoed


@dataclass(frozen=True)
class OllamaTagsProbe:
    """Ollama: ``GET /api/tags`` answers JSON with an array ``models`` (an empty one counts)."""

    label: str = "Ollama"
    timeout_variable: str | None = None

    def check(self, http: httpx.Client, base_url: str) -> ProbeResult:
        status, body = _get_json(http, f"{base_url}/api/tags")
        if status != 200:
            return NotYet(f"/api/tags answered HTTP {status}")
        if not isinstance(body, Mapping) or not isinstance(body.get("models"), list):
            return NotYet("/api/tags did not answer JSON with a models array")
        return Ready(body)


def parse_max_model_len(raw: Any) -> tuple[int | None, str | None]:
    """``max_model_len`` as NemoClaw accepts it: (value, None), (None, None) when absent, or (None, warning)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and _POSITIVE_INT.fullmatch(raw.strip()):
        value = int(raw.strip())
    if value is None or value <= 0:
        return None, f"ignoring non-positive or malformed max_model_len {str(raw)[:40]!r} reported by the server"
    if value > MAX_MODEL_LEN_CEILING:
        return None, (f"ignoring max_model_len {value} reported by the server: above the auto-detect ceiling "
                      f"{MAX_MODEL_LEN_CEILING}")
    return value, None


# --- adopting an already-running server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingServer:
    """Something answers HTTP on the port. ``kind`` is ``vllm`` (``/v1/models`` JSON with a ``data`` array) or
    ``foreign`` (anything else: another server holds the port).

    ``model_ids`` lists only ids safe to echo and adopt (``^[A-Za-z0-9._:/-]+$``); ``unsafe_ids`` counts the rest.
    ``max_model_len`` maps each listed id to its validated context length (None when absent or malformed).
    """

    port: int
    kind: str
    status_code: int
    model_ids: tuple[str, ...] = ()
    max_model_len: Mapping[str, int | None] = field(default_factory=dict)
    unsafe_ids: int = 0

    @property
    def is_vllm(self) -> bool:
        return self.kind == "vllm"

    @property
    def foreign(self) -> bool:
        return self.kind == "foreign"

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "kind": self.kind, "status_code": self.status_code,
                "model_ids": list(self.model_ids), "max_model_len": dict(self.max_model_len),
                "unsafe_ids": self.unsafe_ids}


def probe_existing_vllm(http: httpx.Client, port: int, *, host: str = "127.0.0.1") -> ExistingServer | None:
    """Does something already answer ``/v1/models`` on ``host:port``? None when nothing answers at all."""
    try:
        status, body = _get_json(http, f"http://{host}:{port}/v1/models")
    except (*PORT_CLOSED_ERRORS, *PORT_OPEN_ERRORS):
        return None
    except httpx.HTTPError:  # it answered, but not in HTTP a client can use: something else holds the port
        return ExistingServer(port=port, kind="foreign", status_code=0)
    data = _models_data(body) if status == 200 else None
    if data is None:
        return ExistingServer(port=port, kind="foreign", status_code=status)
    ids: list[str] = []
    lengths: dict[str, int | None] = {}
    unsafe = 0
    for entry in data:
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not is_safe_model_id(model_id):
            unsafe += 1
            continue
        ids.append(model_id)
        lengths[model_id] = parse_max_model_len(entry.get("max_model_len"))[0]
    return ExistingServer(port=port, kind="vllm", status_code=status, model_ids=tuple(ids), max_model_len=lengths,
                          unsafe_ids=unsafe)
