"""`up` at the CLI edge: the dry-run plan (no network, no engine), and every bad input is one line + exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemoclaw_runtime.cli.main import run

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run must not need Docker: point the engine at nothing so any attempt would fail loudly."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def _dry(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str,
         *args: str, **env: str) -> tuple[int, dict]:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / snapshot))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = run(["up", *args, "--dry-run", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_dry_run_plan_on_spark(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, plan = _dry(capsys, monkeypatch, "dgx_spark.json", "vllm")
    assert code == 0
    assert plan["profile"] == "dgx-spark" and plan["model"] == "qwen3.6-35b-a3b-nvfp4"
    assert plan["image"] == "nvcr.io/nvidia/vllm:26.05.post1-py3"
    assert plan["argv"][:3] == ["vllm", "serve", "nvidia/Qwen3.6-35B-A3B-NVFP4"]
    assert plan["container"]["name"] == "nemoclaw-vllm"
    assert plan["container"]["ports"] == [{"container_port": 8000, "host_port": 8000, "host_ip": "127.0.0.1",
                                           "protocol": "tcp"}]


def test_dry_run_never_shows_a_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, plan = _dry(capsys, monkeypatch, "h100_x8.json", "vllm", "--model", "deepseek-r1-distill-70b",
                      "--no-prefetch", HF_TOKEN="hf_dontshowme12345")
    assert code == 0
    assert plan["container"]["env"]["HF_TOKEN"] == "***" and plan["token_variable"] == "HF_TOKEN"
    assert "hf_dontshowme12345" not in json.dumps(plan)


def test_dry_run_human_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / "h100_x8.json"))
    assert run(["up", "vllm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # The fit reads config.json and safetensors headers (into the HF cache): "nothing was downloaded" would be false.
    assert "dry run: no image or weights were downloaded, nothing was started" in out
    assert "nothing was downloaded" not in out
    assert "argv:      vllm serve nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8 --port 8000" in out


@pytest.mark.parametrize(("args", "env", "code", "error"), [
    (["--model", "nope"], {}, 2, "UnknownModel"),
    (["--gpus", "gpu0"], {}, 2, None),
    (["--port", "0"], {}, 2, None),
    (["--timeout", "-5"], {}, 2, None),
    (["--name", "bad name!"], {}, 2, None),
    ([], {"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": "[1]"}, 2, "InvalidSetting"),
    ([], {"NEMOCLAW_VLLM_PORT": "80"}, 2, "InvalidSetting"),
    (["--model", "deepseek-r1-distill-70b"], {}, 3, "MissingToken"),
])
def test_bad_input_is_one_error_with_its_code(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              args: list[str], env: dict[str, str], code: int,
                                              error: str | None) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / "h100_x8.json"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run(["up", "vllm", *args, "--dry-run", "--json"]) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if error:
        assert json.loads(captured.out)["error"] == error


def test_no_gpu_host_is_refused_with_the_reason(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / "no_gpu.json"))
    assert run(["up", "vllm", "--model", "qwen3.6-27b", "--dry-run"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Error: No usable NVIDIA GPU for vLLM") and "--gpus none" in err


def test_nim_dry_run_needs_the_ngc_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, document = _dry(capsys, monkeypatch, "h100_x8.json", "nim")
    assert code == 3 and document["error"] == "MissingToken" and "NGC_API_KEY" in document["message"]
    code, plan = _dry(capsys, monkeypatch, "h100_x8.json", "nim", NGC_API_KEY="nvapi-secret-value")
    assert code == 0 and plan["container"]["name"] == "nemoclaw-nim-nemoclaw"
    assert plan["container"]["env"] == {"NGC_API_KEY": "***", "NIM_NGC_API_KEY": "***"}
    assert plan["container"]["shm_size"] == "16g" and plan["model"] == "nvidia/nemotron-3-super-120b-a12b"


def test_a_one_letter_name_is_refused_as_docker_would(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(FIXTURES / "h100_x8.json"))
    assert run(["up", "vllm", "--name", "a", "--dry-run"]) == 2
    assert "Invalid --name 'a'" in capsys.readouterr().err


def test_up_hands_its_masked_prompt_to_the_library(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI never asks by itself: the library decides when to call the prompt it is given."""
    from nemoclaw_runtime import api
    from nemoclaw_runtime.cli import up as up_cli
    from nemoclaw_runtime.kernel.errors import DockerUnavailable

    asked: list[str] = []

    def ask(label: str) -> str:
        asked.append(label)
        return "nvapi-typed"

    seen: dict[str, object] = {}

    def fake_up(runtime: str, **kw: object) -> None:
        seen.update(runtime=runtime, **kw)
        raise DockerUnavailable("engine down (test)", remedy="start it")

    monkeypatch.setattr(up_cli, "masked_prompt_if_interactive", lambda: ask)
    monkeypatch.setattr(api, "up", fake_up)
    assert run(["up", "nim", "--model", "m"]) == 3
    assert seen["runtime"] == "nim" and seen["model"] == "m" and seen["prompt_secret"] is ask
    assert asked == []
    assert "engine down (test)" in capsys.readouterr().err


def test_unknown_runtime_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["up", "podman", "--dry-run"]) == 2
    assert capsys.readouterr().err.splitlines() == ["Error: Unknown runtime 'podman'",
                                                    "  fix: use one of: vllm, nim, ollama"]
    assert run(["up", "podman", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "InvalidInput"
