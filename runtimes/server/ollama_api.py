"""Everything that talks to an Ollama server over HTTP: detect, pull (with the stall watchdog), show, warm up,
validate, unload.

All calls go through an injected ``httpx.Client``; time goes through an injected ``Clock``; nothing prints.
Foreign exceptions (httpx) are translated here into the errors tree. Behaviour follows NemoClaw's host-side Ollama
support (``findReachableOllamaHost``, ``validateOllamaModel``, the pull and cleanup helpers) and improves on it:

- a listener on the port that is not Ollama is *reported* (:class:`ForeignListener`), never trusted (#4275);
- the pull is the HTTP ``/api/pull`` stream with a phase-aware stall watchdog instead of a hard timeout (#2610);
- validation retries once with a longer budget only after a timeout, on any host (#4812), and names a crashed
  runner (#4365) instead of looping.

Warm-up choice: :func:`validate_model`'s probe *is* the warm-up request (same body: ``keep_alive: "15m"``,
``num_predict: 16``), sent synchronously with bounded budgets, so a caller that validates needs no separate
warm-up. :func:`warm_up` exists for callers that skip validation; it is synchronous, bounded and best-effort.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from nemoclaw_runtime.kernel.clock import Clock
from nemoclaw_runtime.kernel.errors import (
    RuntimeNotReady,
    UnknownModel,
    UnsupportedRuntime,
    ValidationFailed,
)
from nemoclaw_runtime.kernel.events import EventSink, Info, discard
from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.kernel.units import GIB, format_bytes, format_mib
from nemoclaw_runtime.runtimes.server.diagnose import RUNNER_CRASH_RE
from nemoclaw_runtime.runtimes.server.probes import get_bounded

MIN_OLLAMA_VERSION = "0.7.0"
DEFAULT_OLLAMA_PORT = 11434
DETECT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)  # NemoClaw: curl --connect-timeout 3 --max-time 5
SHOW_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
UNLOAD_TIMEOUT = httpx.Timeout(5.0, connect=3.0)  # best-effort cleanup must never hang a `stop`
PROBE_BUDGETS_S: tuple[float, ...] = (120.0, 300.0)  # the second only after the first timed out (#4812)
PROBE_RETRY_PAUSE_S = 1.0
WARM_UP_TIMEOUT_S = 120.0
WARM_UP_PROMPT = "Hello, reply in less than 5 words"
WARM_UP_KEEP_ALIVE = "15m"
EXCERPT_CHARS = 200

MEMORY_RE = re.compile(r"model requires more system memory \(([\d.]+)\s*GiB\) than is available "
                       r"\(([\d.]+)\s*GiB\)", re.IGNORECASE)
NO_TOOLS_RE = re.compile(r"does not support tools", re.IGNORECASE)
TOOLS_REMEDY = "pick another model (for example qwen3.5:9b or nemotron-3-nano:30b) or pass --allow-no-tools"


# --- values ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    """One entry of ``/api/tags``."""

    name: str
    size_bytes: int | None = None
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size_bytes": self.size_bytes, "digest": self.digest}


@dataclass(frozen=True)
class OllamaServer:
    """An Ollama server that answered ``/api/tags`` like Ollama does."""

    base_url: str
    version: str | None  # None when /api/version did not answer (the minimum version is then not enforced)
    models: tuple[InstalledModel, ...] = ()

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def has_model(self, tag: str) -> bool:
        """Whether ``tag`` is installed; a tag without ``:`` means ``:latest`` as Ollama resolves it."""
        return normalize_tag(tag) in {normalize_tag(name) for name in self.model_names}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ollama", "base_url": self.base_url, "version": self.version,
                "models": [m.to_dict() for m in self.models]}


@dataclass(frozen=True)
class ForeignListener:
    """Something answered on the Ollama port but not like Ollama: reported, never trusted (NemoClaw #4275)."""

    base_url: str
    status_code: int | None  # None when it accepted the connection but sent no HTTP answer in time
    content_type: str | None
    excerpt: str  # the first characters of what it sent, whitespace collapsed
    reason: str

    def describe(self) -> str:
        status = f"HTTP {self.status_code}" if self.status_code is not None else "no HTTP answer"
        shown = f": {self.excerpt!r}" if self.excerpt else ""
        return f"{self.base_url} is not Ollama ({self.reason}; {status}{shown})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "foreign", "base_url": self.base_url, "status_code": self.status_code,
                "content_type": self.content_type, "excerpt": self.excerpt, "reason": self.reason}


