"""Issue 14 part 2 at the CLI edge: ``export kubernetes`` prints the library's YAML (or JSON with ``--json``), writes
``-o FILE`` atomically, refuses every bad input with exit 2 and one line (JSON with ``--json``), never a traceback,
and never prints a token it finds in the environment."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from nemoclaw_runtime import api
from nemoclaw_runtime.cli import main as cli_main
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.export import export_kubernetes

HF_CANARY = "hf_CanaryHfToken0123456789abcdef"
NGC_CANARY = "nvapi-CanaryNgcKey0123456789abcdef"


@pytest.fixture(autouse=True)
def canaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_CANARY)
    monkeypatch.setenv("NGC_API_KEY", NGC_CANARY)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main.run(["export", "kubernetes", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "CanaryHfToken" not in captured.out + captured.err and "CanaryNgcKey" not in captured.out + captured.err
    return code, captured.out, captured.err


def library(runtime: str, **options: Any) -> Any:
    return export_kubernetes(runtime, settings=Settings.from_env(), **options)


def test_yaml_on_stdout_is_the_library_export(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "vllm", "--model", "qwen3.6-27b", "--gpus", "2", "--namespace", "ml")
    assert code == 0, err
    assert out == library("vllm", model="qwen3.6-27b", gpus=2, namespace="ml").to_yaml()
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out)]
    assert kinds == ["PersistentVolumeClaim", "Deployment", "Service"]
    assert out.startswith("# ") and "not pinned" in err  # notes as comments; the unpinned image warned about


def test_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "vllm", "--model", "deepseek-v4-flash", "--gpus", "8", "--nodes", "2", "--json")
    assert code == 0
    document = json.loads(out)
    assert list(document) == ["runtime", "format", "namespace", "documents", "notes"]
    assert document["format"] == "leaderworkerset" and document["namespace"] == "default"
    assert [d["kind"] for d in document["documents"]] == ["LeaderWorkerSet", "Service"]
    assert document == library("vllm", model="deepseek-v4-flash", gpus=8, nodes=2).to_dict()


def test_nim_formats(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "nim", "--model", "meta/llama-3.1-8b-instruct")
    assert code == 0 and [d["kind"] for d in yaml.safe_load_all(out)] == ["NIMCache", "NIMService"]
    code, out, _ = cli(capsys, "nim", "--model", "meta/llama-3.1-8b-instruct", "--format", "deployment")
    assert code == 0 and [d["kind"] for d in yaml.safe_load_all(out)] == [
        "PersistentVolumeClaim", "Deployment", "Service"]


def test_output_file_is_written_with_a_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "qwen.yaml"
    target.write_text("old\n")
    code, out, err = cli(capsys, "vllm", "--model", "qwen3.6-27b", "--name", "qwen", "-o", str(target))
    assert code == 0, err
    documents = list(yaml.safe_load_all(target.read_text()))
    assert [d["metadata"]["name"] for d in documents] == ["qwen-hf-cache", "qwen", "qwen"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert f"to {target}" in out and "Deployment/qwen" in out and "kubectl apply" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qwen.yaml"]  # no temporary file left


def test_output_file_with_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "nim.json"
    code, out, _ = cli(capsys, "nim", "--model", "meta/llama-3.1-8b-instruct", "-o", str(target), "--json")
    assert code == 0
    written = json.loads(target.read_text())
    assert [d["kind"] for d in written["documents"]] == ["NIMCache", "NIMService"]
    summary = json.loads(out)
    assert summary["path"] == str(target) and summary["objects"][1].startswith("NIMService/")
    assert "CanaryNgcKey" not in target.read_text()


@pytest.mark.parametrize("where", ["directory", "/dev/null", "folder-is-a-file"])
def test_output_must_be_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("kept")
    path = {"directory": str(tmp_path), "/dev/null": "/dev/null",
            "folder-is-a-file": str(tmp_path / "afile" / "x.yaml")}[where]
    code, out, err = cli(capsys, "vllm", "--model", "qwen3.6-27b", "-o", path)
    assert code == 2 and out == ""
    assert len([line for line in err.splitlines() if line.startswith("Error: ")]) == 1
    assert any(line.startswith("  fix: ") for line in err.splitlines())
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and (tmp_path / "afile").read_text() == "kept"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_output_into_a_new_folder_creates_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "new" / "x.yaml"
    code, _, err = cli(capsys, "vllm", "--model", "qwen3.6-27b", "-o", str(target))
    assert code == 0, err
    assert "kind: Deployment" in target.read_text()


BAD = [
    (["ollama", "--model", "x"], "export kubernetes supports vllm and nim"),
    (["bogus"], "export kubernetes supports vllm and nim"),
    (["vllm"], "needs a model"),
    (["vllm", "--model", "no-such-model"], "Unknown --model"),
    (["nim", "--model", "no/such"], "Unsupported"),
    (["vllm", "--model", "qwen3.6-27b", "--gpus", "0"], "--gpus"),
    (["vllm", "--model", "qwen3.6-27b", "--gpus", "65"], "--gpus"),
    (["vllm", "--model", "qwen3.6-27b", "--gpus", "nan"], "--gpus"),
    (["vllm", "--model", "qwen3.6-27b", "--nodes", "0"], "--nodes"),
    (["vllm", "--model", "qwen3.6-27b", "--nodes", "٨"], "--nodes"),
    (["vllm", "--model", "qwen3.6-27b", "--format", "helm"], "--format"),
    (["vllm", "--model", "qwen3.6-27b", "--format", "leaderworkerset"], "--nodes 2 or more"),
    (["nim", "--model", "meta/llama-3.1-8b-instruct", "--format", "deployment", "--nodes", "2"], "one node"),
    (["vllm", "--model", "qwen3.6-27b", "--namespace", "Bad_NS"], "--namespace"),
    (["vllm", "--model", "qwen3.6-27b", "--name", "-x"], "--name"),
    (["vllm", "--model", "qwen3.6-27b", "--name", "a\x1b[31m"], "--name"),
    (["vllm", "--model", "qwen3.6-27b", "--image", "--privileged"], "image reference"),
    (["vllm", "--model", "qwen3.6-27b", "--lock", "/nonexistent/x.json"], "No lock file"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert any(line.startswith("  fix: ") for line in err.splitlines()), err
    assert "\x1b" not in out + err


@pytest.mark.parametrize(("args", "message"), BAD[:4])
def test_bad_input_with_json_is_a_json_error(capsys: pytest.CaptureFixture[str], args: list[str],
                                             message: str) -> None:
    code, out, _ = cli(capsys, *args, "--json")
    document = json.loads(out)
    assert code == 2 and document["exit_code"] == 2 and message in document["message"] and document["remedy"]


def test_export_alone_names_the_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main.run(["export"])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines()[0] == "Error: Missing command."


def test_the_command_and_the_api_are_wired() -> None:
    """What every test above runs through is the real registration, not a stand-in."""
    assert cli_main.COMMANDS["export"] == "nemoclaw_runtime.cli.export:export"
    assert api.export_kubernetes.__module__ == "nemoclaw_runtime.api"
    assert export_kubernetes.__module__ == "nemoclaw_runtime.runtimes.export.kubernetes"
