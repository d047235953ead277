"""``ps`` / ``stop`` / ``logs`` through the real CLI entry point, with FakeDocker behind the library (the one place
the library opens the engine, ``runtimes/wiring.py``, hands out the fake)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.spec import LABEL_MODEL, LABEL_WEIGHTS_REVISION, ContainerSpec, PortBinding
from tests.fakes.fake_docker import FakeDocker

IMAGE = "nvcr.io/nim/meta/llama:1.0"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    docker = FakeDocker()
    docker.add_image(IMAGE, digest="sha256:" + "12" * 32)
    monkeypatch.setattr(wiring, "open_docker", lambda settings: docker)
    return docker


def start(fake: FakeDocker, name: str, *, runtime: str = "nim", port: int = 18000) -> str:
    spec = ContainerSpec(name=name, runtime=runtime, image=IMAGE, command=("serve",),
                         labels=((LABEL_MODEL, "llama-8b"),), ports=(PortBinding(8000, port),))
    return DockerContainerManager(fake, Settings.from_env()).ensure_running(spec).container.id


def test_ps_with_nothing_managed(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_foreign_container("theirs")
    assert run(["ps"]) == 0
    assert capsys.readouterr().out.strip() == "No managed containers."
    assert run(["ps", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_ps_lists_ours_only(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "nemoclaw-nim-a")
    fake.add_foreign_container("theirs")
    assert run(["ps", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["nemoclaw-nim-a"]
    row = rows[0]
    assert row["runtime"] == "nim" and row["model"] == "llama-8b" and row["state"] == "running"
    assert row["base_url"] == "http://127.0.0.1:18000/v1" and row["image"] == IMAGE
    assert row["image_digest"] == "sha256:" + "12" * 32 and row["created"]
    assert run(["ps"]) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "BASE URL" in out and "nemoclaw-nim-a" in out and "theirs" not in out


def test_ps_shows_the_exit_code_of_a_stopped_container(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    container_id = start(fake, "nemoclaw-nim-a")
    fake.stop_container(container_id)
    assert run(["ps"]) == 0
    assert "exited (143)" in capsys.readouterr().out


def test_stop_named(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "nemoclaw-nim-a")
    assert run(["stop", "nemoclaw-nim-a"]) == 0
    assert "Stopped and removed nemoclaw-nim-a" in capsys.readouterr().out
    assert fake.containers == {}


def test_stop_foreign_is_exit_6_and_untouched(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    foreign_id = fake.add_foreign_container("theirs")
    assert run(["stop", "theirs"]) == 6
    err = capsys.readouterr().err
    assert "theirs" in err and "not created by nemoclaw-runtime" in err and "nemoclaw-runtime ps" in err
    assert fake.containers[foreign_id].status == "running"


def test_stop_several_touches_none_if_one_is_unknown(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "nemoclaw-nim-a")
    assert run(["stop", "nemoclaw-nim-a", "ghost", "--json"]) == 6
    document = json.loads(capsys.readouterr().out)
    assert document["error"] == "NoSuchContainer" and document["details"]["missing"] == ["ghost"]
    assert "nothing was stopped" in document["message"]
    assert fake.inspect_container("nemoclaw-nim-a").state.running  # type: ignore[union-attr]


def test_stop_all_with_nothing_managed(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_foreign_container("theirs")
    assert run(["stop", "--all"]) == 0
    assert capsys.readouterr().out.strip() == "No managed containers to stop."
    assert run(["stop", "--all", "--runtime", "nim", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": []}
    assert len(fake.containers) == 1


def test_stop_all_by_runtime(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    start(fake, "aa", runtime="nim", port=18000)
    start(fake, "bb", runtime="vllm", port=18001)
    assert run(["stop", "--all", "--runtime", "vllm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": ["bb"]}
    assert [c.name for c in fake.containers.values()] == ["aa"]


@pytest.mark.parametrize("args", [["stop"], ["stop", "a", "--all"]])
def test_stop_needs_names_or_all(fake: FakeDocker, args: list[str]) -> None:
    assert run(args) == 2


def test_stop_unloads_the_models_of_a_managed_ollama_first(fake: FakeDocker,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fake_servers.fake_ollama import FakeOllama

    with FakeOllama(models=["qwen3.5:9b"]) as ollama:
        start(fake, "nemoclaw-ollama", runtime="ollama", port=ollama.port)
        ollama.loaded.add("qwen3.5:9b")
        assert run(["stop", "nemoclaw-ollama", "--json"]) == 0
        assert ollama.loaded == set()
    assert [r.body for r in ollama.requests if r.path == "/api/generate"] == [{"model": "qwen3.5:9b", "keep_alive": 0}]
    assert json.loads(capsys.readouterr().out) == {"stopped": ["nemoclaw-ollama"]}
    assert fake.containers == {}


@pytest.mark.parametrize("args", [["ps", "--runtime", "bogus"], ["stop", "--all", "--runtime", "bogus"],
                                  ["stop", "nemoclaw-nim-a", "--runtime", "bogus"]])
def test_an_unknown_runtime_is_exit_2_and_touches_nothing(fake: FakeDocker, capsys: pytest.CaptureFixture[str],
                                                          args: list[str]) -> None:
    start(fake, "nemoclaw-nim-a")
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["Error: Unknown runtime 'bogus'", "  fix: use one of: vllm, nim, ollama"]
    assert run([*args, "--json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["error"] == "InvalidInput" and document["exit_code"] == 2 and "vllm" in document["remedy"]
    assert [c for c in fake.calls if c[0] in ("stop_container", "remove_container")] == []
    assert fake.inspect_container("nemoclaw-nim-a").state.running  # type: ignore[union-attr]


def test_logs_tail(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    container_id = start(fake, "nemoclaw-nim-a")
    fake.emit_logs(container_id, "one", "two", "three")
    assert run(["logs", "nemoclaw-nim-a", "--tail", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["two", "three"]


def test_logs_follow_until_stopped(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    container_id = start(fake, "nemoclaw-nim-a")
    fake.emit_logs(container_id, "booting")

    def later() -> None:
        fake.emit_logs(container_id, "ready")
        fake.stop_container(container_id)

    timer = threading.Timer(0.2, later)
    timer.start()
    assert run(["logs", "nemoclaw-nim-a", "--follow"]) == 0
    timer.join()
    assert capsys.readouterr().out.splitlines() == ["booting", "ready"]


def test_logs_of_foreign_is_exit_6(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_foreign_container("theirs")
    fake.emit_logs("theirs", "private line")
    assert run(["logs", "theirs"]) == 6
    captured = capsys.readouterr()
    assert "private line" not in captured.out + captured.err


def test_negative_tail_is_a_usage_error(fake: FakeDocker) -> None:
    assert run(["logs", "x", "--tail", "-3"]) == 2


def test_importing_the_ops_commands_does_not_load_docker() -> None:
    code = ("import sys; import nemoclaw_runtime.cli.ops; "
            "print(sorted(m for m in ('docker', 'httpx', 'pynvml', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ps_shows_the_pinned_weights_revision(fake: FakeDocker, capsys: pytest.CaptureFixture[str]) -> None:
    revision = "3fe6dab75665a93884214ad4b1b95cf02717d081"
    spec = ContainerSpec(name="nemoclaw-vllm", runtime="vllm", image=IMAGE, command=("serve",),
                         labels=((LABEL_MODEL, "nemotron-3-nano-4b"), (LABEL_WEIGHTS_REVISION, revision)),
                         ports=(PortBinding(8000, 18001),))
    DockerContainerManager(fake, Settings.from_env()).ensure_running(spec)
    assert run(["ps", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["weights_revision"] == revision
    assert run(["ps"]) == 0
    assert "nemotron-3-nano-4b@3fe6dab75665 " in capsys.readouterr().out