@dataclass(frozen=True)
class OllamaValidation:
    """A model that answered the local probe. ``notes`` say what was accepted despite a warning."""

    tag: str
    attempts: int
    response_excerpt: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "ok": True, "attempts": self.attempts, "response_excerpt": self.response_excerpt,
                "notes": list(self.notes)}


# --- small helpers ---------------------------------------------------------------------------------------------


def ollama_base_url(host: str = "127.0.0.1", port: int = DEFAULT_OLLAMA_PORT) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def normalize_tag(tag: str) -> str:
    """``qwen3`` → ``qwen3:latest``; a registry port in the first path part is not mistaken for a tag."""
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def json_or_none(text: str) -> Any:
    try:
        return loads_json(text)
    except ValueError:
        return None


def response_error_text(response: httpx.Response) -> str:
    payload = json_or_none(response.text)
    if isinstance(payload, dict) and payload.get("error"):
        return str(payload["error"])
    return _excerpt(response.text) or f"HTTP {response.status_code}"


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def _unreachable(base_url: str, what: str, exc: httpx.HTTPError) -> RuntimeNotReady:
    return RuntimeNotReady(f"Ollama at {base_url} did not answer {what}: {type(exc).__name__}",
                           remedy="check that Ollama is running (nemoclaw-runtime up ollama) and run again",
                           cause="ollama-unreachable", details={"base_url": base_url})


# --- detection -------------------------------------------------------------------------------------------------


def detect_ollama(http: httpx.Client, host: str = "127.0.0.1",
                  port: int = DEFAULT_OLLAMA_PORT) -> OllamaServer | ForeignListener | None:
    """Who answers on ``host:port``: Ollama, something else, or nothing (``None``).

    It counts as Ollama only when ``GET /api/tags`` returns JSON with a ``models`` array. An Ollama older than
    :data:`MIN_OLLAMA_VERSION` raises :class:`UnsupportedRuntime` (exit 3); a development build (``0.0.0``) or an
    unanswered ``/api/version`` is accepted with what is known.
    """
    base_url = ollama_base_url(host, port)
    try:
        status, content_type, body = get_bounded(http, f"{base_url}/api/tags", DETECT_TIMEOUT)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return None
    except httpx.TimeoutException:
        return ForeignListener(base_url, None, None, "", "accepted the connection but sent no answer within 5 s")
    except httpx.HTTPError as exc:
        return ForeignListener(base_url, None, None, "", f"did not speak HTTP ({type(exc).__name__})")
    payload = json_or_none(body)
    if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        reason = "GET /api/tags did not return JSON with a models array"
        return ForeignListener(base_url, status, content_type, _excerpt(body), reason)
    models = tuple(_installed_model(m) for m in payload["models"] if isinstance(m, dict) and m.get("name"))
    version = _server_version(http, base_url)
    _require_min_version(version, base_url)
    return OllamaServer(base_url, version, models)


def _installed_model(entry: dict[str, Any]) -> InstalledModel:
    size = entry.get("size")
    digest = entry.get("digest")
    return InstalledModel(str(entry["name"]), int(size) if isinstance(size, (int, float)) else None,
                          str(digest) if digest else None)


def _server_version(http: httpx.Client, base_url: str) -> str | None:
    try:
        response = http.get(f"{base_url}/api/version", timeout=DETECT_TIMEOUT)
    except httpx.HTTPError:
        return None
    payload = json_or_none(response.text) if response.status_code == 200 else None
    version = payload.get("version") if isinstance(payload, dict) else None
    return str(version) if version else None


