"""The Ollama HTTP client against the threaded fake Ollama (real httpx, 127.0.0.1 only): detection, capabilities,
warm-up, validation and unload. Pulls are in test_ollama_api_pull.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from nemoclaw_runtime.kernel.errors import (
    RuntimeNotReady,
    UnknownModel,
    UnsupportedRuntime,
    ValidationFailed,
)
from nemoclaw_runtime.kernel.events import Event, Info
from nemoclaw_runtime.runtimes.server import ollama_api
from nemoclaw_runtime.runtimes.server.ollama_api import (
    MEMORY_RE,
    RUNNER_CRASH_RE,
    ForeignListener,
    OllamaServer,
    detect_ollama,
    normalize_tag,
    ollama_base_url,
    probe_body,
    require_tools,
    show_capabilities,
    unload_models,
    validate_model,
    warm_up,
)
from tests.fake_servers.fake_ollama import FakeModel, FakeOllama, StepClock, free_port

TAG = "qwen3.5:9b"


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    """A started fake with one installed tool-capable model."""
    with FakeOllama(models=[TAG]) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def _validate(http: httpx.Client, fake: FakeOllama, tag: str = TAG, **kw: object) -> ollama_api.OllamaValidation:
    kw.setdefault("clock", StepClock())
    return validate_model(http, fake.base_url, tag, **kw)  # type: ignore[arg-type]


# --- detection -------------------------------------------------------------------------------------------------


def test_detect_finds_ollama_with_version_and_installed_models(http: httpx.Client, fake: FakeOllama) -> None:
    server = detect_ollama(http, port=fake.port)
    assert isinstance(server, OllamaServer)
    assert server.base_url == fake.base_url
    assert server.version == "0.12.6"
    assert server.model_names == (TAG,)
    assert server.models[0].size_bytes == 4_000_000
    assert server.has_model(TAG) and not server.has_model("qwen3.5") and not server.has_model("llama3")
    assert fake.paths("GET") == ["/api/tags", "/api/version"]
    assert server.to_dict()["kind"] == "ollama"
    assert json.loads(json.dumps(server.to_dict()))["models"][0]["name"] == TAG


def test_detect_returns_none_when_nothing_listens(http: httpx.Client) -> None:
    assert detect_ollama(http, port=free_port()) is None


def test_detect_reports_a_foreign_html_listener_instead_of_trusting_it(http: httpx.Client,
                                                                      fake: FakeOllama) -> None:
    fake.config.foreign = True
    found = detect_ollama(http, port=fake.port)
    assert isinstance(found, ForeignListener)
    assert found.status_code == 200
    assert found.content_type is not None and "text/html" in found.content_type
    assert "It works!" in found.excerpt and len(found.excerpt) <= ollama_api.EXCERPT_CHARS
    assert "is not Ollama" in found.describe() and "HTTP 200" in found.describe()
    assert found.to_dict()["kind"] == "foreign"
    assert fake.paths() == ["/api/tags"]  # no version probe of a stranger


def test_detect_reports_json_without_a_models_array_as_foreign(http: httpx.Client) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "ok", "models": "many"}))
    with httpx.Client(transport=transport) as client:
        found = detect_ollama(client, port=11434)
    assert isinstance(found, ForeignListener)
    assert "models array" in found.reason and '"status":"ok"' in found.excerpt


def test_detect_reports_a_listener_that_does_not_speak_http() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer_garbage() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        with httpx.Client() as client:
            found = detect_ollama(client, port=listener.getsockname()[1])
    finally:
        thread.join(timeout=5)
        listener.close()
    assert isinstance(found, ForeignListener)
    assert found.status_code is None and "HTTP" in found.reason


def test_detect_refuses_an_ollama_older_than_the_minimum(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.version = "0.6.8"
    with pytest.raises(UnsupportedRuntime) as caught:
        detect_ollama(http, port=fake.port)
    assert caught.value.exit_code == 3
    assert "0.6.8" in caught.value.message and ollama_api.MIN_OLLAMA_VERSION in caught.value.message
    assert caught.value.remedy is not None and "upgrade" in caught.value.remedy.lower()


@pytest.mark.parametrize("version", ["0.7.0", "0.7.0-rc2", "0.12.6", "1.0", "0.0.0"])
def test_detect_accepts_the_minimum_newer_and_source_builds(http: httpx.Client, fake: FakeOllama,
                                                            version: str) -> None:
    fake.config.version = version
    server = detect_ollama(http, port=fake.port)
    assert isinstance(server, OllamaServer) and server.version == version


def test_detect_uses_nemoclaws_bounded_timeouts_and_tolerates_a_missing_version() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        if request.url.path == "/api/tags":
            return httpx.Response(200, json={"models": []})
        return httpx.Response(404, text="404 page not found")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        server = detect_ollama(client, "::1", 11500)
    assert isinstance(server, OllamaServer)
    assert server.version is None and server.models == ()
    assert server.base_url == "http://[::1]:11500"
    assert seen[0]["connect"] == 3.0 and seen[0]["read"] == 5.0


def test_tag_helpers() -> None:
    assert normalize_tag("qwen3") == "qwen3:latest"
    assert normalize_tag("qwen3:8b") == "qwen3:8b"
    assert normalize_tag("localhost:5000/team/model") == "localhost:5000/team/model:latest"
    assert ollama_base_url() == "http://127.0.0.1:11434"


# --- capabilities --------------------------------------------------------------------------------------------


def test_show_capabilities_and_require_tools(http: httpx.Client, fake: FakeOllama) -> None:
    assert show_capabilities(http, fake.base_url, TAG) == ("completion", "tools")
    assert require_tools(http, fake.base_url, TAG) == ("completion", "tools")
    assert fake.requests[-1].body == {"model": TAG}


def test_require_tools_refuses_a_model_without_tool_calling(http: httpx.Client, fake: FakeOllama) -> None:
    fake.add_model(FakeModel("gemma2:2b", capabilities=("completion",)))
    with pytest.raises(UnsupportedRuntime) as caught:
        require_tools(http, fake.base_url, "gemma2:2b")
    assert caught.value.exit_code == 3
    assert "tool calling" in caught.value.message
    assert caught.value.remedy is not None and "--allow-no-tools" in caught.value.remedy
    assert require_tools(http, fake.base_url, "gemma2:2b", allow_no_tools=True) == ("completion",)


def test_show_of_a_missing_model_is_unknown_model(http: httpx.Client, fake: FakeOllama) -> None:
    with pytest.raises(UnknownModel) as caught:
        show_capabilities(http, fake.base_url, "nope:1b")
    assert caught.value.exit_code == 2 and "nope:1b" in caught.value.message


def test_show_of_an_unreachable_server_is_not_ready(http: httpx.Client) -> None:
    with pytest.raises(RuntimeNotReady) as caught:
        show_capabilities(http, f"http://127.0.0.1:{free_port()}", TAG)
    assert caught.value.cause == "ollama-unreachable"


def test_capabilities_are_derived_from_the_template_on_servers_without_the_field() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        template = "{{ if .Tools }}…{{ end }}" if b"toolful" in request.content else "{{ .Prompt }}"
        return httpx.Response(200, json={"template": template, "details": {}})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert show_capabilities(client, "http://o", "toolful") == ("completion", "tools")
        assert show_capabilities(client, "http://o", "plain") == ("completion",)


# --- warm-up -------------------------------------------------------------------------------------------------


def test_warm_up_sends_nemoclaws_request_and_loads_the_model(http: httpx.Client, fake: FakeOllama) -> None:
    assert warm_up(http, fake.base_url, TAG) is True
    assert fake.requests[-1].body == {
        "model": TAG, "prompt": "Hello, reply in less than 5 words", "stream": False, "keep_alive": "15m",
        "options": {"num_predict": 16}}
    assert fake.loaded == {TAG}


def test_warm_up_is_best_effort(http: httpx.Client, fake: FakeOllama) -> None:
    assert warm_up(http, fake.base_url, "missing:1b") is False
    assert warm_up(http, f"http://127.0.0.1:{free_port()}", TAG) is False
    fake.config.generate_mode = "slow"
    fake.config.slow_s = 2.0
    assert warm_up(http, fake.base_url, TAG, timeout_s=0.2) is False


# --- validation ----------------------------------------------------------------------------------------------


def test_validate_ok_sends_the_warm_up_probe(http: httpx.Client, fake: FakeOllama) -> None:
    result = _validate(http, fake)
    assert result.attempts == 1 and result.response_excerpt == "Hello there!" and result.notes == ()
    assert fake.requests[-1].body == probe_body(TAG)
    assert result.to_dict()["ok"] is True


def test_validate_retries_once_with_a_longer_budget_only_after_a_timeout(http: httpx.Client,
                                                                         fake: FakeOllama) -> None:
    fake.config.generate_mode = "slow_first"
    fake.config.slow_s = 1.0
    clock = StepClock()
    events: list[Event] = []
    result = _validate(http, fake, clock=clock, events=events.append, budgets_s=(0.2, 5.0))
    assert result.attempts == 2 and fake.generate_calls == 2
    assert clock.sleeps == [ollama_api.PROBE_RETRY_PAUSE_S]  # the pause went through the injected clock
    notes = [e.message for e in events if isinstance(e, Info)]
    assert len(notes) == 1 and "0.2 s" in notes[0] and "5 s" in notes[0]


def test_validate_fails_when_both_attempts_time_out(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "slow"
    fake.config.slow_s = 3.0
    with pytest.raises(ValidationFailed) as caught:
        _validate(http, fake, budgets_s=(0.2, 0.3))
    assert caught.value.exit_code == 5
    assert caught.value.message.endswith("did not answer the local probe in time.")
    assert caught.value.details["attempts"] == 2


def test_default_probe_budgets_are_nemoclaws() -> None:
    assert ollama_api.PROBE_BUDGETS_S == (120.0, 300.0)


def test_validate_empty_answer_fails_without_retry(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "empty"
    with pytest.raises(ValidationFailed, match="did not answer the local probe in time"):
        _validate(http, fake)
    assert fake.generate_calls == 1


def test_validate_names_a_crashed_runner_without_retrying(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "crash"
    with pytest.raises(ValidationFailed) as caught:
        _validate(http, fake)
    assert caught.value.cause == "ollama-runner-crash"
    assert "terminated" in caught.value.message
    assert fake.generate_calls == 1


@pytest.mark.parametrize("text, crashed", [
    ("llama runner process has terminated: exit status 2", True),
    ("model runner has unexpectedly stopped, this may be due to resource limitations", True),
    ("Runner Process KILLED by signal", True),
    ("the runner" + " x" * 60 + " stopped", False),  # too far apart
    ("model not found", False),
])
def test_runner_crash_regex(text: str, crashed: bool) -> None:
    assert bool(RUNNER_CRASH_RE.search(text)) is crashed


def test_memory_error_fails_off_spark(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "memory"
    with pytest.raises(ValidationFailed) as caught:
        _validate(http, fake, host_memory_total_mib=131072)
    assert caught.value.cause == "ollama-insufficient-memory"
    assert "21.3 GiB" in caught.value.message


@pytest.mark.parametrize("total_mib, ok", [(131072, True), (21.3 * 1024, True), (16384, False), (None, False)])
def test_memory_error_is_accepted_on_spark_only_when_the_host_has_enough(
        http: httpx.Client, fake: FakeOllama, total_mib: float | None, ok: bool) -> None:
    fake.config.generate_mode = "memory"
    total = int(total_mib) + (1 if total_mib and total_mib % 1 else 0) if total_mib is not None else None
    if ok:
        result = _validate(http, fake, is_spark=True, host_memory_total_mib=total)
        assert result.notes and "DGX Spark" in result.notes[0]
    else:
        with pytest.raises(ValidationFailed, match="more system memory"):
            _validate(http, fake, is_spark=True, host_memory_total_mib=total)


def test_memory_regex_reads_both_numbers() -> None:
    match = MEMORY_RE.search("model requires more system memory (21.3 GiB) than is available (15.5 GiB)")
    assert match is not None and (match[1], match[2]) == ("21.3", "15.5")


def test_no_tools_error_fails_unless_allowed(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "no_tools"
    with pytest.raises(ValidationFailed) as caught:
        _validate(http, fake)
    assert caught.value.cause == "ollama-no-tools"
    assert caught.value.remedy is not None and "--allow-no-tools" in caught.value.remedy
    assert _validate(http, fake, allow_no_tools=True).notes == ("no tool calling (accepted with "
                                                                       "--allow-no-tools)",)


def test_non_json_answer_is_accepted(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "non_json"
    result = _validate(http, fake)
    assert result.response_excerpt == "Hello from a proxy" and "non-JSON" in result.notes[0]


def test_other_ollama_errors_fail_with_the_text(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.generate_mode = "error"
    fake.config.generate_error = "unexpected EOF"
    with pytest.raises(ValidationFailed, match="unexpected EOF") as caught:
        _validate(http, fake)
    assert caught.value.cause == "ollama-error"


def test_validate_of_an_unreachable_server(http: httpx.Client) -> None:
    down = FakeOllama().start()
    down.stop()
    with pytest.raises(ValidationFailed) as caught:
        _validate(http, down)
    assert caught.value.cause == "ollama-unreachable"


def test_validate_refuses_cpu_only_placement_on_spark(http: httpx.Client, fake: FakeOllama) -> None:
    fake.config.cpu_only = True
    assert _validate(http, fake).attempts == 1  # elsewhere CPU placement is the host's business
    with pytest.raises(ValidationFailed) as caught:
        _validate(http, fake, is_spark=True, host_memory_total_mib=131072)
    assert caught.value.cause == "ollama-cpu-only"
    assert caught.value.remedy is not None and "CUDA v13" in caught.value.remedy


def test_validate_on_spark_with_gpu_placement_passes(http: httpx.Client, fake: FakeOllama) -> None:
    assert _validate(http, fake, is_spark=True, host_memory_total_mib=131072).attempts == 1
    assert "/api/ps" in fake.paths("GET")


# --- unload --------------------------------------------------------------------------------------------------


def test_unload_every_loaded_model(http: httpx.Client, fake: FakeOllama) -> None:
    fake.add_model(FakeModel("llama3:latest"))
    assert warm_up(http, fake.base_url, TAG) and warm_up(http, fake.base_url, "llama3")
    assert ollama_api.loaded_models(http, fake.base_url) is not None
    assert sorted(unload_models(http, fake.base_url)) == ["llama3:latest", TAG]
    assert fake.loaded == set()
    assert fake.requests[-1].body in ({"model": TAG, "keep_alive": 0},
                                             {"model": "llama3:latest", "keep_alive": 0})
    assert unload_models(http, fake.base_url) == ()


def test_unload_given_tags_only(http: httpx.Client, fake: FakeOllama) -> None:
    fake.add_model(FakeModel("llama3:latest"))
    warm_up(http, fake.base_url, TAG)
    warm_up(http, fake.base_url, "llama3:latest")
    assert unload_models(http, fake.base_url, [TAG, "missing:1b"]) == (TAG,)
    assert fake.loaded == {"llama3:latest"}


def test_unload_is_best_effort_when_ollama_is_gone(http: httpx.Client) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    assert unload_models(http, base_url) == ()
    assert unload_models(http, base_url, [TAG]) == ()
    assert ollama_api.loaded_models(http, base_url) is None
