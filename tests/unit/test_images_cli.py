"""``nemoclaw-runtime pull``: options become one library call; the result is rendered as text or one JSON doc."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from nemoclaw_runtime.cli.pull import pull
from nemoclaw_runtime.kernel.errors import MissingToken
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.port import PulledImage

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_pull(runtime: str, **kw: Any) -> PulledImage:
        seen.append({"runtime": runtime, **kw})
        return PulledImage(ref=kw["image"] or "default/img:1", digest=DIGEST, platform="linux/amd64", pulled=True,
                           image_id="sha256:" + "b" * 64)

    monkeypatch.setattr(pipeline, "pull", fake_pull)
    return seen


def test_json_output_has_image_digest_platform_pulled(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(pull, ["nim", "--image", "127.0.0.1:5000/a:1", "--model", "m", "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {k: document[k] for k in ("image", "digest", "platform", "pulled")} == \
        {"image": "127.0.0.1:5000/a:1", "digest": DIGEST, "platform": "linux/amd64", "pulled": True}
    assert calls[0]["runtime"] == "nim" and calls[0]["model"] == "m" and calls[0]["save_login"] is False
    assert calls[0]["prompt_secret"] is None  # stdin is not a terminal here: never prompt


def test_human_output(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(pull, ["ollama", "--save-login"])

    assert result.exit_code == 0
    assert "default/img:1: pulled" in result.stdout and DIGEST in result.stdout
    assert calls[0]["save_login"] is True


def test_unknown_runtime_is_a_usage_error(calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    from nemoclaw_runtime.cli.main import run

    assert run(["pull", "podman"]) == 2
    assert capsys.readouterr().err.splitlines() == ["Error: Unknown runtime 'podman'",
                                                    "  fix: use one of: vllm, nim, ollama"]
    assert calls == []


def test_errors_leave_through_the_cli_with_their_exit_code(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from nemoclaw_runtime.cli.main import run

    def refuse(*args: Any, **kw: Any) -> PulledImage:
        raise MissingToken("No login for the registry nvcr.io",
                           remedy="run: docker login nvcr.io -u '$oauthtoken' --password-stdin")

    monkeypatch.setattr(pipeline, "pull", refuse)

    assert run(["pull", "vllm"]) == 3
    assert "docker login nvcr.io -u '$oauthtoken' --password-stdin" in capsys.readouterr().err