def _require_min_version(version: str | None, base_url: str) -> None:
    found = _version_tuple(version) if version else None
    minimum = _version_tuple(MIN_OLLAMA_VERSION)
    if found is None or found == (0, 0, 0) or minimum is None:
        return  # unknown or a source build: nothing to compare honestly
    if found < minimum:
        raise UnsupportedRuntime(
            f"Ollama {version} at {base_url} is older than the minimum supported {MIN_OLLAMA_VERSION}",
            remedy=f"upgrade Ollama to {MIN_OLLAMA_VERSION} or newer (https://ollama.com/download), then run again",
            details={"version": version, "minimum": MIN_OLLAMA_VERSION, "base_url": base_url},
        )


# --- show / tools ----------------------------------------------------------------------------------------------


def show_capabilities(http: httpx.Client, base_url: str, tag: str) -> tuple[str, ...]:
    """The model's ``capabilities`` from ``POST /api/show`` (e.g. ``("completion", "tools")``).

    Servers that predate the field get them derived the way Ollama does: ``tools`` when the template uses
    ``.Tools``.
    """
    try:
        response = http.post(f"{base_url}/api/show", json={"model": tag}, timeout=SHOW_TIMEOUT)
    except httpx.HTTPError as exc:
        raise _unreachable(base_url, "/api/show", exc) from None
    if response.status_code == 404:
        raise UnknownModel(f"Ollama at {base_url} has no model '{tag}' installed",
                           remedy=f"pull it first (ollama pull {tag}) or pick an installed model",
                           details={"tag": tag})
    payload = json_or_none(response.text)
    if response.status_code != 200 or not isinstance(payload, dict):
        raise RuntimeNotReady(f"Ollama could not describe '{tag}': {response_error_text(response)}",
                              remedy="check the Ollama server logs and run again", cause="ollama-error",
                              details={"tag": tag, "status_code": response.status_code})
    capabilities = payload.get("capabilities")
    if isinstance(capabilities, list):
        return tuple(str(c) for c in capabilities)
    template = str(payload.get("template") or "")
    return ("completion", "tools") if ".Tools" in template else ("completion",)


def require_tools(http: httpx.Client, base_url: str, tag: str, *, allow_no_tools: bool = False) -> tuple[str, ...]:
    """The capabilities, after refusing (exit 3) a model without ``tools`` unless ``allow_no_tools``."""
    capabilities = show_capabilities(http, base_url, tag)
    if "tools" not in capabilities and not allow_no_tools:
        raise UnsupportedRuntime(f"Ollama model '{tag}' does not support tool calling, which agents need",
                                 remedy=TOOLS_REMEDY, details={"tag": tag, "capabilities": list(capabilities)})
    return capabilities


# --- warm-up and validation ------------------------------------------------------------------------------------


def probe_body(tag: str) -> dict[str, Any]:
    """NemoClaw's warm-up request, also used as the validation probe (it loads the model for 15 minutes)."""
    return {"model": tag, "prompt": WARM_UP_PROMPT, "stream": False, "keep_alive": WARM_UP_KEEP_ALIVE,
            "options": {"num_predict": 16}}


