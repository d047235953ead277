"""Registry login for pulls, through the CLI (``nemoclaw-runtime pull --image``) against an htpasswd registry with
the NGC user ``$oauthtoken``: a key from the environment, a missing key, a wrong key, a saved login. No key value
may appear in any output, error or ``docker inspect``."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from nemoclaw_runtime.cli.main import run
from tests.helpers.registry import LocalRegistry
from tests.integration.test_pull import Pushed, push_random_image, remove_quietly

pytestmark = pytest.mark.docker


@pytest.fixture
def private_image(docker_client: docker.DockerClient, busybox_base: str, auth_registry: LocalRegistry
                  ) -> Iterator[Pushed]:
    image = push_random_image(docker_client, auth_registry, 32 * 1024)
    yield image
    remove_quietly(docker_client, image.ref("multi"))


def pull_cli(ref: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = run(["pull", "nim", "--image", ref, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def docker_config(home: Path) -> Path:
    return home / ".docker" / "config.json"


def test_key_from_the_environment_pulls_pinned_and_never_shows(
        docker_client: docker.DockerClient, private_image: Pushed, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    key = private_image.registry.password
    assert key
    monkeypatch.setenv("NGC_API_KEY", key)
    ref = private_image.ref("multi")

    code, out, err = pull_cli(ref, capsys, "--json")

    assert code == 0, err
    result = json.loads(out)
    assert result["image"] == ref and result["digest"] == private_image.index["amd64"]
    assert result["platform"] == "linux/amd64" and result["pulled"] is True
    inspected = json.dumps(docker_client.images.get(ref).attrs)
    assert key not in out + err + inspected
    assert not docker_config(Path.home()).exists()  # nothing written without --save-login


def test_missing_key_non_interactive_is_refused_with_the_login_line(
        private_image: Pushed, capsys: pytest.CaptureFixture[str]) -> None:
    registry = private_image.registry.host

    code, out, err = pull_cli(private_image.ref("multi"), capsys)

    assert code == 3
    assert f"docker login {registry} -u '$oauthtoken' --password-stdin" in err
    assert "NGC_API_KEY" in err


def test_rejected_key_is_refused_naming_the_variable_not_the_value(
        private_image: Pushed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "nvapi-wrong-" + "z" * 24
    monkeypatch.setenv("NVIDIA_API_KEY", wrong)

    code, out, err = pull_cli(private_image.ref("multi"), capsys, "--json")

    assert code == 3
    error = json.loads(out)
    assert error["error"] == "AccessDenied" and "NVIDIA_API_KEY" in error["message"]
    assert wrong not in out + err


def test_saved_login_is_0600_and_used_by_the_next_pull(
        private_image: Pushed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    key = private_image.registry.password
    assert key
    monkeypatch.setenv("NGC_API_KEY", key)
    ref = private_image.ref("multi")

    code, _, err = pull_cli(ref, capsys, "--save-login")
    monkeypatch.delenv("NGC_API_KEY")
    again, out, err2 = pull_cli(ref, capsys, "--json")

    config = docker_config(Path.home())
    assert (code, again) == (0, 0), err + err2
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    entry = json.loads(config.read_text())["auths"][private_image.registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"$oauthtoken:{key}"
    assert json.loads(out)["pulled"] is False
    assert key not in err + err2 + out
