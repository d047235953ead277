"""Registry credentials: docker config first, then the NGC key variables, then a masked prompt; never the value."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.errors import AccessDenied, MissingToken, RegistryAuthFailed
from nemoclaw_runtime.kernel.events import Event, Warning
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.port import StoredLogin
from nemoclaw_runtime.runtimes.docker.registry_login import (
    RegistryCredentials,
    docker_config_credentials,
    login_command,
    obtain_credentials,
    save_docker_login,
)

GOOD, BAD = "nvapi-good-key-0123456789", "nvapi-bad-key-9876543210"
REGISTRY = "nvcr.io"


class LoginRecorder:
    """Accepts only GOOD, like the engine's /auth; records (registry, user) and never the password."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def login(self, registry: str, username: str, password: str) -> None:
        self.calls.append((registry, username))
        if password != GOOD:
            raise RegistryAuthFailed(f"login attempt to https://{registry}/v2/ failed with status: 401 Unauthorized")


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path), **env})


def write_config(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_a_readable_docker_config_login_is_used_as_is() -> None:
    found = docker_config_credentials(REGISTRY, StoredLogin("$oauthtoken", Secret(GOOD)))

    assert found is not None and (found.username, found.password.reveal(), found.source) == \
        ("$oauthtoken", GOOD, "docker-config")
    assert GOOD not in repr(found)


@pytest.mark.parametrize("stored", [None, StoredLogin(), StoredLogin("user", None)])
def test_no_login_or_one_only_the_engine_can_read_gives_no_credentials(stored: StoredLogin | None) -> None:
    assert docker_config_credentials(REGISTRY, stored) is None


@pytest.mark.parametrize("variable", ["NGC_API_KEY", "NVIDIA_INFERENCE_API_KEY", "NVIDIA_API_KEY"])
def test_key_from_each_variable_is_checked_with_the_engine(tmp_path: Path, variable: str) -> None:
    port = LoginRecorder()

    creds = obtain_credentials(REGISTRY, settings(tmp_path, **{variable: GOOD}), port=port)

    assert (creds.username, creds.source, creds.password.reveal()) == ("$oauthtoken", variable, GOOD)
    assert port.calls == [(REGISTRY, "$oauthtoken")]


def test_ngc_api_key_wins_over_the_fallbacks(tmp_path: Path) -> None:
    creds = obtain_credentials(REGISTRY, settings(tmp_path, NGC_API_KEY=GOOD, NVIDIA_API_KEY=BAD),
                               port=LoginRecorder())
    assert creds.source == "NGC_API_KEY"


def test_nothing_usable_non_interactive_is_missing_token_with_the_login_line(tmp_path: Path) -> None:
    with pytest.raises(MissingToken) as caught:
        obtain_credentials(REGISTRY, settings(tmp_path), port=LoginRecorder())

    assert caught.value.exit_code == 3
    assert "docker login nvcr.io -u '$oauthtoken' --password-stdin" in (caught.value.remedy or "")
    assert login_command("127.0.0.1:5000") == "docker login 127.0.0.1:5000 -u '$oauthtoken' --password-stdin"


def test_rejected_key_non_interactive_is_access_denied_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(AccessDenied) as caught:
        obtain_credentials(REGISTRY, settings(tmp_path, NVIDIA_INFERENCE_API_KEY=BAD), port=LoginRecorder())

    error = caught.value
    assert error.exit_code == 3 and "NVIDIA_INFERENCE_API_KEY" in error.message
    assert BAD not in json.dumps(error.to_dict())


def test_interactive_prompt_gets_one_retry(tmp_path: Path) -> None:
    answers = iter([BAD, GOOD])
    prompts: list[str] = []
    events: list[Event] = []

    def prompt(label: str) -> str:
        prompts.append(label)
        return next(answers)

    creds = obtain_credentials(REGISTRY, settings(tmp_path), port=LoginRecorder(), prompt_secret=prompt,
                               events=events.append)

    assert creds.source == "prompt" and len(prompts) == 2 and prompts[0] == "  NGC API Key: "
    assert [type(e) for e in events] == [Warning]
    assert all(BAD not in str(e) and GOOD not in str(e) for e in events)


def test_interactive_two_rejections_are_access_denied(tmp_path: Path) -> None:
    with pytest.raises(AccessDenied) as caught:
        obtain_credentials(REGISTRY, settings(tmp_path), port=LoginRecorder(), prompt_secret=lambda label: BAD)
    assert BAD not in json.dumps(caught.value.to_dict())


def test_rejected_environment_key_falls_back_to_one_prompt(tmp_path: Path) -> None:
    creds = obtain_credentials(REGISTRY, settings(tmp_path, NGC_API_KEY=BAD), port=LoginRecorder(),
                               prompt_secret=lambda label: GOOD)
    assert creds.source == "prompt"


def test_save_login_writes_a_0600_auths_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"other.io": {"auth": "eDp5"}}, "credHelpers": {"gcr.io": "gcloud"}})

    obtain_credentials(REGISTRY, settings(tmp_path, NGC_API_KEY=GOOD), port=LoginRecorder(), save_login=True)

    document = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(document["auths"]["nvcr.io"]["auth"]).decode() == f"$oauthtoken:{GOOD}"
    assert document["auths"]["other.io"] == {"auth": "eDp5"} and document["credHelpers"] == {"gcr.io": "gcloud"}


def test_nothing_is_written_without_save_login(tmp_path: Path) -> None:
    obtain_credentials(REGISTRY, settings(tmp_path, NGC_API_KEY=GOOD), port=LoginRecorder())
    assert not (tmp_path / ".docker").exists()


def test_save_docker_login_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "config.json"
    save_docker_login(path, RegistryCredentials("127.0.0.1:5000", "$oauthtoken", Secret(GOOD), "NGC_API_KEY"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "127.0.0.1:5000" in json.loads(path.read_text())["auths"]
