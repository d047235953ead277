"""Registry credentials: the docker config first, then the NGC key variables, then a masked prompt.

* Credentials the user already has in the docker config (``auths``, ``credHelpers``, ``credsStore``) are used as
  they are; nothing is asked and nothing is written. The engine adapter reads them (``DockerPort.stored_credentials``,
  through docker-py's ``docker.auth``): this module never parses the docker config for credentials.
* Otherwise a key from ``NGC_API_KEY``, ``NVIDIA_INFERENCE_API_KEY`` or ``NVIDIA_API_KEY`` (in that order) is used
  with the user name ``$oauthtoken``, checked with the engine (``DockerPort.login``) before any pull.
* Interactive callers pass ``prompt_secret`` (a masked prompt); a rejected key gets one retry.
* Non-interactive with nothing usable → :class:`MissingToken` whose remedy is the ``docker login`` line; a key
  the registry rejects → :class:`AccessDenied` naming the variable it came from, never the value.

Keys are :class:`Secret` values: never on argv, never printed, never in exception text; written to disk only when
the caller asks (``save_login``), as a docker config ``auths`` entry with 0600 permissions.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nemoclaw_runtime.kernel.checks import read_regular_file
from nemoclaw_runtime.kernel.errors import AccessDenied, MissingToken, RegistryAuthFailed
from nemoclaw_runtime.kernel.events import EventSink, Info, Warning, discard
from nemoclaw_runtime.kernel.names import NGC_KEY_VARIABLES
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.runtimes.docker.manifests import BasicCredentials
from nemoclaw_runtime.runtimes.docker.port import StoredLogin

NGC_REGISTRY = "nvcr.io"
NGC_USERNAME = "$oauthtoken"
#: Registries that are always logged in to before a pull (NemoClaw's behaviour for nvcr.io).
LOGIN_REQUIRED = frozenset({NGC_REGISTRY})
PROMPT_ATTEMPTS = 2  # the first try and one retry
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # the docker config we add a login to: read at most this much

PromptSecret = Callable[[str], str]


class LoginPort(Protocol):
    def login(self, registry: str, username: str, password: str) -> None: ...


@dataclass(frozen=True)
class RegistryCredentials:
    registry: str
    username: str
    password: Secret
    source: str  # docker-config | NGC_API_KEY | NVIDIA_INFERENCE_API_KEY | NVIDIA_API_KEY | prompt

    def basic(self) -> BasicCredentials:
        return BasicCredentials(self.username, self.password)

    def auth_config(self) -> dict[str, str]:
        """The engine's ``X-Registry-Auth`` payload. Reveals the key: hand it straight to the engine call."""
        return {"username": self.username, "password": self.password.reveal(), "serveraddress": self.registry}


def login_command(registry: str) -> str:
    return f"docker login {registry} -u '{NGC_USERNAME}' --password-stdin"


# --- the docker config ----------------------------------------------------------------------------------------------


def docker_config_credentials(registry: str, stored: StoredLogin | None) -> RegistryCredentials | None:
    """The docker config's login for ``registry`` (``DockerPort.stored_credentials``) as credentials we can use
    ourselves (to read the manifest list), or ``None`` when there is none or it cannot be read here."""
    if stored is None or not stored.readable:
        return None
    assert stored.username is not None and stored.password is not None
    return RegistryCredentials(registry, stored.username, stored.password, "docker-config")


# --- obtaining a key ------------------------------------------------------------------------------------------------


