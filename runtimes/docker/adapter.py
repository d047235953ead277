"""``DockerEngine``: the one module that imports docker-py.

It implements :class:`~nemoclaw_runtime.runtimes.docker.port.DockerPort` and translates every docker-py / requests
error in one place (:func:`translated`). Nothing above this module sees a docker-py type.

Two sharp edges of docker-py are handled here (see docker-engine-notes.md):

* ``pull(stream=True)`` has no read timeout, and closing the response from another thread does not wake a blocked
  read. :class:`DockerPullStream` therefore keeps the response's socket: ``set_read_timeout`` sets a timeout on it,
  ``abort`` shuts it down, and either ends the iteration. The engine then cancels the pull and tags nothing.
* Errors inside a pull stream arrive as ``{"error": ...}`` events; the stream turns them into our errors.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import docker
import docker.auth
import docker.constants
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest
from docker.types import Mount as DockerMount

from nemoclaw_runtime.kernel.errors import (
    DockerUnavailable,
    DownloadFailed,
    ImageNotFound,
    InvalidInput,
    InvalidSetting,
    NameTaken,
    NemoclawError,
    NoSuchContainer,
    NoSuitableGpu,
    RegistryAuthFailed,
)
from nemoclaw_runtime.kernel.secret import Secret, redact, redact_url
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import one_line, plain_reason
from nemoclaw_runtime.kernel.translation import Context, Rule, Translation, translate
from nemoclaw_runtime.runtimes.docker.port import ContainerInfo, ContainerState, StoredLogin
from nemoclaw_runtime.runtimes.docker.pull_errors import classify_engine_message, pull_error
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, split_reference

LOG_LINE_LIMIT = 100_000  # follow_logs: a line longer than this is cut, so a runaway writer cannot exhaust memory
#: The first contact (docker-py's API-version request), ping and info: an engine that accepts connections but never
#: answers fails every command within this, not docker-py's 60 s default.
ENGINE_CONTACT_TIMEOUT_S = 5
#: Every other engine call keeps docker-py's per-call default (pulls and log follows set their own).
ENGINE_CALL_TIMEOUT_S: int = docker.constants.DEFAULT_TIMEOUT_SECONDS


def connect(settings: Settings) -> DockerEngine:
    """Connect to the engine named by ``settings`` (DOCKER_HOST, DOCKER_TLS_VERIFY, ... from ``settings.environ``).

    The client is built with the short contact timeout (its construction asks the engine for its API version), then
    set back to the per-call default for everything else.
    """
    with translated("connecting to the Docker engine", host=settings.docker_host):
        try:
            client = docker.from_env(environment=dict(settings.environ), timeout=ENGINE_CONTACT_TIMEOUT_S)
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            raise  # the table below knows these
        except Exception as exc:  # an ssh:// engine: paramiko connects (and fails) while the client is built
            raise _ssh_failure(settings.docker_host, exc) from None
    client.api.timeout = ENGINE_CALL_TIMEOUT_S
    return DockerEngine(client, docker_config_path=settings.docker_config_path, host=settings.docker_host)


# --- error translation: the one place docker-py errors become ours ------------------------------------------------


def _ssh_failure(host: str | None, exc: BaseException) -> DockerUnavailable:
    """An ssh:// engine that could not be reached: an unknown host, refused, a host key or login paramiko rejected."""
    where = redact_url(host) if host else "the engine"
    reason = one_line(redact(str(exc))) or type(exc).__name__
    return DockerUnavailable(
        f"Cannot reach the Docker engine at {where} over ssh: {reason}",
        remedy="check that `ssh USER@HOST docker version` works from this machine without a prompt (the host key "
               "known, a key or an agent for the login) and that the user may use Docker there",
        details={"host": where})


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    text = str(explanation or exc).strip()
    return " ".join(text.split())[:500]


