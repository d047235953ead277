"""Faults around ``up vllm`` on the real engine, through the real CLI (issue 11): a hung engine socket, a hub that
stalls, rate-limits or hiccups mid-weights, and SIGTERM / SIGINT at each phase of ``up`` run as a subprocess.

Same assertions as test_faults.py: the exit code, one clear line, no traceback or class name, no secret from the
environment in any output, nothing left behind (no container, no partial image tag, the name's lock free). The
rows these tests add are in test_faults.py's fault table. A stalled hub socket once kept the process alive ~60 s
after its Error line (huggingface_hub's pool threads, joined at exit); the console script now ends with its code
once its own clean-up is done, and the last test here holds it to that. Every wait is bounded in count and time;
the module adds about 50 s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.runtimes.docker.locks import name_lock
from tests.fake_servers.fake_hf import FakeHub, fake_hf, fake_hf_server, tiny_model_files  # noqa: F401  (fixtures)
from tests.fake_servers.fake_vllm import push_fake_vllm_variants
from tests.faults.conftest import record
from tests.faults.test_faults import SECRET, SECRET_VARIABLES, assert_clean_output
from tests.helpers.docker_env import removed_after, serve_environment
from tests.helpers.fault_proxy import FaultProxy
from tests.helpers.registry import LocalRegistry, running_registry
from tests.integration.test_pull import push_random_image, remove_quietly

pytestmark = [pytest.mark.faults, pytest.mark.docker]

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures" / "gpu"
MODEL_SLUG = "nemotron-3-nano-4b"
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
PINNED = "3fe6dab75665a93884214ad4b1b95cf02717d081"
VARIANTS = {"ok": {}, "slow": {"FAKE_VLLM_DELAY_S": "120"}}
SIGNAL_EXIT_S = 30  # a signalled `up` must be gone within this


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.setenv(name, SECRET)


@pytest.fixture(scope="module")
def up_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    with running_registry(tmp_path_factory.mktemp("up-faults-registry")) as registry:
        yield registry


@pytest.fixture(scope="module")
def vllm_images(docker_client: docker.DockerClient, up_registry: LocalRegistry,
                test_session_id: str) -> dict[str, str]:
    return push_fake_vllm_variants(docker_client, up_registry, VARIANTS, prefix="fault-vllm", session=test_session_id)


@pytest.fixture
def hub(fake_hf: FakeHub) -> FakeHub:  # noqa: F811
    fake_hf.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
    return fake_hf


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    return serve_environment(monkeypatch, hub.url, tmp_path)


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    yield from removed_after(docker_client, "nrt-fault")


def assert_nothing_left(docker_client: docker.DockerClient, env: dict[str, str], name: str) -> None:
    """No container of that name, and its lock is free at once (a following `up` would not be blocked)."""
    assert not docker_client.containers.list(all=True, filters={"name": f"^/{name}$"})
    with name_lock(Path(env["NEMOCLAW_STATE_DIR"]), name, wait_s=0.5):
        pass


def up_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = run(["up", "vllm", "--gpus", "none", *args])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    return code, captured.out, captured.err, elapsed


# --- 1. an engine socket that accepts and never answers -----------------------------------------------------------


@pytest.fixture
def hung_engine(monkeypatch: pytest.MonkeyPatch, docker_client: docker.DockerClient) -> Iterator[str]:
    """DOCKER_HOST = ``tcp://127.0.0.1:PORT`` of a listener that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, name="hung-engine", daemon=True)
    thread.start()
    host = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    for variable in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DOCKER_HOST", host)
    try:
        yield host
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("command", [["ps"], ["up", "vllm", "--gpus", "none"], ["stop", "--all"]],
                         ids=["ps", "up", "stop-all"])
def test_a_hung_engine_fails_fast_naming_docker_host(
        hung_engine: str, env: dict[str, str], vllm_images: dict[str, str], name: str, command: list[str],
        docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*command, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name] if "up" in command \
        else command
    started = time.monotonic()
    code = run(args)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()

    assert code == 3, captured
    line = assert_clean_output(captured.out, captured.err, failed=True)
    assert "DOCKER_HOST" in captured.err and hung_engine in captured.err
    assert elapsed < 20  # the short first-contact timeout, not docker-py's 60 s
    assert_nothing_left(docker_client, env, name)
    record(f"engine socket accepts, never answers: {command[0]}", f"exit 3: {line}", elapsed)


# --- 2. the hub during `up vllm`'s weights download ---------------------------------------------------------------