def obtain_credentials(registry: str, settings: Settings, *, port: LoginPort,
                       prompt_secret: PromptSecret | None = None, events: EventSink = discard,
                       save_login: bool = False) -> RegistryCredentials:
    """A key for ``registry`` that the engine accepted (see the module docstring for the order)."""
    key = settings.ngc_key_value()
    if key is not None:
        variable, secret = key
        if registry != NGC_REGISTRY:  # the rule (private mirrors of NGC images); never silently
            events(Warning(f"{registry} asks for a login: offering it the key from {variable} (user "
                           f"{NGC_USERNAME}); run `{login_command(registry)}` to use another credential"))
        if _accepted(port, registry, secret):
            credentials = RegistryCredentials(registry, NGC_USERNAME, secret, variable)
            return _maybe_saved(credentials, settings, save_login, events)
        if prompt_secret is None:
            raise AccessDenied(
                f"The registry {registry} rejected the key from {variable}",
                remedy=f"check {variable} (an NGC API key for nvcr.io), or run: {login_command(registry)}",
                details={"registry": registry, "variable": variable})
        events(Warning(f"The registry {registry} rejected the key from {variable}."))
        return _prompted(registry, settings, port, prompt_secret, events, save_login, attempts=1)
    if prompt_secret is None:
        raise MissingToken(
            f"No login for the registry {registry}: Docker is not logged in and none of "
            f"{', '.join(NGC_KEY_VARIABLES)} is set",
            remedy=f"export NGC_API_KEY=<your key>, or run: {login_command(registry)}",
            details={"registry": registry, "variables": list(NGC_KEY_VARIABLES)})
    return _prompted(registry, settings, port, prompt_secret, events, save_login, attempts=PROMPT_ATTEMPTS)


def _prompted(registry: str, settings: Settings, port: LoginPort, prompt_secret: PromptSecret,
              events: EventSink, save_login: bool, *, attempts: int) -> RegistryCredentials:
    label = "  NGC API Key: " if registry == NGC_REGISTRY else f"  API key for {registry} (user {NGC_USERNAME}): "
    for attempt in range(attempts):
        secret = Secret(prompt_secret(label).strip())
        if not secret:
            raise MissingToken(f"No key entered for the registry {registry}",
                               remedy=f"export NGC_API_KEY=<your key>, or run: {login_command(registry)}",
                               details={"registry": registry, "variable": "prompt"})
        if _accepted(port, registry, secret):
            return _maybe_saved(RegistryCredentials(registry, NGC_USERNAME, secret, "prompt"), settings,
                                save_login, events)
        if attempt + 1 < attempts:
            events(Warning(f"The registry {registry} rejected that key; try again."))
    raise AccessDenied(f"The registry {registry} did not accept the key entered",
                       remedy=f"get a key at https://org.ngc.nvidia.com/setup/api-key, or run: "
                              f"{login_command(registry)}",
                       details={"registry": registry, "variable": "prompt"})


def _accepted(port: LoginPort, registry: str, secret: Secret) -> bool:
    try:
        port.login(registry, NGC_USERNAME, secret.reveal())
    except RegistryAuthFailed:
        return False
    return True


def _maybe_saved(credentials: RegistryCredentials, settings: Settings, save_login: bool,
                 events: EventSink) -> RegistryCredentials:
    if save_login:
        save_docker_login(settings.docker_config_path, credentials)
        events(Info(f"Saved the login for {credentials.registry} to {settings.docker_config_path}."))
    return credentials


def _config_document(path: Path) -> dict[str, Any]:
    """The docker config as a document, to add an entry to it and keep everything else (docker.auth only reads)."""
    try:  # a regular file only, and bounded: a FIFO or a device there must not hang or grow without end
        document = loads_json(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def save_docker_login(path: Path, credentials: RegistryCredentials) -> None:
    """Add an ``auths`` entry to the docker config at ``path``, keeping every other entry; the file ends 0600."""
    config = _config_document(path)
    auths = config.setdefault("auths", {})
    raw = f"{credentials.username}:{credentials.password.reveal()}".encode()
    auths[credentials.registry] = {"auth": base64.b64encode(raw).decode()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def missing_login_hint(registry: str) -> str:
    """What to say when a registry answers 401 to a pull made without credentials."""
    return f"set NGC_API_KEY (or {' / '.join(NGC_KEY_VARIABLES[1:])}), or run: {login_command(registry)}"


__all__ = [
    "LOGIN_REQUIRED", "PromptSecret", "RegistryCredentials", "docker_config_credentials", "login_command",
    "missing_login_hint", "obtain_credentials", "save_docker_login",
]