@contextmanager
def translated(action: str, *, missing: str = "container", subject: str | None = None, host: str | None = None,
               secrets: tuple[str, ...] = (), image: str | None = None) -> Iterator[None]:
    """Turn docker-py / requests errors raised inside the block into our errors tree (by :data:`DOCKER_ERRORS`).

    ``missing`` says what a 404 means here: ``container`` → NoSuchContainer, ``image`` → ImageNotFound.
    ``secrets`` are values to blank out of any engine explanation that might echo them; ``image`` names the
    image when ``subject`` is a container (create). An exception the table does not know passes unchanged.
    """
    try:
        yield
    except NemoclawError:
        raise
    except Exception as exc:
        shown_host = redact_url(host) if host else None  # user:password@ in DOCKER_HOST is never shown
        text = redact(_explanation(exc), secrets)
        if getattr(exc, "status_code", None) is None and _is_connection_failure(exc):  # "connection refused", not
            # HTTPConnectionPool(...) / NewConnectionError / [Errno 111]: an engine answer (a status) is kept as is
            text = plain_reason(text)
        context = {
            "action": action, "missing": missing, "subject": subject or "?", "raw_subject": subject,
            "image": image or subject or "?", "host": shown_host,
            "where": shown_host or "the local socket (/var/run/docker.sock)",
            "text": one_line(text), "status": getattr(exc, "status_code", None), "engine_variable": "DOCKER_HOST",
        }
        error = translate(DOCKER_ERRORS, exc, context)
        if error is None:
            raise
        raise error from None


