"""``up nim`` end to end on the real engine: a fake NIM (tests/fake_servers/fake_nim.py) published as a multi-arch index
in an htpasswd registry with the NGC user ``$oauthtoken``, then ``nemoclaw-runtime up nim`` in-process.

Each test publishes its own image (the baked expected key and switches differ), and runs with a replayed GPU
snapshot (``NEMOCLAW_GPU_SNAPSHOT``), ``--gpus none`` (no GPU here), a unique ``--name`` and a free ``--port``.
The images carry the test-session label and containers inherit it, so session clean-up removes what ``up``
created even when a test fails half-way; each test also removes its container by name.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.runtimes.docker.spec import LABEL_IMAGE_DIGEST
from tests.fake_servers.fake_nim import UNSAFE_SERVED_ID, PublishedNim, local_images_of, publish_fake_nim
from tests.helpers.docker_env import free_port
from tests.helpers.registry import LocalRegistry

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
H100_X8 = ROOT / "fixtures" / "gpu" / "h100_x8.json"  # x86_64, 8×80 GB: every catalog entry fits
DEFAULT_MODEL = "nvidia/nemotron-3-super-120b-a12b"  # the first catalog entry that fits 8×H100
DEFAULT_SERVED = "nvidia/nemotron-3-super-120b-a12b"
FAIL_FAST_BOUND_S = 60.0  # generous: the readiness timeout in these tests is 600 s


@dataclass
class NimRun:
    """One ``up nim`` target: the published image, the container name, the port, and what it printed."""

    client: docker.DockerClient
    image: PublishedNim
    key: str
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)

    @property
    def container(self) -> str:
        return f"nemoclaw-nim-{self.name}"

    def args(self, *extra: str) -> list[str]:
        return ["up", "nim", "--gpus", "none", "--image", self.image.ref, "--name", self.name,
                "--port", str(self.port), "--json", *extra]

    def inspect(self) -> dict[str, Any] | None:
        try:
            return dict(self.client.api.inspect_container(self.container))
        except docker.errors.NotFound:
            return None

    def remove(self) -> None:
        try:
            self.client.api.remove_container(self.container, force=True)
        except docker.errors.NotFound:
            pass


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def nim_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(H100_X8))
    monkeypatch.setenv("NEMOCLAW_NIM_READY_TIMEOUT", "600")  # a failure must come from fail-fast, not the clock
    return monkeypatch


@pytest.fixture
def make_nim(docker_client: docker.DockerClient, busybox_base: str, auth_registry: LocalRegistry
             ) -> Iterator[Callable[..., NimRun]]:
    """``make_nim(expected_key=None, **image_env)`` publishes a fake NIM (expecting the registry key unless told
    otherwise) and returns its run target; every container made through it is removed afterwards."""
    made: list[NimRun] = []
    key = auth_registry.password
    assert key

    def make(expected_key: str | None = None, **env: str) -> NimRun:
        published = publish_fake_nim(docker_client, auth_registry, expected_key=expected_key or key, env=env)
        target = NimRun(docker_client, published, key)
        made.append(target)
        return target

    yield make
    for target in made:
        target.remove()


def test_missing_key_is_refused_before_any_pull_or_container(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim()

    code, out, err = cli(nim.args(), capsys)

    assert code == 3, out + err
    error = json.loads(out)
    assert error["error"] == "MissingToken" and "NGC_API_KEY" in error["message"]
    assert local_images_of(nim.client, nim.image.repository) == []
    assert nim.inspect() is None


def test_rejected_key_is_refused_naming_the_variable_never_the_value(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim()
    wrong = "nvapi-wrong-" + uuid.uuid4().hex
    nim_env.setenv("NGC_API_KEY", wrong)

    code, out, err = cli(nim.args(), capsys)

    assert code == 3, out + err
    error = json.loads(out)
    assert error["error"] == "AccessDenied" and "NGC_API_KEY" in error["message"]
    assert wrong not in out + err
    assert local_images_of(nim.client, nim.image.repository) == []
    assert nim.inspect() is None


def test_rejected_key_gets_one_prompted_retry_through_the_library(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch) -> None:
    from nemoclaw_runtime.kernel.errors import AccessDenied
    from nemoclaw_runtime.kernel.events import Event, Warning
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes import pipeline

    nim = make_nim()
    wrong, typed = "nvapi-wrong-" + uuid.uuid4().hex, "nvapi-typed-" + uuid.uuid4().hex
    nim_env.setenv("NGC_API_KEY", wrong)
    settings = Settings.from_env()
    labels: list[str] = []
    events: list[Event] = []

    def prompt(label: str) -> str:
        labels.append(label)
        return typed

    request = pipeline.make_request("nim", gpus="none", image=nim.image.ref, name=nim.name, port=nim.port)
    svc = pipeline.open_services(settings, arch="x86_64", prompt_secret=prompt)
    try:
        with pytest.raises(AccessDenied) as raised:
            pipeline.up(request, settings=settings, services=svc, events=events.append)
    finally:
        svc.close()

    assert len(labels) == 1 and "$oauthtoken" in labels[0]  # the env key failed, one prompt, then exit 3
    assert raised.value.exit_code == 3
    assert any(isinstance(e, Warning) and "NGC_API_KEY" in e.message for e in events)
    shown = str(raised.value) + json.dumps(raised.value.to_dict()) + repr(events)
    assert wrong not in shown and typed not in shown
    assert nim.inspect() is None


def test_good_key_serves_pinned_to_amd64_and_keeps_the_key_off_argv_and_labels(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim(FAKE_NIM_MODEL=DEFAULT_SERVED, FAKE_NIM_READY_DELAY_S="2", FAKE_NIM_TOOL_CALL="1")
    nim_env.setenv("NGC_API_KEY", nim.key)

    code, out, err = cli(nim.args(), capsys)

    assert code == 0, out + err
    result = json.loads(out)
    assert (result["model"], result["served_model_id"]) == (DEFAULT_MODEL, DEFAULT_SERVED)
    assert result["digest"] == nim.image.digests["amd64"] != nim.image.digests["index"]
    assert result["base_url"] == f"http://127.0.0.1:{nim.port}/v1" and result["name"] == nim.container
    assert result["validated_api"] == "openai-completions" and result["reused"] is False
    access = nim.client.containers.get(nim.container).logs().decode()
    assert '"GET /v1/health/ready HTTP/1.1" 503' in access  # readiness waited through the loading phase
    assert access.index('ready HTTP/1.1" 200') < access.index('"GET /v1/models HTTP/1.1" 200')
    attrs = nim.inspect()
    assert attrs is not None and attrs["State"]["Running"]
    env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
    assert env["NGC_API_KEY"] == nim.key and env["NIM_NGC_API_KEY"] == nim.key
    visible = json.dumps([attrs["Config"]["Cmd"], attrs["Config"]["Entrypoint"], attrs["Args"], attrs["Path"],
                          attrs["Config"]["Labels"], attrs["HostConfig"]])
    assert nim.key not in visible and nim.key not in out + err
    history = json.dumps(nim.client.api.history(nim.image.ref))  # the baked key is a file, not a build arg
    assert nim.key not in history and "COPY" in history
    assert attrs["Config"]["Labels"][LABEL_IMAGE_DIGEST] == nim.image.digests["amd64"]
    assert attrs["HostConfig"]["ShmSize"] == 16 * 1024**3
    assert attrs["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(nim.port)}]
    mounts = {(m["Source"], m["Destination"]) for m in attrs["Mounts"]}
    assert (str(Path.home() / ".cache" / "nim"), "/opt/nim/.cache") in mounts

    again, out2, err2 = cli(nim.args(), capsys)  # the same spec again: the fast path, no pull, no new container
    assert again == 0, out2 + err2
    assert json.loads(out2)["reused"] is True and nim.inspect()["Id"] == attrs["Id"]  # type: ignore[index]

    listed, ps_out, _ = cli(["ps", "--runtime", "nim", "--json"], capsys)
    assert listed == 0 and nim.container in ps_out and nim.key not in ps_out
    stopped, stop_out, stop_err = cli(["stop", nim.container, "--json"], capsys)
    assert stopped == 0, stop_out + stop_err
    assert nim.container in json.loads(stop_out)["stopped"]
    assert nim.inspect() is None


def test_authentication_error_exit_fails_fast_and_keeps_the_container(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The registry accepts the key, but the image expects another one: NIM's "Authentication Error" exit.
    nim = make_nim(expected_key="nvapi-other-" + uuid.uuid4().hex, FAKE_NIM_AUTH_DELAY_S="1")
    nim_env.setenv("NGC_API_KEY", nim.key)

    started = time.monotonic()
    code, out, err = cli(nim.args(), capsys)
    took = time.monotonic() - started

    assert code == 5, out + err
    error = json.loads(out)
    assert error["cause"] == "ngc-auth" and "NGC_API_KEY" in error["remedy"]
    assert any("Authentication Error" in line for line in error["log_tail"])
    assert took < FAIL_FAST_BOUND_S  # not the 600 s readiness timeout
    attrs = nim.inspect()
    assert attrs is not None and not attrs["State"]["Running"]  # stopped, kept for `logs`
    assert nim.key not in out + err
    shown, logs_out, logs_err = cli(["logs", nim.container, "--tail", "20"], capsys)
    assert shown == 0 and "Authentication Error" in logs_out, logs_err


def test_readiness_timeout_honours_the_variable_and_keeps_the_container(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim(FAKE_NIM_READY_DELAY_S="600")  # /v1/health/ready stays 503
    nim_env.setenv("NGC_API_KEY", nim.key)
    nim_env.setenv("NEMOCLAW_NIM_READY_TIMEOUT", "3")

    code, out, err = cli(nim.args(), capsys)

    assert code == 5, out + err
    error = json.loads(out)
    assert error["error"] == "ReadinessTimeout" and error["details"]["timeout_s"] == 3
    assert "503" in error["details"]["last_probe"] and "NEMOCLAW_NIM_READY_TIMEOUT" in error["remedy"]
    attrs = nim.inspect()
    assert attrs is not None and not attrs["State"]["Running"]


def test_spark_snapshot_pins_the_arm64_manifest(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The busybox layers are amd64 whatever the config says, so the "arm64" image still runs on this host.
    nim_env.setenv("NEMOCLAW_GPU_SNAPSHOT", str(ROOT / "fixtures" / "gpu" / "dgx_spark.json"))
    nim = make_nim(FAKE_NIM_MODEL=DEFAULT_SERVED)
    nim_env.setenv("NGC_API_KEY", nim.key)

    code, out, err = cli(nim.args(), capsys)

    assert code == 0, out + err
    result = json.loads(out)
    assert result["model"] == DEFAULT_MODEL  # 40960 MiB fits the 121000 MiB unified-memory budget
    assert result["digest"] == nim.image.digests["arm64"]


def test_no_matching_profile_is_diagnosed(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim(FAKE_NIM_CRASH="no-profile")
    nim_env.setenv("NGC_API_KEY", nim.key)

    code, out, err = cli(nim.args(), capsys)

    assert code == 5, out + err
    assert json.loads(out)["cause"] == "nim-no-profile"


def test_unsafe_served_id_keeps_the_catalog_id_and_is_never_echoed(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim(FAKE_NIM_SERVED_ID=UNSAFE_SERVED_ID)
    nim_env.setenv("NGC_API_KEY", nim.key)

    code, out, err = cli(nim.args("--no-validate"), capsys)

    assert code == 0, out + err
    assert json.loads(out)["served_model_id"] == DEFAULT_SERVED
    assert UNSAFE_SERVED_ID not in out + err and "evil" not in out + err

    # Validated, the catalog id is what gets sent: the server does not know it (exit 5), still never echoed.
    validated = dataclasses.replace(nim, name=f"t{uuid.uuid4().hex[:10]}", port=free_port())
    try:
        code, out, err = cli(validated.args(), capsys)
    finally:
        validated.remove()
    assert code == 5 and json.loads(out)["error"] == "ValidationFailed", out + err
    assert "evil" not in out + err


def test_safe_served_id_is_adopted_and_validated(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim(FAKE_NIM_SERVED_ID="nvidia/nemotron-super-fp8")
    nim_env.setenv("NGC_API_KEY", nim.key)

    code, out, err = cli(nim.args(), capsys)

    assert code == 0, out + err
    result = json.loads(out)
    assert (result["model"], result["served_model_id"]) == (DEFAULT_MODEL, "nvidia/nemotron-super-fp8")
    assert result["validated_api"] == "openai-completions"


def _save_registry_login(registry_host: str, key: str) -> None:
    """An ``auths`` entry in the test HOME's docker config, as `docker login` writes it."""
    config = Path.home() / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"$oauthtoken:{key}".encode()).decode()
    config.write_text(json.dumps({"auths": {registry_host: {"auth": auth}}}))
    config.chmod(0o600)


