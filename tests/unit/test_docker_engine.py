"""The docker-py adapter without an engine: ContainerSpec → create kwargs, inspect → ContainerInfo, the one error
translator, and the pull stream's abort / read timeout on a real socket pair."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests
from docker.types import DeviceRequest

from nemoclaw_runtime.kernel.errors import (
    DockerUnavailable,
    DownloadFailed,
    ImageNotFound,
    NameTaken,
    NemoclawError,
    NoSuchContainer,
    RegistryAuthFailed,
)
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.runtimes.docker.adapter import (
    DockerEngine,
    DockerPullStream,
    container_info,
    create_kwargs,
    translated,
)
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest, Mount, PortBinding

TOKEN = "hf_unit_secret_token_value"


def spec(**changes: Any) -> ContainerSpec:
    base: dict[str, Any] = {
        "name": "nemoclaw-vllm", "runtime": "vllm", "image": "nvcr.io/nvidia/vllm:26.05.post1-py3",
        "image_digest": "sha256:" + "a" * 64, "command": ("vllm", "serve", "m"),
        "env": (("A", "1"), ("HF_TOKEN", Secret(TOKEN))), "labels": (("io.nemoclaw.runtime.managed", "true"),),
        "ports": (PortBinding(8000, 8000),), "mounts": (Mount("/cache", "/root/.cache"),
                                                         Mount("vol", "/data", kind="volume", read_only=True)),
        "shm_size": "16g", "ipc_mode": "host"}
    base.update(changes)
    return ContainerSpec(**base)


def api_error(status: int, explanation: str, cls: type = docker.errors.APIError) -> Exception:
    response = requests.Response()
    response.status_code = status
    return cls(f"{status} error", response=response, explanation=explanation)


# --- create kwargs --------------------------------------------------------------------------------------------------


def test_spec_maps_to_docker_py_kwargs() -> None:
    kwargs = create_kwargs(spec())

    assert kwargs["image"] == "nvcr.io/nvidia/vllm@sha256:" + "a" * 64
    assert kwargs["command"] == ["vllm", "serve", "m"] and "entrypoint" not in kwargs
    assert kwargs["environment"] == ["A=1", f"HF_TOKEN={TOKEN}"]  # the one place a secret is revealed
    assert kwargs["labels"] == {"io.nemoclaw.runtime.managed": "true"}
    assert kwargs["ports"] == {"8000/tcp": ("127.0.0.1", 8000)}
    assert kwargs["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert [(m["Type"], m["Source"], m["Target"], m["ReadOnly"]) for m in kwargs["mounts"]] == \
        [("bind", "/cache", "/root/.cache", False), ("volume", "vol", "/data", True)]
    assert (kwargs["restart_policy"], kwargs["shm_size"], kwargs["ipc_mode"], kwargs["name"], kwargs["detach"]) == \
        ({"Name": "unless-stopped"}, "16g", "host", "nemoclaw-vllm", True)


def test_gpu_indices_none_entrypoint_and_no_restart() -> None:
    picked = create_kwargs(spec(gpus=GpuRequest("indices", (0, 2)), entrypoint=("/bin/sh", "-c")))
    none = create_kwargs(spec(gpus=GpuRequest("none"), restart_policy=None, shm_size=None, ipc_mode=None))

    assert picked["device_requests"] == [DeviceRequest(device_ids=["0", "2"], capabilities=[["gpu"]])]
    assert picked["entrypoint"] == ["/bin/sh", "-c"]
    assert not {"device_requests", "restart_policy", "shm_size", "ipc_mode"} & set(none)


def test_two_host_bindings_of_one_port_become_a_list() -> None:
    kwargs = create_kwargs(spec(ports=(PortBinding(8000, 8000), PortBinding(8000, 18000, host_ip="::1"))))
    assert kwargs["ports"] == {"8000/tcp": [("127.0.0.1", 8000), ("::1", 18000)]}


# --- inspect → ContainerInfo ----------------------------------------------------------------------------------------


def test_container_info_from_inspect() -> None:
    raw = {"Id": "abc", "Name": "/nemoclaw-vllm", "Created": "2026-01-01T00:00:00Z", "RestartCount": 2,
           "Config": {"Image": "img@sha256:x", "Labels": {"k": "v"}},
           "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True, "Error": "",
                     "StartedAt": "s", "FinishedAt": "f", "Health": {"Status": "unhealthy"}},
           "NetworkSettings": {"Ports": {}},
           "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}}}

    info = container_info(raw)

    assert (info.id, info.name, info.image, dict(info.labels)) == ("abc", "nemoclaw-vllm", "img@sha256:x", {"k": "v"})
    assert (info.state.status, info.state.exit_code, info.state.oom_killed, info.state.restart_count,
            info.state.health, info.state.error) == ("exited", 137, True, 2, "unhealthy", None)
    assert info.ports == {"8000/tcp": (("127.0.0.1", 8000),)}  # configured bindings while stopped


@pytest.mark.parametrize(("ref", "expected"), [
    ("127.0.0.1:5000/team/img:1.0", ("127.0.0.1:5000/team/img", "1.0")),
    ("127.0.0.1:5000/team/img", ("127.0.0.1:5000/team/img", "latest")),
    ("repo@sha256:abc", ("repo", "sha256:abc")),
    ("repo:tag@sha256:abc", ("repo", "sha256:abc")),
])
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    from nemoclaw_runtime.runtimes.docker.spec import split_reference

    assert split_reference(ref) == expected


# --- the one error translator ---------------------------------------------------------------------------------------


def raised_by(error: Exception, action: str = "starting a container", **kw: Any) -> NemoclawError:
    with pytest.raises(NemoclawError) as caught, translated(action, **kw):
        raise error
    return caught.value


def test_engine_down_and_socket_permission_are_docker_unavailable() -> None:
    down = raised_by(docker.errors.DockerException("Error while fetching server API version: ('Connection "
                                                   "aborted.', FileNotFoundError(2, 'No such file or directory'))"))
    denied = raised_by(requests.exceptions.ConnectionError("('Connection aborted.', PermissionError(13, "
                                                           "'Permission denied'))"))

    assert isinstance(down, DockerUnavailable) and down.exit_code == 3
    assert "systemctl start docker" in (down.remedy or "") and "DOCKER_HOST" in (down.remedy or "")
    assert "scripts/" not in (down.remedy or "")
    assert isinstance(denied, DockerUnavailable) and "docker group" in (denied.remedy or "")


def test_a_hung_engine_is_unavailable_and_other_docker_errors_are_not() -> None:
    hung = raised_by(requests.exceptions.ReadTimeout("UnixHTTPConnectionPool: Read timed out. (read timeout=60)"))
    version = raised_by(docker.errors.InvalidVersion("device_requests param is not supported in API versions < 1.40"))
    reference = raised_by(docker.errors.InvalidRepository("Invalid index name (a-): index name must not end with -"),
                          action="pulling an image", subject="a-/img:1")

    assert isinstance(hung, DockerUnavailable) and hung.exit_code == 3
    assert type(version) is NemoclawError and "API versions" in version.message
    assert reference.exit_code == 2 and "a-/img:1" in reference.message


def test_a_conflict_outside_create_is_not_a_name_clash() -> None:
    busy = raised_by(api_error(409, "removal of container x is already in progress"),
                     action="removing a container", subject="x")
    assert not isinstance(busy, NameTaken) and "already in progress" in busy.message


def test_container_404_409_and_image_404() -> None:
    gone = raised_by(api_error(404, "No such container: x", docker.errors.NotFound), subject="x")
    taken = raised_by(api_error(409, 'Conflict. The container name "/x" is already in use'),
                      action="creating a container", subject="x")
    no_image = raised_by(api_error(404, "No such image: img:1", docker.errors.ImageNotFound), image="img:1")

    assert isinstance(gone, NoSuchContainer) and gone.exit_code == 6
    assert isinstance(taken, NameTaken) and taken.exit_code == 3
    assert isinstance(no_image, ImageNotFound) and no_image.exit_code == 4 and "img:1" in no_image.message


def test_login_refused_is_registry_auth_failed_and_scrubbed() -> None:
    error = raised_by(api_error(500, f"login attempt to http://r/v2/ failed with status: 401 Unauthorized {TOKEN}"),
                      action="logging in to a registry", subject="r", secrets=(TOKEN,))

    assert isinstance(error, RegistryAuthFailed) and error.exit_code == 4
    assert TOKEN not in json.dumps(error.to_dict())


def test_anything_else_keeps_the_engines_explanation() -> None:
    error = raised_by(api_error(500, "driver failed programming external connectivity"))
    assert type(error) is NemoclawError and "driver failed programming" in error.message


def test_create_error_text_never_carries_a_secret_value() -> None:
    error = raised_by(api_error(400, f"invalid env HF_TOKEN={TOKEN}"), action="creating a container",
                      secrets=(TOKEN,))
    assert TOKEN not in error.message


# --- the pull stream on a real socket ---------------------------------------------------------------------------


class SocketApi:
    """Plays docker-py's ``_stream_helper`` over one end of a socket pair."""

    def _stream_helper(self, response: Any, decode: bool = False) -> Iterator[Any]:
        reader = response.sock.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            yield json.loads(line)


