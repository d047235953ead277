"""Issue 12, one named test per example the hostile review found, grouped by class. The property-based walk over
every option and variable is tests/unit/test_hostile_property.py; the clean-up on the real engine is
tests/integration/test_hostile_cleanup.py.

No engine and no network: DOCKER_HOST and HF_ENDPOINT point at a closed loopback port (anything that gets past
validation fails fast with 3 or 4), or FakeDocker stands in for the engine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel import checks, errors
from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.events import Event, Info, PhaseChanged, Warning
from nemoclaw_runtime.kernel.secret import redact, redact_argv, redact_data, redact_url
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import has_unsafe, loads_json, one_line, plain_reason, sanitize
from nemoclaw_runtime.registry import parse_extra_args
from nemoclaw_runtime.runtimes import pipeline, wiring
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager, gpu_runtime_missing
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.docker.spec import LABEL_MODEL, ContainerSpec, GpuRequest, PortBinding
from tests.fakes.fake_docker import FakeDocker

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
SNAPSHOT = FIXTURES / "h100_x8.json"
DIGEST = "sha256:" + "ab" * 32
PASSWORD = "S3cr3t-Pw-1234"  # planted in URLs: it must never come back


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def no_engine_no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(SNAPSHOT))
    from nemoclaw_runtime.runtimes.fit import facts, hub  # the fit engine asks the hub: give it nothing to ask

    monkeypatch.setattr(hub, "default_model_source", lambda settings, **kw: facts.StaticModelSource(),
                        raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.out, captured.err


def inventory() -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads(SNAPSHOT.read_text()))


# --- cleanup that can be interrupted -------------------------------------------------------------------------------


class Store:
    """A fake image store: the image is just there."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker
        self.pulls = 0

    def image_present(self, ref: str) -> bool:
        return True

    def ensure_image(self, ref: str, *, events: Callable[[Event], None], cancel: CancelToken) -> PulledImage:
        self.pulls += 1
        self.docker.add_image(ref, digest=DIGEST)
        return PulledImage(ref, DIGEST, "linux/amd64", pulled=True)


def never_answers(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                              "NEMOCLAW_VLLM_IMAGE": "127.0.0.1:5000/test/vllm:1"})


def services(settings: Settings, docker: FakeDocker) -> Iterator[pipeline.Services]:
    http = httpx.Client(transport=httpx.MockTransport(never_answers))
    clock = SystemClock()
    yield pipeline.Services(settings, docker, Store(docker), DockerContainerManager(docker, settings, clock),  # type: ignore[arg-type]
                            http, clock, owned=False)
    http.close()


def _interrupt_when_waiting(events: list[Event]) -> Callable[[Event], None]:
    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, PhaseChanged) and event.phase == "wait":
            raise KeyboardInterrupt
    return sink


def test_ctrl_c_during_the_readiness_wait_says_what_it_does_and_removes_the_container(settings: Settings) -> None:
    docker, seen = FakeDocker(), list[Event]()
    request = pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=_closed_port(), gpus="none",
                                    prefetch=False, validate=False, timeout_s=600)
    for svc in services(settings, docker):
        with pytest.raises(errors.Cancelled) as caught:
            pipeline.up(request, settings=settings, inventory=inventory(), events=_interrupt_when_waiting(seen),
                        services=svc)
    assert "was stopped and removed" in caught.value.message and caught.value.exit_code == 130
    said = [e.message for e in seen if isinstance(e, Info)]
    assert any("stopping and removing container nemoclaw-vllm" in m for m in said)  # said while it waits
    assert any(m == "Removed container nemoclaw-vllm" for m in said)
    assert docker.containers == {}


def test_a_second_ctrl_c_cannot_cut_the_clean_up_short(settings: Settings) -> None:
    class SignalsDuringStop(FakeDocker):
        def stop_container(self, name_or_id: str, *, timeout: float = 10) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C, while the container stops
            time.sleep(0.05)
            super().stop_container(name_or_id, timeout=timeout)

    docker, seen = SignalsDuringStop(), list[Event]()
    request = pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=_closed_port(), gpus="none",
                                    prefetch=False, validate=False, timeout_s=600)
    for svc in services(settings, docker):
        with pytest.raises(errors.Cancelled) as caught:
            pipeline.up(request, settings=settings, inventory=inventory(), events=_interrupt_when_waiting(seen),
                        services=svc)
    assert "was stopped and removed" in caught.value.message
    assert docker.containers == {}  # the clean-up ran to its end
    assert any(isinstance(e, Warning) and "Still cleaning up" in e.message for e in seen)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was restored