def warm_up(http: httpx.Client, base_url: str, tag: str, *, timeout_s: float = WARM_UP_TIMEOUT_S) -> bool:
    """Load ``tag`` and keep it loaded for 15 minutes; synchronous, bounded, best-effort: True when it answered."""
    try:
        response = http.post(f"{base_url}/api/generate", json=probe_body(tag),
                             timeout=httpx.Timeout(timeout_s, connect=5.0))
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def validate_model(http: httpx.Client, base_url: str, tag: str, *, clock: Clock,
                   events: EventSink = discard, is_spark: bool = False, host_memory_total_mib: int | None = None,
                   allow_no_tools: bool = False,
                   budgets_s: tuple[float, ...] = PROBE_BUDGETS_S) -> OllamaValidation:
    """Probe ``/api/generate`` once (120 s) and, only if that timed out, once more (300 s) — on any host.

    Outcomes, as NemoClaw decides them: no answer → :class:`ValidationFailed` (``…did not answer the local probe
    in time.``); ``does not support tools`` → fail unless ``allow_no_tools``; ``model requires more system memory
    (X GiB)…`` → accepted only on DGX Spark when the host's total memory is at least X GiB (unified memory makes
    Ollama's estimate wrong there); a crashed runner → cause ``ollama-runner-crash``; a non-JSON answer → OK. On
    Spark a model that Ollama placed entirely on the CPU fails (cause ``ollama-cpu-only``). ``settings`` is taken
    for the drivers' uniform call; the budgets are NemoClaw's fixed ones (``budgets_s`` for tests).
    """
    # The budgets are fixed (NemoClaw validateOllamaModel), not NEMOCLAW_LOCAL_INFERENCE_TIMEOUT.
    response, attempts = _probe(http, f"{base_url}/api/generate", tag, budgets_s, clock, events)
    if response is None or not response.text.strip():
        raise ValidationFailed(f"Ollama model '{tag}' did not answer the local probe in time.",
                               remedy="the model may be too large or still loading: check `ollama ps` and the "
                                      "Ollama logs, try a smaller model, then run again",
                               cause="ollama-probe-timeout", details={"tag": tag, "attempts": attempts})
    payload = json_or_none(response.text)
    notes: list[str] = []
    if not isinstance(payload, dict):
        notes.append(f"non-JSON answer accepted (HTTP {response.status_code})")
        excerpt: str | None = _excerpt(response.text)
    elif payload.get("error"):
        notes.append(_judge_probe_error(tag, str(payload["error"]), is_spark=is_spark,
                                        host_memory_total_mib=host_memory_total_mib, allow_no_tools=allow_no_tools))
        excerpt = None
    else:
        excerpt = _excerpt(str(payload.get("response") or payload.get("thinking") or ""))
    if is_spark:
        _refuse_cpu_only(http, base_url, tag)
    return OllamaValidation(tag, attempts, excerpt, tuple(notes))


def _probe(http: httpx.Client, url: str, tag: str, budgets_s: tuple[float, ...], clock: Clock,
           events: EventSink) -> tuple[httpx.Response | None, int]:
    """Send the probe; retry (tenacity) only after a timeout. ``None`` stands for curl's empty output."""

    def announce(state: tenacity.RetryCallState) -> None:
        budget = budgets_s[min(state.attempt_number, len(budgets_s) - 1)]
        events(Info(f"Ollama model '{tag}' gave no answer within {budgets_s[state.attempt_number - 1]:g} s; "
                    f"retrying once with {budget:g} s (the model may still be loading)"))

    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(len(budgets_s)),
                                 retry=tenacity.retry_if_exception_type(httpx.TimeoutException),
                                 wait=tenacity.wait_fixed(PROBE_RETRY_PAUSE_S), sleep=clock.sleep,
                                 before_sleep=announce, reraise=True)
    attempt_number = 0
    try:
        for attempt in retrying:
            with attempt:
                attempt_number = attempt.retry_state.attempt_number
                budget = budgets_s[attempt_number - 1]
                return http.post(url, json=probe_body(tag), timeout=httpx.Timeout(budget, connect=10.0)), \
                    attempt_number
    except httpx.ConnectError as exc:
        raise ValidationFailed(f"Ollama model '{tag}' could not be probed: Ollama did not accept the connection "
                               f"({type(exc).__name__})", remedy="check that Ollama is running and run again",
                               cause="ollama-unreachable", details={"tag": tag}) from None
    except httpx.HTTPError:
        return None, attempt_number  # timed out twice, or the server hung up without an answer
    return None, attempt_number  # pragma: no cover - tenacity either returns or raises