def socket_stream() -> tuple[DockerPullStream, socket.socket]:
    ours, registry_side = socket.socketpair()
    raw = ours.makefile("rb", buffering=0)  # a SocketIO, like requests' response.raw._fp.fp.raw
    response = SimpleNamespace(raw=SimpleNamespace(_fp=SimpleNamespace(fp=SimpleNamespace(raw=raw))), sock=ours,
                               close=lambda: None)
    return DockerPullStream(SocketApi(), response, "img:1"), registry_side


def send(side: socket.socket, *events: dict[str, Any]) -> None:
    side.sendall(b"".join(json.dumps(e).encode() + b"\n" for e in events))


def test_abort_from_another_thread_ends_a_blocked_read() -> None:
    stream, registry_side = socket_stream()
    send(registry_side, {"status": "Pulling fs layer", "id": "l1"})
    threading.Timer(0.3, stream.abort).start()
    started = time.monotonic()

    events = list(stream)

    assert events == [{"status": "Pulling fs layer", "id": "l1"}] and stream.aborted
    assert time.monotonic() - started < 5
    registry_side.close()


def test_read_timeout_ends_a_silent_stream() -> None:
    stream, registry_side = socket_stream()
    stream.set_read_timeout(0.2)
    send(registry_side, {"status": "Downloading", "id": "l1", "progressDetail": {"current": 1, "total": 9}})

    events = list(stream)

    assert len(events) == 1 and stream.timed_out
    registry_side.close()