def _is_connection_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # a short, bounded walk down the cause chain
        if seen is None:
            break
        if isinstance(seen, (requests.exceptions.RequestException, ConnectionError, FileNotFoundError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return "Error while fetching server API version" in str(exc) or "Connection aborted" in str(exc)


_IMAGE_NOT_FOUND = Translation(ImageNotFound, "Image {image} was not found: {text}",
                               "check the image name and tag, or pull it first (nemoclaw-runtime pull)",
                               details={"image": "image"})
_NO_SUCH_IMAGE = Translation(ImageNotFound, "Image {subject} was not found: {text}", "check the image name and tag",
                             details={"image": "raw_subject"})
_NO_SUCH_CONTAINER = Translation(NoSuchContainer, "No container {subject}: {text}",
                                 "list managed containers with `nemoclaw-runtime ps`",
                                 details={"container": "raw_subject"})
_NAME_TAKEN = Translation(NameTaken, "The container name {subject} is already in use: {text}",
                          "stop it (nemoclaw-runtime stop) or choose another --name",
                          details={"container": "raw_subject"})
_REGISTRY_REFUSED = Translation(RegistryAuthFailed, "The registry refused access while {action}: {text}",
                                "log in to the registry (docker login <registry>)")
_ENGINE_ERROR = Translation(NemoclawError, "Docker engine error while {action}: {text}",
                            "see the engine's explanation above; `docker info` shows the engine's state",
                            details={"status": "status"})
_PERMISSION_DENIED = Translation(DockerUnavailable, "Permission denied on the Docker engine at {where} while {action}",
                                 "add your user to the docker group (sudo usermod -aG docker $USER, then log in "
                                 "again), or run as a user that may use the Docker socket", details={"host": "host"})
_UNREACHABLE = Translation(DockerUnavailable, "Cannot reach the Docker engine at {where} while {action}: {text}",
                           details={"host": "host"})  # the remedy: DockerUnavailable's own (start the engine)
_INVALID_REFERENCE = Translation(InvalidInput, "Invalid image reference {subject}: {text}",
                                 "use a reference such as registry.example.com/team/image:tag")
# An API version or TLS set-up problem: the engine may well be running.
_DOCKER_ERROR = Translation(NemoclawError, "Docker error while {action}: {text}",
                            "check the image reference and DOCKER_HOST / DOCKER_TLS_VERIFY settings",
                            details={"subject": "raw_subject"})


def _not_found(exc: BaseException, context: Context) -> Translation:
    return _NO_SUCH_IMAGE if context["missing"] == "image" else _NO_SUCH_CONTAINER


#: The engine without the NVIDIA container toolkit, asked for GPUs: 'could not select device driver "" with
#: capabilities: [[gpu]]' (also on start, for a container created elsewhere).
_NO_GPU_RUNTIME = Translation(
    NoSuitableGpu, "The Docker engine cannot give containers GPUs: the NVIDIA container toolkit is not installed or "
    "not configured (the engine said: {text})",
    "install the NVIDIA container toolkit (nvidia-container-toolkit), run `sudo nvidia-ctk runtime configure "
    "--runtime=docker` and restart Docker (`sudo systemctl restart docker`); or pass --gpus none to start without GPUs",
    cause="gpu-runtime-missing")
#: docker-py refused the engine address itself (a bad DOCKER_HOST, TLS settings, ssh:// without paramiko).
_BAD_ENGINE_ADDRESS = Translation(
    InvalidSetting, "The Docker engine address or TLS settings are not usable: {text}",
    "fix DOCKER_HOST (unix:///var/run/docker.sock, tcp://HOST:2375), DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, or "
    "unset them", details={"variable": "engine_variable"})


def _api_error(exc: BaseException, context: Context) -> Translation | NemoclawError:
    if "could not select device driver" in context["text"] and "gpu" in context["text"].lower():
        return _NO_GPU_RUNTIME
    if context["status"] == 409 and context["action"] == "creating a container":
        return _NAME_TAKEN
    if context["action"].startswith(("pulling", "logging in")):  # the registry's answer: pull_errors reads it
        return pull_error(context["subject"], context["text"], status=context["status"])
    return _REGISTRY_REFUSED if classify_engine_message(context["text"]) == "auth" else _ENGINE_ERROR


def _unavailable(exc: BaseException, context: Context) -> Translation:
    denied = "permission denied" in context["text"].lower() or isinstance(exc, PermissionError)
    return _PERMISSION_DENIED if denied else _UNREACHABLE


def _docker_exception(exc: BaseException, context: Context) -> Translation:
    # from_env() wraps "no socket / connection refused" in a bare DockerException
    if _is_connection_failure(exc):
        return _unavailable(exc, context)
    if context["action"] == "connecting to the Docker engine":  # docker-py refused the address before any I/O
        return _BAD_ENGINE_ADDRESS
    return _DOCKER_ERROR


#: docker-py / requests exception type → our error; the most specific type of an exception picks its row.
DOCKER_ERRORS: Mapping[type[BaseException], Rule] = {
    docker.errors.ImageNotFound: _IMAGE_NOT_FOUND,
    docker.errors.NotFound: _not_found,
    docker.errors.APIError: _api_error,
    requests.exceptions.RequestException: _unavailable,  # timeouts included: a hung engine
    ConnectionError: _unavailable,
    docker.errors.InvalidRepository: _INVALID_REFERENCE,
    docker.errors.DockerException: _docker_exception,
}


# --- conversions ----------------------------------------------------------------------------------------------------


def _env_list(spec: ContainerSpec) -> list[str]:
    return [f"{name}={value.reveal() if isinstance(value, Secret) else value}" for name, value in spec.env]


def _port_map(spec: ContainerSpec) -> dict[str, Any]:
    ports: dict[str, list[tuple[str, int]]] = {}
    for binding in spec.ports:
        ports.setdefault(f"{binding.container_port}/{binding.protocol}", []).append(
            (binding.host_ip, binding.host_port))
    return {key: (value[0] if len(value) == 1 else value) for key, value in ports.items()}


def _device_requests(spec: ContainerSpec) -> list[DeviceRequest]:
    if spec.gpus.mode == "none":
        return []
    if spec.gpus.mode == "indices":
        return [DeviceRequest(device_ids=[str(i) for i in spec.gpus.indices], capabilities=[["gpu"]])]
    return [DeviceRequest(count=-1, capabilities=[["gpu"]])]


def _mounts(spec: ContainerSpec) -> list[DockerMount]:
    return [DockerMount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts]


def create_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """The ``client.containers.create`` keyword arguments for ``spec`` (secret values revealed here only)."""
    kwargs: dict[str, Any] = {
        "image": spec.image_ref,
        "command": list(spec.command),
        "name": spec.name,
        "environment": _env_list(spec),
        "labels": dict(spec.labels),
        "detach": True,
    }
    if spec.entrypoint is not None:
        kwargs["entrypoint"] = list(spec.entrypoint)
    if spec.ports:
        kwargs["ports"] = _port_map(spec)
    requests_ = _device_requests(spec)
    if requests_:
        kwargs["device_requests"] = requests_
    if spec.mounts:
        kwargs["mounts"] = _mounts(spec)
    if spec.restart_policy:
        kwargs["restart_policy"] = {"Name": spec.restart_policy}
    if spec.shm_size:
        kwargs["shm_size"] = spec.shm_size
    if spec.ipc_mode:
        kwargs["ipc_mode"] = spec.ipc_mode
    if spec.network_mode:
        kwargs["network_mode"] = spec.network_mode
    return kwargs


def _state(raw: Mapping[str, Any]) -> ContainerState:
    health = raw.get("Health") or {}
    return ContainerState(
        status=str(raw.get("Status") or "unknown"),
        exit_code=raw.get("ExitCode"),
        oom_killed=bool(raw.get("OOMKilled")),
        error=raw.get("Error") or None,
        started_at=raw.get("StartedAt") or None,
        finished_at=raw.get("FinishedAt") or None,
        health=health.get("Status") or None,
    )


def _ports(raw: Mapping[str, Any]) -> dict[str, tuple[tuple[str, int], ...]]:
    live = (raw.get("NetworkSettings") or {}).get("Ports") or {}
    configured = (raw.get("HostConfig") or {}).get("PortBindings") or {}
    source = live if any(live.values()) else configured  # a stopped container has no live bindings
    ports: dict[str, tuple[tuple[str, int], ...]] = {}
    for key, bindings in source.items():
        ports[key] = tuple((b.get("HostIp") or "", int(b.get("HostPort") or 0)) for b in (bindings or []))
    return ports


def container_info(raw: Mapping[str, Any]) -> ContainerInfo:
    """A ContainerInfo from ``docker inspect`` output."""
    config = raw.get("Config") or {}
    state = _state(raw.get("State") or {})
    state = ContainerState(**{**state.__dict__, "restart_count": int(raw.get("RestartCount") or 0)})
    return ContainerInfo(
        id=str(raw.get("Id")),
        name=str(raw.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or raw.get("Image") or ""),
        labels=dict(config.get("Labels") or {}),
        state=state,
        created=raw.get("Created"),
        ports=_ports(raw),
    )


def _label_filters(labels: Mapping[str, str | None]) -> list[str]:
    return [key if value is None else f"{key}={value}" for key, value in labels.items()]


# --- the engine -----------------------------------------------------------------------------------------------------


class DockerEngine:
    """:class:`DockerPort` over a ``docker.DockerClient``."""

    def __init__(self, client: docker.DockerClient, *, docker_config_path: Path | None = None,
                 host: str | None = None) -> None:
        self._client = client
        self._api = client.api
        self._config_path = docker_config_path
        self._host = host

    def _t(self, action: str, **kw: Any) -> Any:
        return translated(action, host=self._host, **kw)

    # --- engine --------------------------------------------------------------------------------------------------

    def ping(self) -> None:
        with self._t("pinging the Docker engine"):
            self._quick_get("/_ping")

    def engine_info(self) -> Mapping[str, Any]:
        with self._t("reading the engine's info"):
            return dict(self._quick_get("/info", json=True))

    def _quick_get(self, path: str, *, json: bool = False) -> Any:
        """GET with the short contact timeout (docker-py's ping()/info() take no timeout of their own)."""
        api: Any = self._api  # the request helpers are undeclared in docker-py's stubs
        return api._result(api._get(api._url(path), timeout=ENGINE_CONTACT_TIMEOUT_S), json)

    def close(self) -> None:
        self._client.close()

    # --- containers ----------------------------------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        secrets = tuple(v.reveal() for _, v in spec.env if isinstance(v, Secret))
        with self._t("creating a container", subject=spec.name, secrets=secrets, image=spec.image_ref):
            container = self._client.containers.create(**create_kwargs(spec))
        return str(container.id)

    def start_container(self, name_or_id: str) -> None:
        with self._t("starting a container", subject=name_or_id):
            self._api.start(name_or_id)

    def inspect_container(self, name_or_id: str) -> ContainerInfo | None:
        try:
            with self._t("inspecting a container", subject=name_or_id):
                return container_info(self._api.inspect_container(name_or_id))
        except NoSuchContainer:
            return None

    def list_containers(self, labels: Mapping[str, str | None], *, all: bool = True) -> list[ContainerInfo]:
        with self._t("listing containers"):
            summaries = self._api.containers(all=all, filters={"label": _label_filters(labels)})
        infos = [self.inspect_container(str(s["Id"])) for s in summaries]
        return [info for info in infos if info is not None]  # one may vanish between list and inspect

    def container_logs(self, name_or_id: str, *, tail: int) -> list[str]:
        with self._t("reading container logs", subject=name_or_id):
            raw = self._api.logs(name_or_id, stdout=True, stderr=True, tail=tail)
        return bytes(raw).decode("utf-8", "replace").splitlines()

    def follow_logs(self, name_or_id: str, *, tail: int) -> Iterator[str]:
        with self._t("following container logs", subject=name_or_id):
            chunks = self._api.logs(name_or_id, stdout=True, stderr=True, tail=tail, stream=True, follow=True)
        return self._lines(name_or_id, chunks)

    def _lines(self, name_or_id: str, chunks: Iterator[bytes]) -> Iterator[str]:
        buffer = b""
        with self._t("following container logs", subject=name_or_id):
            for chunk in chunks:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace").rstrip("\r")
                buffer = buffer[-LOG_LINE_LIMIT:]
        if buffer:
            yield buffer.decode("utf-8", "replace")

    def container_pids(self, name_or_id: str) -> list[int]:
        """The host PIDs of the container's processes (``docker top``); ``[]`` when it is not running. Asked with
        the short contact timeout, not docker-py's 60 s: ``status`` asks within a one-second budget."""
        api: Any = self._api  # the request helpers are undeclared in docker-py's stubs
        with self._t("listing a container's processes", subject=name_or_id):
            try:
                url = api._url("/containers/{0}/top", name_or_id)
                top = api._result(api._get(url, timeout=ENGINE_CONTACT_TIMEOUT_S), True)
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # "Container … is not running"
                    return []
                raise
        titles = list(top.get("Titles") or [])
        if "PID" not in titles:
            return []
        column = titles.index("PID")
        rows = [row for row in top.get("Processes") or [] if len(row) > column]
        return [int(row[column]) for row in rows if str(row[column]).isdigit()]

    def stop_container(self, name_or_id: str, *, timeout: float = 10) -> None:
        with self._t("stopping a container", subject=name_or_id):
            self._api.stop(name_or_id, timeout=max(0, round(timeout)))

    def remove_container(self, name_or_id: str, *, force: bool = False) -> None:
        with self._t("removing a container", subject=name_or_id):
            self._api.remove_container(name_or_id, force=force)

    def exec_in_container(self, name_or_id: str, argv: Sequence[str]) -> tuple[int, str]:
        """Run ``argv`` (a list, never a shell string) in the running container and wait for it: its exit code and
        its output (stdout and stderr together). For short commands only (``ray status``)."""
        with self._t("running a command in a container", subject=name_or_id):
            exec_id = self._api.exec_create(name_or_id, list(argv), stdout=True, stderr=True)["Id"]
            output = self._api.exec_start(exec_id)
            code = self._api.exec_inspect(exec_id).get("ExitCode")
        text = bytes(output).decode("utf-8", "replace") if isinstance(output, (bytes, bytearray)) else str(output)
        return (int(code) if code is not None else -1), text

    def put_archive(self, name_or_id: str, path: str, data: bytes | IO[bytes]) -> None:
        """Unpack the tar ``data`` (bytes, or a stream read to its end) at ``path`` in the container; the container
        may be created and not started (how files reach a named volume on a remote engine)."""
        with self._t("copying files into a container", subject=name_or_id):
            if not self._api.put_archive(name_or_id, path, data):
                raise NemoclawError(f"The engine refused the files for {name_or_id}:{path}",
                                    remedy="check the engine's disk space and the path")

    def path_exists(self, name_or_id: str, path: str) -> bool:
        """Whether ``path`` exists in the container's filesystem (its mounts included); reads its stat only."""
        api: Any = self._api  # the request helpers are undeclared in docker-py's stubs
        with self._t("looking for a path in a container", subject=name_or_id):
            url = api._url("/containers/{0}/archive", name_or_id)
            response = api.head(url, params={"path": path}, timeout=ENGINE_CONTACT_TIMEOUT_S)  # a requests.Session
            if response.status_code == 404 and "X-Docker-Container-Path-Stat" not in response.headers:
                api.inspect_container(name_or_id)  # a missing container raises NoSuchContainer; else the path
                return False
            api._raise_for_status(response)
        return True

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the named volume with ``labels`` (one of that name already there is left as it is)."""
        with self._t("creating a volume", subject=name):
            self._api.create_volume(name=name, labels=dict(labels))

    def remove_volume(self, name: str) -> bool:
        """Remove the named volume when it carries our label (``LABEL_MANAGED``); False when it is absent or not
        ours (then it is left alone)."""
        from nemoclaw_runtime.runtimes.docker.spec import LABEL_MANAGED

        with self._t("removing a volume", subject=name):
            try:
                labels = self._api.inspect_volume(name).get("Labels") or {}
            except docker.errors.NotFound:
                return False
            if labels.get(LABEL_MANAGED) != "true":
                return False
            try:
                self._api.remove_volume(name, force=True)
            except docker.errors.NotFound:
                return False
        return True

    # --- images --------------------------------------------------------------------------------------------------

    def image_inspect(self, ref: str) -> Mapping[str, Any] | None:
        try:
            with self._t("inspecting an image", missing="image", subject=ref):
                return dict(self._api.inspect_image(ref))
        except ImageNotFound:
            return None

    def tag_image(self, source_ref: str, target_ref: str) -> None:
        repository, tag = split_reference(target_ref)
        with self._t("tagging an image", missing="image", subject=source_ref):
            ok = self._api.tag(source_ref, repository, tag, force=True)
        if not ok:
            raise NemoclawError(f"The engine did not tag {source_ref} as {target_ref}",
                                remedy="run the command again; `docker images` shows what is present")

    def login(self, registry: str, username: str, password: str) -> None:
        with self._t("logging in to a registry", subject=registry, secrets=(password,)):
            self._client.login(username=username, password=password, registry=registry, reauth=True)

    def stored_credentials(self, registry: str) -> StoredLogin | None:
        """The docker config's login for ``registry``, read through ``docker.auth`` only (``auths``, ``credHelpers``,
        ``credsStore``, as the docker CLI stores them); ``None`` when the config holds none.

        A login that is there but cannot be read (an identity token, a helper or store that fails) is a
        :class:`StoredLogin` without a password: NemoClaw's test for "Docker is logged in" — a helper for the
        registry, an ``auths`` entry with a credential, or an entry plus a global ``credsStore``.
        """
        config = self._auth_config()
        if config is None:
            return None
        entry = _resolved_auth(config, registry)
        username = entry.get("username") or entry.get("Username") if entry else None
        password = entry.get("password") or entry.get("Password") if entry else None  # helpers: Username/Password
        if username and password:
            return StoredLogin(str(username), Secret(str(password)))
        return StoredLogin() if _has_login(config, registry) else None

    def _auth_config(self) -> docker.auth.AuthConfig | None:
        # docker.auth falls back to $DOCKER_CONFIG and ~/.docker when the path given is missing: ours or nothing.
        if self._config_path is None or not self._config_path.is_file():
            return None
        try:
            return docker.auth.load_config(config_path=str(self._config_path))
        except (docker.errors.DockerException, OSError, ValueError):
            return None  # an unreadable config (bad JSON, a bad base64 ``auth``): no stored login

    def _config_auth(self, registry: str) -> Mapping[str, Any] | None:
        config = self._auth_config()
        return _resolved_auth(config, registry) if config is not None else None

    def pull_stream(self, repository: str, reference: str, *, auth: Mapping[str, str] | None = None,
                    platform: str | None = None) -> DockerPullStream:
        subject = f"{repository}@{reference}" if reference.startswith("sha256:") else f"{repository}:{reference}"
        params: dict[str, Any] = {"fromImage": repository, "tag": reference}
        if platform:
            params["platform"] = platform
        headers: dict[str, str | bytes] = {}
        with self._t("pulling an image", missing="image", subject=subject):
            registry, _ = docker.auth.resolve_repository_name(repository)
            auth_config = dict(auth) if auth is not None else self._config_auth(registry)
        if auth_config:
            headers["X-Registry-Auth"] = docker.auth.encode_header(dict(auth_config))
        # Every credential value but the user's name and the registry's address stays out of messages.
        secrets = tuple(str(v) for k, v in (auth_config or {}).items()
                        if k.lower() not in ("username", "serveraddress", "email"))
        with self._t("pulling an image", missing="image", subject=subject, secrets=secrets):
            # docker-py's public pull() hides the response, and the watchdog needs its socket to cut a stalled
            # pull: the low-level client's request helpers (undeclared in its stubs) give us the raw stream.
            api: Any = self._api
            response = api._post(api._url("/images/create"), params=params, headers=headers, stream=True,
                                 timeout=None)
            api._raise_for_status(response)
        return DockerPullStream(self._api, response, subject, secrets=secrets)


def _resolved_auth(config: docker.auth.AuthConfig, registry: str) -> Mapping[str, Any] | None:
    """docker.auth's answer for ``registry`` (a helper or store is run here); a failing helper is no answer."""
    try:
        with warnings.catch_warnings():  # "docker-credential-X not installed": the caller says what that means
            warnings.simplefilter("ignore")
            return config.resolve_authconfig(registry)
    except (docker.errors.DockerException, OSError, ValueError):
        return None


def _has_login(config: docker.auth.AuthConfig, registry: str) -> bool:
    """NemoClaw's "logged in" test over docker.auth's parsed config (keys compared as docker.auth compares them)."""
    wanted = docker.auth.resolve_index_name(registry)
    if any(docker.auth.resolve_index_name(key) == wanted for key in config.cred_helpers):
        return True
    entries = [entry for key, entry in config.auths.items() if docker.auth.resolve_index_name(key) == wanted]
    return any(entry or config.creds_store for entry in entries)


def _response_socket(response: Any) -> socket.socket | None:
    """The socket under a streamed requests response (unix socket, tcp or tls)."""
    try:
        raw = response.raw._fp.fp.raw
    except AttributeError:
        return None
    sock = getattr(raw, "_sock", raw)
    return sock if hasattr(sock, "settimeout") else None


class DockerPullStream:
    """The decoded events of one pull. Iterate once; ``abort`` may be called from any thread."""

    def __init__(self, api: Any, response: Any, subject: str, *, secrets: tuple[str, ...] = ()) -> None:
        self._api = api
        self._response = response
        self._subject = subject
        self._secrets = secrets
        self._sock = _response_socket(response)
        self._aborted = threading.Event()
        self._complete = False
        self.timed_out = False

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def set_read_timeout(self, seconds: float | None) -> None:
        if self._sock is not None:
            try:
                self._sock.settimeout(seconds)
            except OSError:
                pass  # already closed: the iteration is ending anyway

    def abort(self) -> None:
        self._aborted.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass

    def close(self) -> None:
        if not self._complete:  # left early (Ctrl-C, an error): make sure the engine sees us go and cancels
            self.abort()
        # closing a dead response must never mask the real outcome of the pull
        with contextlib.suppress(Exception):
            self._response.close()

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        try:
            for event in self._events():
                if not isinstance(event, Mapping):
                    continue
                if event.get("error") or event.get("errorDetail"):
                    detail = event.get("errorDetail") or {}
                    text = redact(str(event.get("error") or detail.get("message") or "unknown error"),
                                  self._secrets)
                    raise pull_error(self._subject, text, status=detail.get("code"))
                yield event
        finally:
            self.close()

    def _events(self) -> Iterator[Any]:
        try:
            yield from self._api._stream_helper(self._response, decode=True)
            self._complete = not self.aborted and not self.timed_out
        except NemoclawError:
            raise
        except (OSError, ValueError, requests.exceptions.RequestException, Exception) as exc:  # noqa: BLE001
            if self.aborted:
                return  # the watchdog or a cancellation ended it; the caller knows why
            if isinstance(exc, json.JSONDecodeError):
                raise DownloadFailed(f"Pulling {self._subject}: the engine sent an unreadable event",
                                     remedy="run the command again", details={"transient": True}) from None
            text = redact(_explanation(exc), self._secrets)
            if "timed out" in text.lower() or isinstance(exc, (socket.timeout, TimeoutError)):
                self.timed_out = True
                return  # a read timeout set by the watchdog: the caller decides what it means
            raise DownloadFailed(f"The pull stream of {self._subject} broke: {text}",
                                 remedy="run the command again", details={"transient": True}) from None


__all__ = [
    "DOCKER_ERRORS", "DockerEngine", "DockerPullStream", "connect", "container_info", "create_kwargs", "translated",
]
