from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from nemoclaw_runtime.cli import main as cli_main
from nemoclaw_runtime.kernel.errors import EXIT_CODES, Cancelled, InvalidInput, MissingToken, NemoclawError


def _with_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    @click.command()
    @click.option("--json", "json_mode", is_flag=True)
    def boom(json_mode: bool) -> None:
        raise exc

    monkeypatch.setattr(cli_main.LazyGroup, "get_command", lambda self, ctx, name: boom if name == "boom" else None)


def test_known_error_is_one_line_with_remedy_and_exit_code(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _with_command(monkeypatch, MissingToken("Model 'x' is gated", remedy="export HF_TOKEN=..."))
    assert cli_main.run(["boom"]) == 3
    err = capsys.readouterr().err
    assert "Error: Model 'x' is gated" in err and "fix: export HF_TOKEN=..." in err
    assert "Traceback" not in err


def test_json_mode_prints_the_error_document(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _with_command(monkeypatch, InvalidInput("bad", remedy="fix it"))
    assert cli_main.run(["boom", "--json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["error"] == "InvalidInput" and document["exit_code"] == 2 and document["remedy"] == "fix it"


def test_unexpected_error_is_exit_1_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _with_command(monkeypatch, RuntimeError("oops"))
    assert cli_main.run(["boom"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: oops" in err and "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_DEBUG", "1")
    _with_command(monkeypatch, RuntimeError("oops"))
    assert cli_main.run(["boom"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_keyboard_interrupt_and_cancel_are_130(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_command(monkeypatch, KeyboardInterrupt())
    assert cli_main.run(["boom"]) == 130
    _with_command(monkeypatch, Cancelled("stopped"))
    assert cli_main.run(["boom"]) == 130


def test_unknown_flag_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.run(["--no-such-flag"]) == 2


def test_every_error_class_has_a_documented_exit_code() -> None:
    import nemoclaw_runtime.kernel.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, NemoclawError)]
    assert len(classes) > 20
    assert all(c.exit_code in EXIT_CODES for c in classes)


def test_help_does_not_import_heavy_libraries() -> None:
    code = ("import sys\nfrom nemoclaw_runtime.cli.main import run\nrun(['--help'])\n"
            "heavy = [m for m in ('docker', 'httpx', 'pynvml', 'huggingface_hub', 'rich') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


# --- SIGTERM behaves like Ctrl-C, and exits 143 ---------------------------------------------------------------------

_SIGTERM_PROGRAM = '''
import sys, time
from pathlib import Path
import click
from nemoclaw_runtime.cli import main as cli_main
from nemoclaw_runtime.kernel.errors import Cancelled
from nemoclaw_runtime.kernel.threads import interrupts_deferred
from nemoclaw_runtime.runtimes.docker.locks import name_lock

state, mode = Path(sys.argv[1]), sys.argv[2]

@click.command()
@click.option("--json", "json_mode", is_flag=True)
def hang(json_mode: bool) -> None:
    with name_lock(state, "nemoclaw-vllm"):  # as `up` holds the container name's lock
        try:
            print("waiting", flush=True)
            time.sleep(60)  # a fake long wait: readiness, a pull
        except KeyboardInterrupt as exc:  # the pipeline's clean-up path: remove what was started, then Cancelled
            if mode == "bare":
                raise
            with interrupts_deferred():
                (state / "cleaned").write_text("yes")
            raise Cancelled("Cancelled; the container nemoclaw-vllm was stopped and removed") from exc

cli_main.LazyGroup.get_command = lambda self, ctx, name: hang if name == "hang" else None
cli_main.main(["hang", *sys.argv[3:]])
'''


@pytest.mark.parametrize(("mode", "json_mode"), [("clean", False), ("clean", True), ("bare", False)])
def test_sigterm_runs_the_ctrl_c_clean_up_and_exits_143(tmp_path: Path, mode: str, json_mode: bool) -> None:
    import signal

    from nemoclaw_runtime.kernel.clock import SystemClock
    from nemoclaw_runtime.kernel.errors import PreflightRefused
    from nemoclaw_runtime.runtimes.docker.locks import name_lock

    child = subprocess.Popen([sys.executable, "-c", _SIGTERM_PROGRAM, str(tmp_path), mode,
                              *(["--json"] if json_mode else [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "waiting"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    assert child.returncode == 143, err
    assert "Traceback" not in err
    if json_mode:
        document = json.loads(out)
        assert document["error"] == "Terminated" and document["exit_code"] == 143
        assert "was stopped and removed" in document["message"]
    else:
        assert "Terminated by SIGTERM" in err
    assert (tmp_path / "cleaned").exists() is (mode == "clean")
    try:  # the lock was released
        with name_lock(tmp_path, "nemoclaw-vllm", wait_s=0.5, clock=SystemClock()):
            pass
    except PreflightRefused:  # pragma: no cover - the failure this test exists for
        pytest.fail("the container name's lock is still held after SIGTERM")


def test_sigterm_handler_is_restored_after_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM)
    _with_command(monkeypatch, InvalidInput("bad"))
    assert cli_main.run(["boom"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
    assert EXIT_CODES[143].startswith("terminated")


def test_the_readme_says_which_commands_take_json() -> None:
    """The README's --json sentence matches the commands: every one has --json but ``logs`` (plain container text)."""
    import importlib

    without = []
    for name, target in cli_main.COMMANDS.items():
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        # a group (``export``) is judged by its subcommands (``export kubernetes``)
        leaves = list(command.commands.values()) if isinstance(command, click.Group) else [command]
        if not all(any("--json" in getattr(p, "opts", ()) for p in leaf.params) for leaf in leaves):
            without.append(name)
    assert without == ["logs"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "Every command but `logs` takes `--json`" in readme and "Every command takes `--json`" not in readme


def test_a_caught_interrupt_in_a_string_exec_does_not_end_python_m_by_sigint(tmp_path: Path) -> None:
    """CPython flags a KeyboardInterrupt that ended a string ``exec`` (dataclass generation in a lazy import) even when
    it was caught; ``python -m`` then died by SIGINT (-2) instead of exiting 130 after a Ctrl-C. main() clears it."""
    module = tmp_path / "interrupted_cli.py"
    module.write_text(
        "from nemoclaw_runtime.cli import main as cli_main\n"
        "def run(args):\n"
        "    try:\n"
        "        exec('raise KeyboardInterrupt', {})\n"
        "    except KeyboardInterrupt:\n"
        "        return 130\n"
        "cli_main.run = run\n"
        "cli_main.main([])\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "interrupted_cli"], cwd=tmp_path, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 130, done.stderr