def test_error_events_become_errors() -> None:
    stream, registry_side = socket_stream()
    send(registry_side, {"error": "manifest unknown: manifest unknown"})
    registry_side.close()

    with pytest.raises(ImageNotFound):
        list(stream)


def test_a_broken_stream_is_a_transient_download_failure() -> None:
    stream, registry_side = socket_stream()
    registry_side.sendall(b'{"status": "Downloading"')  # cut mid-event
    registry_side.close()

    with pytest.raises(DownloadFailed) as caught:
        list(stream)
    assert caught.value.details.get("transient") is True


# --- docker config credentials (auths, credHelpers) -------------------------------------------------------------


def engine_with_config(tmp_path: Path, document: dict[str, Any]) -> DockerEngine:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(document))
    return DockerEngine(SimpleNamespace(api=None), docker_config_path=config)  # type: ignore[arg-type]


def test_stored_credentials_from_a_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-unittest"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread server\necho \'{"ServerURL":"\'$server\'","Username":"$oauthtoken",'
                      '"Secret":"from-helper-key"}\'\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    engine = engine_with_config(tmp_path, {"credHelpers": {"nvcr.io": "unittest"}})

    found = engine.stored_credentials("nvcr.io")

    assert found is not None and found.readable and found.username == "$oauthtoken"
    assert found.password is not None and found.password.reveal() == "from-helper-key"
    assert engine.stored_credentials("other.io") is None