def _judge_probe_error(tag: str, message: str, *, is_spark: bool, host_memory_total_mib: int | None,
                       allow_no_tools: bool) -> str:
    """Raise for a probe error that fails validation; return a note for one that is accepted."""
    details: dict[str, Any] = {"tag": tag, "ollama_error": message}
    if NO_TOOLS_RE.search(message):
        if allow_no_tools:
            return "no tool calling (accepted with --allow-no-tools)"
        raise ValidationFailed(f"Ollama model '{tag}' does not support tool calling, which agents need",
                               remedy=TOOLS_REMEDY, cause="ollama-no-tools", details=details)
    memory = MEMORY_RE.search(message)
    if memory:
        required_gib = float(memory[1])
        total_gib = host_memory_total_mib / 1024 if host_memory_total_mib is not None else None
        if is_spark and total_gib is not None and total_gib >= required_gib:
            return (f"Ollama's memory estimate ignored on DGX Spark (unified memory): "
                    f"{format_bytes(required_gib * GIB)} needed, {format_mib(host_memory_total_mib)} in the host")
        raise ValidationFailed(f"Ollama cannot load '{tag}': {message}",
                               remedy="pick a smaller model or free memory (stop other models and containers)",
                               cause="ollama-insufficient-memory", details=details)
    if RUNNER_CRASH_RE.search(message):
        raise ValidationFailed(f"Ollama's model runner crashed while loading '{tag}': {message}",
                               remedy="check GPU memory and the Ollama logs, update Ollama, or pick a smaller "
                                      "model; then run again", cause="ollama-runner-crash", details=details)
    raise ValidationFailed(f"Ollama model '{tag}' failed the local probe: {message}",
                           remedy="check the Ollama logs and run again", cause="ollama-error", details=details)


def _refuse_cpu_only(http: httpx.Client, base_url: str, tag: str) -> None:
    """On Spark an Ollama build without CUDA 13 support silently runs on the CPU; ``/api/ps`` shows it."""
    for entry in _loaded_entries(http, base_url) or ():
        if normalize_tag(str(entry.get("model") or entry.get("name") or "")) != normalize_tag(tag):
            continue
        size, size_vram = entry.get("size"), entry.get("size_vram")
        if isinstance(size, int) and size > 0 and size_vram == 0:
            raise ValidationFailed(f"Ollama runs '{tag}' on the CPU only on this DGX Spark",
                                   remedy="use an Ollama build with CUDA v13 support (update Ollama or the "
                                          "ollama/ollama image) and run again",
                                   cause="ollama-cpu-only", details={"tag": tag, "size": size})


# --- unload ----------------------------------------------------------------------------------------------------


def _loaded_entries(http: httpx.Client, base_url: str) -> list[dict[str, Any]] | None:
    try:
        response = http.get(f"{base_url}/api/ps", timeout=UNLOAD_TIMEOUT)
    except httpx.HTTPError:
        return None
    payload = json_or_none(response.text) if response.status_code == 200 else None
    entries = payload.get("models") if isinstance(payload, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else None


def loaded_models(http: httpx.Client, base_url: str) -> tuple[str, ...] | None:
    """The models ``/api/ps`` lists as loaded; ``None`` when Ollama did not answer."""
    entries = _loaded_entries(http, base_url)
    if entries is None:
        return None
    return tuple(str(e.get("model") or e.get("name")) for e in entries if e.get("model") or e.get("name"))


def unload_models(http: httpx.Client, base_url: str, tags: tuple[str, ...] | list[str] | None = None
                  ) -> tuple[str, ...]:
    """Unload ``tags`` (default: every loaded model) with ``keep_alive: 0``; best-effort, short timeouts.

    Returns the models Ollama confirmed unloading. Never raises for a server that is gone.
    """
    targets = tuple(tags) if tags is not None else loaded_models(http, base_url) or ()
    unloaded: list[str] = []
    for name in targets:
        try:
            response = http.post(f"{base_url}/api/generate", json={"model": name, "keep_alive": 0},
                                 timeout=UNLOAD_TIMEOUT)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            unloaded.append(name)
    return tuple(unloaded)


__all__ = [
    "DEFAULT_OLLAMA_PORT", "MIN_OLLAMA_VERSION", "PROBE_BUDGETS_S", "ForeignListener", "InstalledModel",
    "OllamaServer", "OllamaValidation", "detect_ollama", "loaded_models", "normalize_tag",
    "ollama_base_url", "probe_body", "require_tools", "show_capabilities",
    "unload_models", "validate_model", "warm_up",
    "EXCERPT_CHARS", "MEMORY_RE", "PROBE_RETRY_PAUSE_S", "RUNNER_CRASH_RE", "json_or_none", "response_error_text",
]