def test_a_clean_up_that_fails_says_exactly_what_is_left_and_how_to_remove_it(settings: Settings) -> None:
    class CannotRemove(FakeDocker):
        def remove_container(self, name_or_id: str, *, force: bool = False) -> None:
            raise errors.DockerUnavailable("Cannot reach the Docker engine (it went away)")

    docker, seen = CannotRemove(), list[Event]()
    request = pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=_closed_port(), gpus="none",
                                    prefetch=False, validate=False, timeout_s=600)
    for svc in services(settings, docker):
        with pytest.raises(errors.Cancelled) as caught:
            pipeline.up(request, settings=settings, inventory=inventory(), events=_interrupt_when_waiting(seen),
                        services=svc)
    error = caught.value
    assert "could not be removed and is still there" in error.message and "nothing half-started" not in error.message
    assert "docker rm -f nemoclaw-vllm" in (error.remedy or "") and error.details["left_behind"] == ["nemoclaw-vllm"]


def test_cancelled_never_claims_by_default_that_nothing_was_left() -> None:
    assert "nothing" not in (errors.Cancelled("x").remedy or "")


def test_an_interrupted_create_leaves_no_created_container(settings: Settings) -> None:
    class InterruptedCreate(FakeDocker):
        def create_container(self, spec: ContainerSpec) -> str:
            super().create_container(spec)  # the engine made it ...
            raise KeyboardInterrupt  # ... but Ctrl-C came before its id did

    docker = InterruptedCreate()
    docker.add_image("busybox:1", digest=DIGEST)
    spec = ContainerSpec(name="nrt-create", runtime="vllm", image="busybox:1", command=("sleep", "1"),
                         labels=((LABEL_MODEL, "m"),), ports=(PortBinding(8000, _closed_port()),))
    with pytest.raises(KeyboardInterrupt):
        DockerContainerManager(docker, settings).ensure_running(spec)
    assert docker.containers == {}


# --- credentials inside other values -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"https://user:{PASSWORD}@hub.example/x", f"tcp://admin:{PASSWORD}@127.0.0.1:2375", f"ssh://{PASSWORD}@host",
    f"HTTP://u:{PASSWORD}@h", f"see http://a:{PASSWORD}@h:1/p?q=1 and more",
])
def test_url_user_information_is_redacted_everywhere(text: str) -> None:
    assert PASSWORD not in redact(text) and "***@" in redact(text)
    assert PASSWORD not in redact_url(text)


@pytest.mark.parametrize("argv", [
    ["--api-key", PASSWORD], [f"--api-key={PASSWORD}"], ["--hf-token", PASSWORD], ["--API_KEY", PASSWORD],
    ["--ssl-keyfile-password", PASSWORD], ["--password", PASSWORD],
])
def test_the_value_after_a_secret_like_flag_is_redacted(argv: list[str]) -> None:
    assert PASSWORD not in " ".join(redact_argv(argv)) and PASSWORD not in redact(" ".join(argv))
    assert PASSWORD not in json.dumps(redact_data({"argv": argv}))
    assert redact_argv(["--max-num-batched-tokens", "8192"]) == ["--max-num-batched-tokens", "8192"]


