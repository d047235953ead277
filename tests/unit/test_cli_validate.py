"""``nemoclaw-runtime validate`` end to end through ``cli.main.run`` against the fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from nemoclaw_runtime.cli.main import run
from tests.fake_servers.fake_openai import FakeOpenAI, fake_openai_servers

Start = Callable[..., FakeOpenAI]
MODEL = "fake/model"


@pytest.fixture
def fake_openai() -> Iterator[Start]:
    with fake_openai_servers() as start:
        yield start


def validate(fake: FakeOpenAI, *extra: str) -> int:
    return run(["validate", "--base-url", fake.base_url, "--model", MODEL, *extra])


def test_healthy_endpoint_exits_0_and_says_which_api_to_use(fake_openai: Start,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(fake_openai("normal")) == 0
    out, err = capsys.readouterr()
    assert "answered" in out and "openai-completions" in out and "ready" in out
    assert "Validating fake/model" in err


def test_json_output_is_one_document_with_the_result(fake_openai: Start,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(fake_openai("responses-stream"), "--api", "openai-responses", "--json") == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["api"] == "openai-responses" and data["reply_excerpt"] == "ready"
    assert data["tools_supported"] is True and data["fallback_reason"] is None
    assert isinstance(data["latency_ms"], float)
    assert all(json.loads(line)["event"] for line in err.splitlines())  # events stay JSON lines on stderr


def test_fallback_is_reported_in_json_and_as_a_warning(fake_openai: Start,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(fake_openai("responses-broken"), "--api", "openai-responses", "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["api"] == "openai-completions" and json.loads(out)["fallback_reason"]
    assert any(json.loads(line)["event"] == "warning" for line in err.splitlines())


def test_failed_validation_exits_5_with_cause_and_remedy(fake_openai: Start,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(fake_openai("tools-400")) == 5
    _, err = capsys.readouterr()
    assert "cause: tools-unsupported" in err and "--enable-auto-tool-choice" in err


def test_failed_validation_json_shape(fake_openai: Start, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(fake_openai("route-404"), "--json") == 5
    data = json.loads(capsys.readouterr().out)
    assert data["error"] == "ValidationFailed" and data["exit_code"] == 5 and data["cause"] == "route"
    assert data["remedy"] and data["details"]["status"] == 404 and "does not exist" in data["details"]["excerpt"]


@pytest.mark.parametrize("args", [
    ["validate", "--base-url", "ftp://127.0.0.1/v1", "--model", MODEL],
    ["validate", "--base-url", "http://127.0.0.1:9/v1", "--model", "bad model"],
    ["validate", "--base-url", "http://127.0.0.1:9/v1", "--model", MODEL, "--api", "carrier-pigeon"],
    ["validate", "--base-url", "http://127.0.0.1:9/v1"],
])
def test_bad_input_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == 2
    assert capsys.readouterr().err


def test_bad_timeout_value_warns_and_uses_the_default(fake_openai: Start, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_LOCAL_INFERENCE_TIMEOUT", "-3")
    assert validate(fake_openai("normal")) == 0
    err = capsys.readouterr().err
    assert "Warning:" in err and "NEMOCLAW_LOCAL_INFERENCE_TIMEOUT" in err and "180" in err


def test_api_key_comes_from_the_named_variable_and_never_shows(fake_openai: Start,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake = fake_openai("normal", api_key="right-key-123456")
    monkeypatch.setenv("ENDPOINT_KEY", "right-key-123456")
    assert validate(fake, "--api-key-env", "ENDPOINT_KEY") == 0
    first_out, first_err = capsys.readouterr()
    monkeypatch.setenv("ENDPOINT_KEY", "wrong-key-654321")
    assert validate(fake, "--api-key-env", "ENDPOINT_KEY", "--json") == 5
    out, err = capsys.readouterr()
    assert json.loads(out)["cause"] == "auth"
    shown = first_out + first_err + out + err
    assert "wrong-key-654321" not in shown and "right-key-123456" not in shown


def test_api_key_env_naming_an_unset_variable_exits_2(fake_openai: Start) -> None:
    assert validate(fake_openai("normal"), "--api-key-env", "NOT_SET_ANYWHERE") == 2


def test_validate_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    assert "validate" in capsys.readouterr().out
    assert run(["validate", "--help"]) == 0
    assert "--base-url" in capsys.readouterr().out