def test_hub_stalling_mid_weights_fails_naming_the_file(
        env: dict[str, str], hub: FakeHub, vllm_images: dict[str, str], name: str,
        monkeypatch: pytest.MonkeyPatch, docker_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT", "2")
    hub.stall_downloads_after(100 * 1024)  # config.json passes; model.safetensors stops at 100 KiB
    code, out, err, elapsed = up_cli(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)

    assert code == 4, err
    line = assert_clean_output(out, err, failed=True)
    assert "stalled" in line and "model.safetensors" in line
    assert elapsed < 30
    assert_nothing_left(docker_client, env, name)
    record("hub stalls mid-weights (stall timeout 2 s)", f"exit 4: {line}", elapsed)


def test_hub_answering_429_says_to_set_hf_token(
        env: dict[str, str], hub: FakeHub, vllm_images: dict[str, str], name: str,
        monkeypatch: pytest.MonkeyPatch, docker_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HF_TOKEN")  # anonymous: the case where a token is the remedy
    hub.rate_limit()
    code, out, err, elapsed = up_cli(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)

    assert code == 4, err
    line = assert_clean_output(out, err, failed=True)
    assert "429" in line and "HF_TOKEN" in err
    assert elapsed < 30
    assert_nothing_left(docker_client, env, name)
    record("hub answers 429 (anonymous)", f"exit 4: {line}", elapsed)


def test_hub_503_twice_then_recovering_serves(
        env: dict[str, str], hub: FakeHub, vllm_images: dict[str, str], name: str,
        docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    hub.fail_requests(2, status=503)
    code, out, err, elapsed = up_cli(capsys, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)

    assert code == 0, err
    assert_clean_output(out, err, failed=False)
    assert hub.requests_to(f"/{MODEL_ID}/resolve/", method="GET")
    assert docker_client.containers.get(name).status == "running"
    assert run(["stop", name]) == 0
    capsys.readouterr()
    assert_nothing_left(docker_client, env, name)
    record("hub answers 503 x2, then recovers", "exit 0, served (weights retried)", elapsed)


# --- 3. SIGTERM / SIGINT at each phase of `up vllm` run as a subprocess -------------------------------------------


def spawn_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "nemoclaw_runtime.cli.main", "up", "vllm", "--gpus", "none", *args],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=dict(os.environ), cwd=REPO_ROOT)
    return process, out, err


def wait_for(process: subprocess.Popen[bytes], condition: Callable[[], bool], what: str, err: Path,
             seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"`up` ended (exit {process.returncode}) before {what}: {err.read_text()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    process.wait(10)
    pytest.fail(f"`up` never reached {what} within {seconds:g} s")


def signal_and_wait(process: subprocess.Popen[bytes], signum: int, err: Path) -> tuple[float, float]:
    """Send ``signum``; seconds until the ``Error:`` line was written, and until the process exited (killed, and
    the test failed, past SIGNAL_EXIT_S)."""
    sent = time.monotonic()
    process.send_signal(signum)
    said: float | None = None
    deadline = sent + SIGNAL_EXIT_S
    while process.poll() is None and time.monotonic() < deadline:
        if said is None and "Error:" in err.read_text(errors="replace"):
            said = time.monotonic() - sent
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait(10)
        pytest.fail(f"`up` still ran {SIGNAL_EXIT_S} s after signal {signum}: {err.read_text()[-2000:]}")
    exited = time.monotonic() - sent
    return (exited if said is None else said), exited


def assert_signalled(process: subprocess.Popen[bytes], signum: int, out: Path, err: Path) -> str:
    expected = 143 if signum == signal.SIGTERM else 130
    text_out, text_err = out.read_text(), err.read_text()
    assert process.returncode == expected, text_err
    return assert_clean_output(text_out, text_err, failed=True)


def test_sigterm_during_the_weights_download(
        env: dict[str, str], hub: FakeHub, vllm_images: dict[str, str], name: str, tmp_path: Path,
        docker_client: docker.DockerClient) -> None:
    # Bytes keep flowing, slowly (8 KiB every 0.25 s: ~8 s for the 256 KB file), so the signal lands mid-file.
    # Not a stalled socket: the process would outlive SIGNAL_EXIT_S (see the module docstring).
    hub.slow_downloads(0.25, chunk_size=8 * 1024)
    process, out, err = spawn_up(tmp_path, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)
    wait_for(process, lambda: bool(hub.requests_to("/model.safetensors", method="GET")), "the weights download", err)
    time.sleep(0.5)
    said, elapsed = signal_and_wait(process, signal.SIGTERM, err)

    line = assert_signalled(process, signal.SIGTERM, out, err)
    assert_nothing_left(docker_client, env, name)
    record("SIGTERM during the weights download (up vllm)", f"exit 143 (Error line at {said:.1f} s): {line}",
           elapsed)


def test_sigterm_during_the_image_pull_leaves_no_partial_tag(
        env: dict[str, str], hub: FakeHub, name: str, tmp_path: Path, busybox_base: str,
        up_registry: LocalRegistry, docker_client: docker.DockerClient) -> None:
    image = push_random_image(docker_client, up_registry, 3 * 1024 * 1024)
    with FaultProxy(up_registry.host, throttle_bytes_per_s=256 * 1024, throttle_min_size=2 * 1024 * 1024) as proxy:
        ref = image.ref("multi", host=proxy.host)
        try:
            process, out, err = spawn_up(tmp_path, "--model", MODEL_SLUG, "--image", ref, "--name", name)
            wait_for(process, lambda: proxy.throttled_started_at is not None, "the image's large layer", err)
            time.sleep(0.5)
            said, elapsed = signal_and_wait(process, signal.SIGTERM, err)

            line = assert_signalled(process, signal.SIGTERM, out, err)
            assert_nothing_left(docker_client, env, name)
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client.images.get(ref)
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client.images.get(f"{proxy.host}/{image.repo}@{image.index['amd64']}")
            record("SIGTERM during the image pull (slow registry)",
                   f"exit 143, no tag (Error line at {said:.1f} s): {line}", elapsed)
        finally:
            remove_quietly(docker_client, ref, f"{proxy.host}/{image.repo}@{image.index['amd64']}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_the_readiness_wait_removes_the_container(
        env: dict[str, str], hub: FakeHub, vllm_images: dict[str, str], name: str, tmp_path: Path,
        signum: int, docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    process, out, err = spawn_up(tmp_path, "--model", MODEL_SLUG, "--image", vllm_images["slow"], "--name", name,
                                 "--timeout", "300")

    def running() -> bool:
        return any(c.status == "running" for c in docker_client.containers.list(filters={"name": f"^/{name}$"}))

    wait_for(process, running, "the readiness wait (container running)", err, seconds=60)
    time.sleep(1.0)
    said, elapsed = signal_and_wait(process, signum, err)

    line = assert_signalled(process, signum, out, err)
    assert_nothing_left(docker_client, env, name)
    code = 143 if signum == signal.SIGTERM else 130
    if signum == signal.SIGTERM:  # a following `up` of the same name is not blocked: it serves at once
        started = time.monotonic()
        assert run(["up", "vllm", "--gpus", "none", "--model", MODEL_SLUG, "--image", vllm_images["ok"],
                    "--name", name]) == 0
        assert time.monotonic() - started < 30
        assert "waiting for another nemoclaw-runtime" not in capsys.readouterr().err
        assert run(["stop", name]) == 0
        capsys.readouterr()
    record(f"{signal.Signals(signum).name} during the readiness wait (never ready)",
           f"exit {code} (Error line at {said:.1f} s): {line}", elapsed)


def test_a_stalled_hub_socket_ends_the_process_with_its_error(
        env: dict[str, str], hub: FakeHub, vllm_images: dict[str, str], name: str, tmp_path: Path,
        docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket stays open and silent: the stall window ends the download, and the process ends with its Error
    line — huggingface_hub's pool threads, still blocked in the socket read, do not hold it for a minute."""
    monkeypatch.setenv("NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT", "2")
    hub.stall_downloads_after(100 * 1024)
    started = time.monotonic()
    process, out, err = spawn_up(tmp_path, "--model", MODEL_SLUG, "--image", vllm_images["ok"], "--name", name)
    try:
        process.wait(SIGNAL_EXIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        pytest.fail(f"`up` still ran {SIGNAL_EXIT_S} s after the stall: {err.read_text()[-2000:]}")
    elapsed = time.monotonic() - started

    assert process.returncode == 4, err.read_text()
    line = assert_clean_output(out.read_text(), err.read_text(), failed=True)
    assert "stalled" in line and "model.safetensors" in line
    assert_nothing_left(docker_client, env, name)
    record("hub socket stalls mid-weights (subprocess, stall timeout 2 s)", f"exit 4: {line}", elapsed)