def test_hf_endpoint_credentials_are_not_echoed_in_messages_or_json(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://user:{PASSWORD}@127.0.0.1:{_closed_port()}")
    code, out, err = cli(capsys, "up", "vllm", "--dry-run", "--json", "--model", "deepseek-r1-distill-70b")
    assert code == 3 and PASSWORD not in out + err  # gated, no token: the licence URL is in the remedy
    document = json.loads(out)
    assert "***@" in document["details"]["licence_url"]
    from nemoclaw_runtime.runtimes.transfer import weights

    error = weights.translate_hf_error(ConnectionError("[Errno 111] Connection refused"), model_id="a/b", token=None,
                                       settings=Settings.from_env(), action="downloading")
    assert PASSWORD not in json.dumps(error.to_dict()) and "connection refused" in error.message


def test_docker_host_credentials_are_refused_without_being_echoed(capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://user:{PASSWORD}@127.0.0.1:{_closed_port()}")
    code, out, err = cli(capsys, "ps", "--json")
    assert code == 2 and PASSWORD not in out + err
    assert json.loads(out)["details"]["variable"] == "DOCKER_HOST"


@pytest.mark.parametrize("extra", [["--api-key", PASSWORD], [f"--api-key={PASSWORD}"]])
def test_dry_run_shows_an_api_key_in_extra_args_as_stars(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_VLLM_EXTRA_ARGS_JSON", json.dumps(extra))
    code, out, err = cli(capsys, "up", "vllm", "--dry-run", "--json")
    assert code == 0 and PASSWORD not in out + err
    assert "***" in " ".join(json.loads(out)["argv"])
    code, out, err = cli(capsys, "up", "vllm", "--dry-run")
    assert code == 0 and PASSWORD not in out + err and "***" in out


# --- unbounded or blocking inputs ---------------------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "snapshot.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("where", ["/dev/zero", "fifo", "directory", "deep", "huge"])
def test_a_gpu_snapshot_that_is_not_a_small_regular_file_is_exit_2_at_once(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fifo: Path,
        where: str) -> None:
    paths = {"/dev/zero": Path("/dev/zero"), "fifo": fifo, "directory": tmp_path}
    if where == "deep":
        paths[where] = tmp_path / "deep.json"
        paths[where].write_text("[" * 100_000 + "]" * 100_000)
    if where == "huge":
        paths[where] = tmp_path / "huge.json"
        paths[where].write_bytes(b" " * (5 * 1024 * 1024))
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(paths[where]))
    started = time.monotonic()
    code, out, err = cli(capsys, "gpus")
    assert code == 2 and "NEMOCLAW_GPU_SNAPSHOT" in err and time.monotonic() - started < 5


def test_the_snapshot_reader_itself_refuses_a_fifo_without_blocking(fifo: Path) -> None:
    from nemoclaw_runtime.gpu.snapshot import load_snapshot_file

    with pytest.raises(errors.InvalidSetting, match="not a regular file"):
        load_snapshot_file(fifo)


def test_extra_args_nested_100000_deep_are_exit_2_not_a_recursion_error() -> None:
    with pytest.raises(errors.InvalidSetting, match="larger than"):  # 200 kB: refused by size first
        Settings.from_env({"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(errors.InvalidSetting, match="nested"):
        Settings.from_env({"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": "[" * 30_000 + "]" * 30_000})
    with pytest.raises(errors.InvalidSetting, match="nested too deeply"):
        parse_extra_args("[" * 30_000 + "]" * 30_000)
    with pytest.raises(ValueError):
        loads_json("{\"a\":" * 50_000 + "1" + "}" * 50_000)


# --- numbers and addresses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309", "0", "-5", "١٠", "1_000", "9e9"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_exit_2(capsys: pytest.CaptureFixture[str],
                                                                  value: str) -> None:
    code, _, err = cli(capsys, "up", "vllm", "--dry-run", "--timeout", value)
    assert code == 2 and "--timeout" in err
    with pytest.raises(errors.InvalidInput):
        pipeline.make_request("vllm", timeout_s=float(value) if value.isascii() and "_" not in value else value)  # type: ignore[arg-type]


def test_gpu_indices_must_exist_on_this_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "up", "vllm", "--dry-run", "--gpus", "99")
    assert code == 2 and "no GPU 99" in err
    assert cli(capsys, "up", "vllm", "--dry-run", "--gpus", "²")[0] == 2
    assert cli(capsys, "up", "vllm", "--dry-run", "--gpus", "0,7")[0] == 0


@pytest.mark.parametrize("host", ["not-an-ip", "example.com", "127.0.0.1:80", "", " ", "1.2.3.4.5"])
def test_host_must_be_an_ip_address_before_any_container_is_made(capsys: pytest.CaptureFixture[str],
                                                                 host: str) -> None:
    code, _, err = cli(capsys, "up", "vllm", "--host", host, "--gpus", "none")
    assert code == 2 and "--host" in err
    assert pipeline.make_request("vllm", host="localhost").host == "127.0.0.1"
    assert pipeline.make_request("vllm", host="::1").host == "::1"


@pytest.mark.parametrize("name", ["abc\n", "abc\r", "a", "-abc", "a/b", "abc\x00", "a" * 300, "ab\u202e"])
def test_container_names_are_matched_whole(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert cli(capsys, "up", "vllm", "--dry-run", "--name", name)[0] == 2
    with pytest.raises(errors.InvalidInput):
        pipeline.make_request("vllm", name=name)


@pytest.mark.parametrize("raw", ["٨٠٠٠", "８０００", "8000\n", "8_000", "+8000", "²"])
def test_ports_are_ascii_digits_only(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                     raw: str) -> None:
    if raw.strip() != raw:  # a trailing newline is whitespace around a value: trimmed, as every variable is
        assert Settings.from_env({"NEMOCLAW_VLLM_PORT": raw}).vllm_port == 8000
        return
    with pytest.raises(errors.InvalidSetting):
        Settings.from_env({"NEMOCLAW_VLLM_PORT": raw})
    assert cli(capsys, "up", "vllm", "--dry-run", "--port", raw)[0] == 2


@pytest.mark.parametrize(("variable", "raw"), [
    ("NEMOCLAW_CONTEXT_WINDOW", "abc"), ("NEMOCLAW_CONTEXT_WINDOW", "٣٢٧٦٨"), ("NEMOCLAW_CONTEXT_WINDOW", "0"),
    ("NEMOCLAW_VLLM_READY_TIMEOUT", "١٢٠"), ("NEMOCLAW_PULL_MAX_TIMEOUT", "1e400"),
    ("NEMOCLAW_PULL_STALL_TIMEOUT", "nan"),
])
def test_numeric_variables_are_checked_where_they_enter(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, variable: str,
                                                        raw: str) -> None:
    monkeypatch.setenv(variable, raw)
    code, out, err = cli(capsys, "ps", "--json")
    assert code == 2 and json.loads(out)["details"]["variable"] == variable


# --- names versus ids ---------------------------------------------------------------------------------------------


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    docker = FakeDocker()
    docker.add_image("busybox:1", digest=DIGEST)
    monkeypatch.setattr(wiring, "open_docker", lambda settings: docker)
    return docker


def _start(docker: FakeDocker, name: str, labels: tuple[tuple[str, str], ...] = ()) -> str:
    spec = ContainerSpec(name=name, runtime="vllm", image="busybox:1", command=("serve",),
                         labels=((LABEL_MODEL, "m"), *labels), ports=(PortBinding(8000, _closed_port()),),
                         gpus=GpuRequest("none"))
    return DockerContainerManager(docker, Settings.from_env()).ensure_running(spec).container.id


def test_stop_with_an_id_prefix_removes_nothing(capsys: pytest.CaptureFixture[str], engine: FakeDocker) -> None:
    container_id = _start(engine, "nemoclaw-vllm")
    code, _, err = cli(capsys, "stop", container_id[:6])
    assert code == 6 and "no managed container named" in err.lower()
    assert engine.containers[container_id].status == "running"
    assert cli(capsys, "logs", container_id[:12])[0] == 6


@pytest.mark.parametrize("name", ["", "9", " ", "a\nb"])
def test_stop_and_logs_refuse_what_cannot_be_a_name_with_exit_2(capsys: pytest.CaptureFixture[str],
                                                                engine: FakeDocker, name: str) -> None:
    _start(engine, "nemoclaw-vllm")
    assert cli(capsys, "stop", name)[0] == 2
    assert cli(capsys, "logs", name)[0] == 2
    assert len(engine.containers) == 1


# --- managed flags smuggled in ------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    ["--model", "x/y"], ["--model=x/y"], ["--port 9000"], ["--port=9000"], ["--port", "9000"], ["--po", "9000"],
    ["--host=0.0.0.0"], ["--HOST", "0.0.0.0"], ["--uds", "/tmp/s"], ["--mod", "x"], ["x/y"],
    ["--max-num-seqs 8"],
])
def test_extra_args_may_not_set_a_managed_flag_in_any_spelling(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               extra: list[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_VLLM_EXTRA_ARGS_JSON", json.dumps(extra))
    code, out, err = cli(capsys, "up", "vllm", "--json")  # refused in the plan: before any download or engine
    assert code == 2 and json.loads(out)["details"]["variable"] == "NEMOCLAW_VLLM_EXTRA_ARGS_JSON"


def test_allowed_extra_args_still_pass() -> None:
    assert parse_extra_args('["--max-num-seqs", "8", "--served-model-name", "m", "--max-model-len", "4096"]')


# --- plain bad environment values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value"), [
    ("NEMOCLAW_STATE_DIR", "file"), ("HF_HOME", "file"), ("XDG_CACHE_HOME", "file"), ("DOCKER_CONFIG", "/dev/null"),
    ("DOCKER_HOST", "bogus://x"), ("DOCKER_HOST", "ssh://user@host:99999"), ("DOCKER_HOST", "tcp://"),
    ("DOCKER_HOST", "unix://relative"), ("HF_ENDPOINT", "ftp://x"), ("HF_ENDPOINT", "not a url"),
    ("NEMOCLAW_VLLM_IMAGE", "--privileged"), ("NEMOCLAW_OLLAMA_IMAGE", "UPPER/case"), ("HF_TOKEN", "a b"),
    ("NGC_API_KEY", "key\u202e"), ("NEMOCLAW_VLLM_MODEL", "x\x1b[31m"),
])
def test_bad_environment_values_are_exit_2_naming_the_variable_before_any_network(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str,
        value: str) -> None:
    if value == "file":
        (tmp_path / "file").write_text("x")
        value = str(tmp_path / "file")
    monkeypatch.setenv(variable, value)
    for args in (["up", "vllm", "--gpus", "none", "--json"], ["pull", "ollama", "--json"]):
        code, out, err = cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert json.loads(out)["details"]["variable"] == variable


@pytest.mark.parametrize("image", ["--privileged", "UPPER/case", "a" * 300, "", " ", "img:tag:more", "a b"])
def test_invalid_image_references_are_exit_2_never_replaced_by_the_default(capsys: pytest.CaptureFixture[str],
                                                                           image: str) -> None:
    code, _, err = cli(capsys, "up", "vllm", "--dry-run", "--image", image)
    assert code == 2 and "image reference" in err
    assert cli(capsys, "pull", "vllm", "--image", image)[0] == 2


# --- the GPU runtime ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("info", "missing"), [
    ({"Runtimes": {"runc": {}}}, True),
    ({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}}, False),
    ({"Runtimes": {"runc": {}}, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=all"}]}, False),
    ({"ServerVersion": "fake"}, False),  # nothing to judge by: the engine's own answer will say
])
def test_the_gpu_runtime_is_read_from_docker_info(info: dict[str, Any], missing: bool,
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-container-runtime-hook
    info = {**info, "CDISpecDirs": [str(tmp_path)]}
    assert gpu_runtime_missing(info) is missing


@pytest.mark.parametrize(("info", "missing"), [
    ({"Runtimes": {"runc": {}}, "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, True),  # current Docker's default
    ({"Runtimes": {"runc": {}}, "CDISpecDirs": ["/etc/cdi"],
      "DiscoveredDevices": [{"Source": "cdi", "ID": "amd.com/gpu=all"}]}, True),
    ({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}, "CDISpecDirs": ["/etc/cdi"]}, False),
    ({"Runtimes": {"runc": {}}, "CDISpecDirs": ["/etc/cdi"],
      "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}]}, False),
    ({"ServerVersion": "fake"}, False),
])
def test_a_remote_engine_needs_an_nvidia_runtime_or_cdi_device(info: dict[str, Any], missing: bool) -> None:
    """A remote engine's spec directories are not ours to read, and Docker lists CDISpecDirs by default: only an
    nvidia runtime or a discovered NVIDIA CDI device counts."""
    assert gpu_runtime_missing(info, local_engine=False) is missing


def test_a_gpu_request_on_an_engine_without_the_toolkit_is_exit_3_before_any_pull(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    class NoToolkit(FakeDocker):
        def engine_info(self) -> dict[str, Any]:
            return {**super().engine_info(), "Runtimes": {"runc": {}}, "CDISpecDirs": [str(tmp_path)]}

    docker = NoToolkit()
    for svc in services(settings, docker):
        request = pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=_closed_port(), gpus="all",
                                        prefetch=False, validate=False)
        with pytest.raises(errors.NoSuitableGpu) as caught:
            pipeline.up(request, settings=settings, inventory=inventory(), services=svc)
        assert svc.images.pulls == 0  # type: ignore[attr-defined]
    assert caught.value.exit_code == 3 and "nvidia-container-toolkit" in (caught.value.remedy or "")
    assert docker.write_calls == []


def test_the_engines_could_not_select_device_driver_is_exit_3_with_the_remedy() -> None:
    import docker.errors
    import requests

    from nemoclaw_runtime.runtimes.docker.adapter import translated

    response = requests.Response()
    response.status_code = 500
    with pytest.raises(errors.NoSuitableGpu) as caught, translated("starting a container", subject="x"):
        raise docker.errors.APIError("500 Server Error", response=response,
                                     explanation='could not select device driver "" with capabilities: [[gpu]]')
    assert caught.value.exit_code == 3 and "nvidia-ctk runtime configure" in (caught.value.remedy or "")


# --- what reaches the terminal ------------------------------------------------------------------------------------

HOSTILE_TEXT = "evil\x1b[31mRED\x1b[0m\u202eplh\nnewline\x07\u200b"


def test_sanitize_strips_escapes_control_and_bidi_characters() -> None:
    for cleaned in (sanitize(HOSTILE_TEXT).replace("\n", ""), one_line(HOSTILE_TEXT)):
        assert not has_unsafe(cleaned) and "\x1b" not in cleaned and "[31m" not in cleaned
    assert one_line(HOSTILE_TEXT) == "evilREDplh newline"


def test_ps_prints_labels_from_outside_as_one_clean_row(capsys: pytest.CaptureFixture[str],
                                                        engine: FakeDocker) -> None:
    _start(engine, "nemoclaw-vllm", ((LABEL_MODEL, HOSTILE_TEXT),))
    code, out, _ = cli(capsys, "ps")
    assert code == 0 and len(out.strip().splitlines()) == 2  # header + one row
    assert not any(has_unsafe(line) for line in out.splitlines())


def test_gpu_names_are_printed_sanitised(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    snapshot["gpus"][0]["name"] = HOSTILE_TEXT
    (tmp_path / "gpus.json").write_text(json.dumps(snapshot))
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(tmp_path / "gpus.json"))
    code, out, err = cli(capsys, "gpus")
    assert code == 0 and not any(has_unsafe(line) for line in (out + err).splitlines())


def test_an_unreachable_engine_is_one_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "ps")
    assert code == 3 and "connection refused" in err
    for noise in ("HTTPConnectionPool", "NewConnectionError", "Errno", "Max retries"):
        assert noise not in err
    assert plain_reason("HTTPConnectionPool(host='x', port=1): Max retries exceeded (Caused by "
                        "NewConnectionError('[Errno 111] Connection refused'))") == "connection refused"


@pytest.mark.parametrize("args", [["up", "vllm", "--port", "abc"], ["up", "--no-such-flag"], ["stop", "--all", "x"],
                                  ["logs"], ["up", "nope"], ["gpus", "extra"]])
def test_usage_errors_honour_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = cli(capsys, *args, "--json")
    document = json.loads(out)
    assert code == 2 and document["exit_code"] == 2 and document["remedy"] and err == ""
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == "" and err.startswith("Error: ") and "fix: " in err


def test_checks_quote_values_redacted_and_bounded() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        checks.check_port(f"http://u:{PASSWORD}@h" + "x" * 500)
    assert PASSWORD not in caught.value.message and len(caught.value.message) < 250


def test_a_library_log_line_reaches_the_terminal_redacted(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import click

    from nemoclaw_runtime.cli import main as cli_main

    @click.command()
    def chatty() -> None:  # what huggingface_hub's retry warnings look like, with HF_ENDPOINT's credentials
        logging.getLogger("huggingface_hub.test").warning("'%s' thrown while requesting HEAD %s\x1b[31m",
                                                          "[Errno 111] Connection refused",
                                                          f"http://user:{PASSWORD}@127.0.0.1:9/x")

    monkeypatch.setattr(cli_main.LazyGroup, "get_command", lambda self, ctx, name: chatty)
    code, out, err = cli(capsys, "chatty")
    logged = " ".join(record.getMessage() for record in caplog.records)  # what any handler would print
    assert code == 0 and "***@127.0.0.1" in logged and "\x1b" not in logged
    assert PASSWORD not in out + err + logged
    assert logging.getLogRecordFactory() is logging.LogRecord  # restored after the command
