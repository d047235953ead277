"""External JSON nested absurdly deep (a hostile listener, registry or Hugging Face mirror) is refused like any
other bad JSON, never a RecursionError that escapes ``except ValueError`` and ends the command with exit 1."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from nemoclaw_runtime.runtimes.docker import manifests, registry_login
from nemoclaw_runtime.runtimes.fit import facts, hub, options, safetensors
from nemoclaw_runtime.runtimes.server import answers, ollama_api, probes
from nemoclaw_runtime.runtimes.status import probe

DEEP = "[" * 200_000 + "]" * 200_000
DEEP_OBJECT = '{"a":' * 200_000 + "1" + "}" * 200_000


def test_plain_json_loads_really_overflows() -> None:
    """The premise: without the bounded parser these documents raise RecursionError, not ValueError."""
    import json

    with pytest.raises(RecursionError):
        json.loads(DEEP)


def test_probe_get_json_reads_deep_body_as_not_json() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=DEEP))
    with httpx.Client(transport=transport) as http:
        assert probes._get_json(http, "http://127.0.0.1:8000/v1/models") == (200, None)


def test_answers_refuse_deep_documents() -> None:
    with pytest.raises(answers.EmptyReply):
        answers.read_chat(DEEP_OBJECT, "excerpt", 0.1)
    stream = answers.scan_sse(["data: " + DEEP_OBJECT], lambda: False)
    assert stream.types == []


def test_ollama_and_status_probe_json_or_none() -> None:
    assert ollama_api.json_or_none(DEEP) is None
    assert probe._json(DEEP) is None


def test_safetensors_header_too_deep_is_a_header_error() -> None:
    with pytest.raises(safetensors.HeaderError):
        safetensors.parse_header(DEEP_OBJECT.encode())


def test_hub_config_too_deep_is_unavailable(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(DEEP_OBJECT, encoding="utf-8")
    with pytest.raises(hub._Unavailable):
        hub._load_json(config)
    assert facts._read_json(config) is None


def test_manifest_and_speculative_and_docker_config(tmp_path: Path) -> None:
    assert manifests._json(httpx.Response(200, text=DEEP_OBJECT)) == {}
    assert options._speculative(DEEP_OBJECT) == (None, 0)
    config = tmp_path / "config.json"
    config.write_text(DEEP_OBJECT, encoding="utf-8")
    assert registry_login._config_document(config) == {}