def test_stored_credentials_from_an_inline_auth_and_a_missing_config(tmp_path: Path) -> None:
    found = engine_with_config(tmp_path, {"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}}}).stored_credentials(
        "127.0.0.1:5000")  # user:pass
    missing = DockerEngine(SimpleNamespace(api=None),  # type: ignore[arg-type]
                           docker_config_path=tmp_path / "absent.json").stored_credentials("127.0.0.1:5000")

    assert found is not None and found.password is not None
    assert (found.username, found.password.reveal()) == ("user", "pass") and missing is None


@pytest.mark.parametrize(("document", "logged_in", "readable"), [
    ({"credHelpers": {"nvcr.io": "absent-helper"}}, True, False),  # a helper that cannot run: a login all the same
    ({"auths": {"nvcr.io": {"auth": "eDp5"}}}, True, True),  # x:y
    ({"auths": {"https://nvcr.io": {"auth": "eDp5"}}}, True, True),
    ({"auths": {"https://nvcr.io/v2/": {"auth": "eDp5"}}}, True, True),
    ({"auths": {"nvcr.io": {"identitytoken": "t0ken"}}}, True, False),
    ({"auths": {"nvcr.io": {}}, "credsStore": "absent-store"}, True, False),
    ({"auths": {"nvcr.io": {}}}, False, False),
    ({"auths": {"docker.io": {"auth": "eDp5"}}}, False, False),
    ({}, False, False),
])
def test_stored_credentials_say_logged_in_like_nemoclaw(tmp_path: Path, document: dict[str, Any], logged_in: bool,
                                                        readable: bool) -> None:
    found = engine_with_config(tmp_path, document).stored_credentials("nvcr.io")

    assert (found is not None) is logged_in
    assert (found is not None and found.readable) is readable


# --- a hung engine: accepts connections, never answers -----------------------------------------------------------


@pytest.fixture
def hung_engine() -> Iterator[str]:
    """``tcp://127.0.0.1:PORT`` of a listener that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("args", [["ps"], ["stop", "--all"], ["ps", "--json"]])
def test_a_hung_engine_fails_every_command_fast_naming_docker_host(
        hung_engine: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        args: list[str]) -> None:
    """Issue 11: not docker-py's 60 s default: exit 3 (DockerUnavailable) well within 30 s, remedy names DOCKER_HOST."""
    from nemoclaw_runtime.cli import main as cli_main

    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", hung_engine)
    started = time.monotonic()
    code = cli_main.run(args)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 3, captured
    assert elapsed < 30
    shown = captured.out + captured.err
    assert "DOCKER_HOST" in shown and hung_engine in shown
    assert "ensure-docker" not in shown and "scripts/" not in shown


def test_connect_uses_the_short_timeout_only_for_first_contact(hung_engine: str) -> None:
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes.docker.adapter import (
        ENGINE_CALL_TIMEOUT_S,
        ENGINE_CONTACT_TIMEOUT_S,
        connect,
    )

    assert ENGINE_CONTACT_TIMEOUT_S < 10 and ENGINE_CALL_TIMEOUT_S == 60
    started = time.monotonic()
    with pytest.raises(DockerUnavailable) as caught:
        connect(Settings.from_env({"DOCKER_HOST": hung_engine}))
    assert time.monotonic() - started < 30
    assert caught.value.exit_code == 3 and "DOCKER_HOST" in (caught.value.remedy or "")


def test_connect_sets_the_per_call_default_back_for_long_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes.docker import adapter

    seen: dict[str, Any] = {}

    def from_env(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return SimpleNamespace(api=SimpleNamespace(timeout=kwargs["timeout"]))

    monkeypatch.setattr(adapter.docker, "from_env", from_env)
    engine = adapter.connect(Settings.from_env({}))
    assert seen["timeout"] == adapter.ENGINE_CONTACT_TIMEOUT_S  # the API-version request at construction
    assert engine._api.timeout == adapter.ENGINE_CALL_TIMEOUT_S == 60  # every later call: docker-py's default


def test_container_pids_asks_with_the_short_timeout() -> None:
    """``status`` asks for a container's processes within a one-second budget: never docker-py's 60 s default."""
    from nemoclaw_runtime.runtimes.docker.adapter import ENGINE_CONTACT_TIMEOUT_S

    seen: dict[str, Any] = {}

    def get(url: str, **kwargs: Any) -> Any:
        seen.update(kwargs, url=url)
        return {"Titles": ["UID", "PID", "CMD"], "Processes": [["root", "4242", "vllm"], ["root", "x", "sh"]]}

    api = SimpleNamespace(_url=lambda fmt, *args: fmt.format(*args), _get=get, _result=lambda response, json: response,
                          top=lambda *a, **k: pytest.fail("docker-py's top() takes no timeout"))
    engine = DockerEngine(SimpleNamespace(api=api))  # type: ignore[arg-type]
    assert engine.container_pids("abc123") == [4242]
    assert seen == {"url": "/containers/abc123/top", "timeout": ENGINE_CONTACT_TIMEOUT_S}