def test_a_fixed_key_reaches_the_container_after_an_authentication_error(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    nim = make_nim()
    _save_registry_login(nim.image.registry_host, nim.key)  # the pull uses the docker login, not NGC_API_KEY
    nim_env.setenv("NGC_API_KEY", "nvapi-stale-" + uuid.uuid4().hex)
    first, out, err = cli(nim.args("--no-validate"), capsys)
    assert first == 5 and json.loads(out)["cause"] == "ngc-auth", out + err

    nim_env.setenv("NGC_API_KEY", nim.key)  # the user fixes the key and runs the same command again
    second, out, err = cli(nim.args("--no-validate"), capsys)

    assert second == 0, out + err


def test_a_key_accepted_at_the_prompt_is_the_key_the_container_gets(
        make_nim: Callable[..., NimRun], nim_env: pytest.MonkeyPatch) -> None:
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes import pipeline

    nim = make_nim()
    nim_env.setenv("NGC_API_KEY", "nvapi-wrong-" + uuid.uuid4().hex)
    settings = Settings.from_env()
    request = pipeline.make_request("nim", gpus="none", image=nim.image.ref, name=nim.name, port=nim.port,
                                    validate=False)
    svc = pipeline.open_services(settings, arch="x86_64", prompt_secret=lambda _label: nim.key)
    try:
        result = pipeline.up(request, settings=settings, services=svc)
    finally:
        svc.close()

    # The container started with the key typed at the prompt, so it served (and its own id was adopted).
    assert result.served_model_id == "nvidia/nemotron-3-nano" and result.name == f"nemoclaw-nim-{nim.name}"
    env = docker.from_env().containers.get(result.name).attrs["Config"]["Env"]
    assert f"NGC_API_KEY={nim.key}" in env and f"NIM_NGC_API_KEY={nim.key}" in env
