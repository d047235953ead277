"""`up vllm --nodes` on two real Docker engines: the main one (the head, `local`) and a second dockerd on this
machine (its own socket and data root) standing in for the second host. Both share the host's network namespace,
so the Ray head on 127.0.0.1 (--nic lo) is reached by the worker as it would be over the link between two
machines. The fake vLLM image plays `ray start` / `ray status` and `vllm serve --distributed-executor-backend ray`
(fixtures/images/fake-vllm), pulled by digest from the local registry on both engines; weights come from the fake
hub once, into this machine's cache, and are copied into the second engine's `nemoclaw-hf-cache` volume.

Serve, ps, logs --node, stop; a worker that dies (its log tail and cause, nothing left on either engine); a
cancel during the Ray join (the same clean-up as Ctrl-C); an unreachable node (exit 3 before anything starts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from nemoclaw_runtime import api
from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled
from nemoclaw_runtime.kernel.events import Event, Info, PhaseChanged
from tests.fake_servers.fake_hf import FakeHub, tiny_model_files
from tests.fake_servers.fake_vllm import push_fake_vllm_variants
from tests.helpers.docker_env import free_port, serve_environment, unique_name
from tests.helpers.registry import running_registry
from tests.helpers.second_engine import SecondEngine, SecondEngineUnavailable, dockerd_path

pytestmark = pytest.mark.docker

MODEL_SLUG = "nemotron-3-nano-4b"
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
PINNED = "3fe6dab75665a93884214ad4b1b95cf02717d081"  # the registry's hf_revision for it
GROUP_LABEL = "io.nemoclaw.runtime.group"
VARIANTS = {"ok": {}, "worker-exit": {"FAKE_RAY_FAIL": "worker-exit", "FAKE_RAY_FAIL_AFTER_S": "2",
                                      "FAKE_VLLM_DELAY_S": "60"},  # the worker dies while the server loads
            "no-gpus": {"FAKE_RAY_GPUS": "0"}}


@pytest.fixture(scope="module")
def engine2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondEngine]:
    if dockerd_path() is None:
        pytest.fail("no dockerd: install docker.io (bash scripts/test.sh does)", pytrace=False)
    engine = SecondEngine(Path(tmp_path_factory.mktemp("nodes-engine2", numbered=True)))
    try:
        engine.start()
    except SecondEngineUnavailable as exc:
        engine.close()
        pytest.fail(f"a second Docker engine could not start: {exc}", pytrace=False)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="module")
def engine2_client(engine2: SecondEngine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=engine2.host, timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory,
           test_session_id: str) -> Iterator[dict[str, str]]:
    """The fake vLLM image (with its fake Ray) per behaviour, in a local registry both engines pull from."""
    with running_registry(tmp_path_factory.mktemp("nodes-registry")) as registry:
        yield push_fake_vllm_variants(docker_client, registry, VARIANTS, prefix="vllm-nodes", session=test_session_id)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_hf: FakeHub, tmp_path: Path) -> dict[str, str]:
    fake_hf.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
    values = serve_environment(monkeypatch, fake_hf.url, tmp_path)
    values["NEMOCLAW_RAY_PORT"] = str(free_port())
    monkeypatch.setenv("NEMOCLAW_RAY_PORT", values["NEMOCLAW_RAY_PORT"])
    return values


@pytest.fixture
def name(docker_client: docker.DockerClient, engine2_client: docker.DockerClient) -> Iterator[str]:
    """A deployment name; every container of it is removed from both engines afterwards, whatever happened."""
    chosen = unique_name("nrt-nodes")
    yield chosen
    for client in (docker_client, engine2_client):
        for container in client.containers.list(all=True, filters={"label": f"{GROUP_LABEL}={chosen}"}):
            container.remove(force=True)


def _group(client: docker.DockerClient, name: str) -> dict[str, Any]:
    return {c.name: c for c in client.containers.list(all=True, filters={"label": f"{GROUP_LABEL}={name}"})}


def _up(capsys: pytest.CaptureFixture[str], engine2: SecondEngine, *args: str) -> tuple[int, Any, str]:
    code = run(["up", "vllm", "--gpus", "none", "--json", "--nodes", f"local,{engine2.host}", "--nic", "lo", *args])
    captured = capsys.readouterr()
    try:
        document = json.loads(captured.out)
    except json.JSONDecodeError:
        document = None
    return code, document, captured.err


def test_two_engines_serve_list_log_and_stop_as_one_deployment(
        images: dict[str, str], env: dict[str, str], name: str, engine2: SecondEngine,
        docker_client: docker.DockerClient, engine2_client: docker.DockerClient, fake_hf: FakeHub,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, result, err = _up(capsys, engine2, "--model", MODEL_SLUG, "--image", images["ok"], "--name", name)
    assert code == 0, (result, err)
    port = env["NEMOCLAW_VLLM_PORT"]
    assert result["base_url"] == f"http://127.0.0.1:{port}/v1" and result["served_model_id"] == MODEL_ID
    assert [(n["index"], n["role"]) for n in result["nodes"]] == [(0, "head"), (1, "worker")]
    assert result["nodes"][1]["address"] == engine2.host and result["validated_api"] == "openai-completions"

    head, worker = _group(docker_client, name), _group(engine2_client, name)
    assert sorted(head) == sorted([name, f"{name}-ray-0"]) and list(worker) == [f"{name}-ray-1"]
    for container in [*head.values(), *worker.values()]:
        assert container.status == "running"
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.attrs["HostConfig"]["IpcMode"] == "host"
        assert container.attrs["Config"]["Image"].endswith("@" + result["digest"]), "one digest on every node"
        env_list = container.attrs["Config"]["Env"]
        assert "NCCL_SOCKET_IFNAME=lo" in env_list and "GLOO_SOCKET_IFNAME=lo" in env_list
        assert not any(e.startswith(("HF_TOKEN=", "HUGGING_FACE_HUB_TOKEN=")) for e in env_list)
    serve = head[name].attrs["Config"]["Cmd"]
    assert serve[:3] == ["vllm", "serve", MODEL_ID]
    for flag, value in (("--tensor-parallel-size", "2"), ("--pipeline-parallel-size", "1"),
                        ("--distributed-executor-backend", "ray"), ("--port", port), ("--host", "127.0.0.1")):
        assert serve[serve.index(flag) + 1] == value
    assert f"RAY_ADDRESS=127.0.0.1:{env['NEMOCLAW_RAY_PORT']}" in head[name].attrs["Config"]["Env"]
    # the worker's weights came through its engine into its cache volume, not from the hub inside a container
    mounts = worker[f"{name}-ray-1"].attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == \
        [("volume", "nemoclaw-hf-cache", "/root/.cache/huggingface")]
    snapshot = f"/root/.cache/huggingface/hub/models--nvidia--NVIDIA-Nemotron-3-Nano-4B-FP8/snapshots/{PINNED}"
    listing = engine2_client.containers.run(result["digest"] and images["ok"].rsplit(":", 1)[0] + "@" +
                                            result["digest"], ["ls", snapshot], remove=True, network_mode="none",
                                            volumes={"nemoclaw-hf-cache": {"bind": "/root/.cache/huggingface"}})
    assert b"config.json" in listing

    assert run(["ps", "--json"]) == 0
    listed = [c for c in json.loads(capsys.readouterr().out) if name in c["name"]]
    assert [c["name"] for c in listed] == [name], "one entry for the deployment, not one per container"
    assert [(n["index"], n["state"]) for n in listed[0]["nodes"]] == [(0, "running"), (1, "running")]
    assert run(["ps"]) == 0
    table = capsys.readouterr().out
    assert f"node 1 (worker) {engine2.host}: {name}-ray-1 running" in table

    assert run(["status", "--json", name]) == 0
    served = [s for s in json.loads(capsys.readouterr().out)["servers"] if name in s["name"]]
    assert [(s["name"], s["state"]) for s in served] == [(name, "running")]
    assert run(["status", "--json"]) == 0  # every managed server: the Ray containers serve no API, not listed
    assert [s["name"] for s in json.loads(capsys.readouterr().out)["servers"] if name in s["name"]] == [name]

    assert run(["logs", name, "--node", "1", "--tail", "50"]) == 0
    assert "Ray runtime started." in capsys.readouterr().out
    assert run(["logs", name, "--tail", "200"]) == 0
    assert "pipeline_parallel_size=1" in capsys.readouterr().out

    assert run(["stop", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": [name]}
    assert _group(docker_client, name) == {} and _group(engine2_client, name) == {}
    assert not (Path(env["NEMOCLAW_STATE_DIR"]) / "groups" / f"{name}.json").exists()


def test_a_worker_that_dies_ends_the_wait_with_its_log_and_leaves_nothing_on_any_node(
        images: dict[str, str], env: dict[str, str], name: str, engine2: SecondEngine,
        docker_client: docker.DockerClient, engine2_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, result, err = _up(capsys, engine2, "--model", MODEL_SLUG, "--image", images["worker-exit"],
                            "--name", name, "--timeout", "120")
    assert code == 5, err
    assert time.monotonic() - started < 45, "the wait ended when the worker died, not at the server's delay"
    assert result["error"] == "ContainerExited" and result["cause"] == "nccl", result
    assert f"{name}-ray-1 on node 1 ({engine2.host})" in result["message"]
    assert any("NCCL error" in line for line in result["log_tail"])
    assert "Traceback" not in err and "Error" not in err.splitlines()[-1]
    assert _group(docker_client, name) == {} and _group(engine2_client, name) == {}
    assert not (Path(env["NEMOCLAW_STATE_DIR"]) / "groups" / f"{name}.json").exists()


def test_a_cancel_while_the_nodes_join_removes_every_nodes_container(
        images: dict[str, str], env: dict[str, str], name: str, engine2: SecondEngine,
        docker_client: docker.DockerClient, engine2_client: docker.DockerClient) -> None:
    cancel = CancelToken()
    seen: list[Event] = []

    def events(event: Event) -> None:  # cancel (what Ctrl-C does) once the Ray head and worker run
        seen.append(event)
        if isinstance(event, PhaseChanged) and "Ray cluster" in event.message:
            threading.Timer(0.5, cancel.cancel).start()

    with pytest.raises(Cancelled) as caught:
        api.up("vllm", model=MODEL_SLUG, image=images["no-gpus"], name=name, gpus="none",
               nodes=f"local,{engine2.host}", nic="lo", events=events, cancel=cancel)
    assert "removed from every node" in caught.value.message
    assert any(isinstance(e, Info) and f"Removed {name}-ray-1 on node 1" in e.message for e in seen)
    assert _group(docker_client, name) == {} and _group(engine2_client, name) == {}


def test_ctrl_c_while_the_nodes_join_is_exit_130_and_leaves_nothing_on_either_engine(
        images: dict[str, str], env: dict[str, str], name: str, engine2: SecondEngine, tmp_path: Path,
        docker_client: docker.DockerClient, engine2_client: docker.DockerClient) -> None:
    """A real SIGINT to the CLI process (what Ctrl-C sends), once the Ray head and the worker run and `up` waits
    for GPUs that never come (FAKE_RAY_GPUS=0)."""
    err_path = tmp_path / "up.err"
    with err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "nemoclaw_runtime.cli.main", "up", "vllm", "--gpus", "none", "--nodes",
             f"local,{engine2.host}", "--nic", "lo", "--model", MODEL_SLUG, "--image", images["no-gpus"], "--name",
             name], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not (_running(docker_client, f"{name}-ray-0") and _running(engine2_client, f"{name}-ray-1")):
            assert process.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "the Ray containers never ran"
            time.sleep(0.2)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=45)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = err_path.read_text()
    assert process.returncode == 130, text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "removed from every node" in errors[0] and "Traceback" not in text
    assert _group(docker_client, name) == {} and _group(engine2_client, name) == {}


def _running(client: docker.DockerClient, container: str) -> bool:
    return any(c.status == "running" for c in client.containers.list(filters={"name": f"^/{container}$"}))


def test_an_unreachable_node_is_exit_3_naming_it_before_anything_starts(
        images: dict[str, str], env: dict[str, str], name: str, docker_client: docker.DockerClient,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"unix://{tmp_path}/no-engine.sock"
    code = run(["up", "vllm", "--gpus", "none", "--json", "--nodes", f"local,{missing}", "--nic", "lo",
                "--model", MODEL_SLUG, "--image", images["ok"], "--name", name])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    error = json.loads(captured.out)
    assert error["error"] == "DockerUnavailable" and error["message"].startswith(f"Node 1 ({missing}):")
    assert "Traceback" not in captured.err
    assert _group(docker_client, name) == {}


def test_one_engine_named_twice_is_refused_before_anything_starts(
        images: dict[str, str], env: dict[str, str], name: str, docker_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    same = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"  # what `local` is here
    code = run(["up", "vllm", "--gpus", "none", "--json", "--nodes", f"local,{same}", "--nic", "lo", "--model",
                MODEL_SLUG, "--image", images["ok"], "--name", name])
    error = json.loads(capsys.readouterr().out)
    assert code == 2 and error["error"] == "InvalidInput" and "same Docker engine" in error["message"]
    assert _group(docker_client, name) == {}
