"""Issue 12, the net: every option of every command and every variable of the settings catalogue, fed hostile
values by hypothesis, through the real CLI entry point (``cli.main.run``) in-process.

Whatever the value — empty, whitespace, control and bidi characters, NaN and infinities, huge, negative and
non-ASCII numbers, paths to directories, devices and FIFOs, credentials inside URLs and after secret-like flags,
JSON nested thousands deep — the command must:

* end with a documented exit code other than 1 (``{0, 2, 3, 4, 5, 6}``), never with a traceback;
* say what went wrong in one clean line (``Error: …``, then ``  fix: …``), or with ``--json`` print one JSON
  document on stdout carrying that exit code;
* print no terminal escape, control or bidi character, and no credential it was given;
* leave no file behind, and finish in bounded time and memory.

Nothing reaches a real engine or the network: ``DOCKER_HOST`` and ``HF_ENDPOINT`` point at a closed loopback port
(what passes validation fails fast with 3, 4 or 5), the GPUs come from a snapshot, the fit engine gets a source
that knows nothing, and waits between retries are cut short. Commands are found by introspecting the click group,
so a command or option added later is walked too.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemoclaw_runtime.cli import main as cli_main
from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.settings import CATALOGUE
from nemoclaw_runtime.kernel.text import has_unsafe

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
DOCUMENTED = {0, 2, 3, 4, 5, 6}
EXAMPLE_SECONDS = 15.0  # one command, whatever it was given
MEMORY_GROWTH_KIB = 512 * 1024

# Credentials planted in the environment and in hostile values: none may ever come back.
HF_TOKEN = "hf_PlantedHfToken0123456789"
NGC_KEY = "nvapi-PlantedNgcKey0123456789"
URL_PASSWORD = "PlantedUrlPassw0rd"
FLAG_SECRET = "PlantedFlagSecret42"
SECRETS = ("PlantedHfToken0123456789", "PlantedNgcKey0123456789", URL_PASSWORD, FLAG_SECRET)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED = _closed_port()
CLOSED_URL = f"http://127.0.0.1:{CLOSED}"


# --- the world every example runs in -------------------------------------------------------------------------------


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.directory = root / "a-directory"
        self.directory.mkdir()
        self.file = root / "a-file.txt"
        self.file.write_text("not json\n")
        self.fifo = root / "a-fifo"
        os.mkfifo(self.fifo)
        self.deep = root / "deep.json"
        self.deep.write_text("[" * 50_000 + "]" * 50_000)

    def env(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {name: None for name in os.environ if name.startswith(
            ("NEMOCLAW_", "HF_", "HUGGING_FACE_", "NGC_", "NVIDIA_", "XDG_", "DOCKER_"))}
        env.update({
            "HOME": str(self.home), "NEMOCLAW_STATE_DIR": str(self.root / "state"),
            "NEMOCLAW_GPU_SNAPSHOT": str(FIXTURES / "h100_x8.json"), "DOCKER_HOST": f"tcp://127.0.0.1:{CLOSED}",
            "HF_ENDPOINT": CLOSED_URL, "HF_TOKEN": HF_TOKEN, "NGC_API_KEY": NGC_KEY, "NO_COLOR": "1",
        })
        return env

    def files(self) -> set[Path]:
        """Everything under the root that is not a directory (lock files are the lock's own business)."""
        return {p for p in self.root.rglob("*") if not p.is_dir() and p.suffix != ".lock"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(autouse=True)
def fast_and_offline(monkeypatch: pytest.MonkeyPatch, world: World) -> Iterator[None]:
    from nemoclaw_runtime.runtimes.fit import facts, hub

    # the fit engine reads model facts from the hub: a source that knows nothing answers at once
    monkeypatch.setattr(hub, "default_model_source", lambda settings, **kw: facts.StaticModelSource(), raising=False)
    real_wait = CancelToken.wait

    def short_wait(self: CancelToken, seconds: float, clock: Any = None) -> None:  # retries back off: not here
        real_wait(self, min(seconds, 0.01), clock)

    monkeypatch.setattr(CancelToken, "wait", short_wait)
    monkeypatch.chdir(world.root)
    yield


# --- hostile values ----------------------------------------------------------------------------------------------


def hostile_text(world: World) -> st.SearchStrategy[str]:
    fixed = [
        "", " ", "\t", "\n", "  x  ", "a\x00b", "\x1b[31mred\x1b[0m", "x\r\ny", "\u202eevil", "a\u200bb", "\x07",
        "nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "-0", "1" * 40, "99999999999999999999", "٨٠٠٠",
        "８０００", "1_000", "0x10", "+5", "²", "1.5", "1e3", "4294967296",
        "/", "/dev/zero", "/dev/null", "/dev/tty", str(world.fifo), str(world.directory), str(world.file),
        str(world.deep), "../../../../etc/passwd", "~", "~nobody/x", "C:\\x",
        f"http://user:{URL_PASSWORD}@127.0.0.1:{CLOSED}/v1", f"tcp://admin:{URL_PASSWORD}@127.0.0.1:{CLOSED}",
        f"--api-key={FLAG_SECRET}", f"--api-key {FLAG_SECRET}", HF_TOKEN, "HF_TOKEN", "NGC_API_KEY",
        "[" * 5000 + "]" * 5000, '{"a":' * 2000 + "1" + "}" * 2000, '["--model", "x"]', '["--port=1"]',
        "a" * 5000, "--privileged", "-h", "--help", "UPPER/Case:Tag", "ftp://x", "bogus://x", "ssh://u@h",
        "unix:///nonexistent/docker.sock", "all", "none", "0,1", "0,99", "vllm", "nim", "ollama", "auto",
        "ollama/ollama:0.12.6", "nemoclaw-vllm", "openai-responses",
    ]
    return st.one_of(
        st.sampled_from(fixed),
        st.text(max_size=24),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.lists(st.sampled_from(["--port", "--model", "--api-key", f"--api-key={FLAG_SECRET}", "x", "8",
                                  "--host=0.0.0.0", "--max-num-seqs"]), max_size=4).map(json.dumps),
    )


# --- the commands, found by introspection -------------------------------------------------------------------------


def _commands(group: click.Group | None = None, prefix: str = "") -> dict[str, click.Command]:
    """Every command by the words that run it; a group's subcommands too (``export kubernetes``)."""
    group = group or cli_main.cli
    ctx = click.Context(group)
    found: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            found.update(_commands(command, f"{prefix}{name} "))
        elif command is not None:
            found[f"{prefix}{name}"] = command
    return found


COMMANDS = _commands()

#: A working value for a parameter a command cannot run without, when it is not the one made hostile.
BENIGN: dict[str, list[str]] = {
    "runtime": ["vllm", "nim", "ollama"], "name": ["nemoclaw-vllm"], "base_url": [f"{CLOSED_URL}/v1"],
    "model": ["m"],
}


def _param_words(param: click.Parameter, value: str) -> tuple[list[str], list[str]]:
    """(options, positionals) that pass ``value`` to ``param`` verbatim."""
    if isinstance(param, click.Argument):
        return [], [value]
    return [f"{param.opts[0]}={value}"] if param.opts[0].startswith("--") else [param.opts[0], value], []


@st.composite
def command_line(draw: st.DrawFn, name: str, world: World) -> list[str]:
    command = COMMANDS[name]
    params = [p for p in command.params if p.name != "help"]
    values = [p for p in params if not (isinstance(p, click.Option) and p.is_flag)]
    targets = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True)) if values else []
    options: list[str] = []
    positionals: list[str] = []
    for param in params:
        if isinstance(param, click.Option) and param.is_flag:
            if draw(st.booleans()):
                options.append(param.opts[0])
            continue
        if param in targets:
            count = draw(st.integers(1, 2)) if isinstance(param, click.Argument) and param.nargs == -1 else 1
            for _ in range(count):
                more_options, more_positionals = _param_words(param, draw(hostile_text(world)))
                options += more_options
                positionals += more_positionals
        elif param.required:
            more_options, more_positionals = _param_words(param, draw(st.sampled_from(BENIGN.get(param.name or "",
                                                                                                  ["x"]))))
            options += more_options
            positionals += more_positionals
    return [*name.split(), *options, "--", *positionals] if positionals else [*name.split(), *options]


#: Invocations that read every variable: what each variable is fed to.
INVOCATIONS = [
    ["gpus"], ["models"], ["ps"], ["up", "vllm", "--dry-run"], ["up", "nim", "--dry-run"],
    ["up", "ollama", "--gpus", "none"], ["up", "vllm", "--gpus", "none"], ["pull", "vllm"], ["options"],
    ["options", "--select"], ["stop", "--all"], ["logs", "nemoclaw-vllm"],
    ["validate", "--base-url", f"{CLOSED_URL}/v1", "--model", "m"],
    *([["status"]] if "status" in COMMANDS else []),
    ["export", "kubernetes", "vllm", "--model", "nemotron-3-nano-4b"],
    ["up", "vllm", "--dry-run", "--nodes", f"local,tcp://127.0.0.1:{CLOSED}", "--nic", "lo"],
]


# --- the properties ------------------------------------------------------------------------------------------------


class Hung(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hung(f"a command ran longer than {EXAMPLE_SECONDS} s")


def check(world: World, args: list[str], env: dict[str, str | None]) -> None:
    before = world.files()
    memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runner = CliRunner()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_SECONDS)
    started = time.monotonic()
    try:
        with runner.isolation(env=env) as streams:
            code = cli_main.run(args)
            out, err = (s.getvalue().decode("utf-8", "replace") for s in streams[:2])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - started
    shown = f"args={args!r}\nexit={code}\nstdout={out[-2000:]!r}\nstderr={err[-2000:]!r}"

    assert code in DOCUMENTED, shown
    assert "Traceback" not in out + err and "internal error" not in out + err, shown
    for secret in SECRETS:
        assert secret not in out + err, f"{secret} was echoed\n{shown}"
    for line in (out + err).splitlines():
        assert not has_unsafe(line), f"unsafe characters in {line!r}\n{shown}"
    for noise in ("HTTPConnectionPool", "NewConnectionError", "[Errno", "Max retries exceeded"):
        assert noise not in out + err, f"{noise} reached the user\n{shown}"
    if "--json" in args and code != 0:
        document = json.loads(out)
        assert document["exit_code"] == code and document["message"] and document["remedy"], shown
    elif code != 0:
        errors = [line for line in err.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, shown
        assert any(line.startswith("  fix: ") for line in err.splitlines()), shown
    assert elapsed < EXAMPLE_SECONDS, shown
    assert world.files() - _written(args, code) == before, f"left behind: {world.files() - before}\n{shown}"
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory
    assert growth < MEMORY_GROWTH_KIB, f"memory grew by {growth} KiB\n{shown}"


def _written(args: list[str], code: int) -> set[Path]:
    """What a command asked to write a file (``export … -o FILE``) wrote there when it succeeded: not left behind."""
    if code != 0:
        return set()
    pairs = zip(args, args[1:], strict=False)
    return {Path(value) for flag, value in pairs if flag in ("-o", "--output")} | \
        {Path(arg.split("=", 1)[1]) for arg in args if arg.startswith(("--output=", "-o="))}


#: 25 examples per command and per variable keep the suite near ten seconds; HOSTILE_EXAMPLES=500 (and
#: HOSTILE_RANDOM=1 for a fresh seed) explores further by hand.
SETTINGS = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "25")), deadline=None,
                    derandomize=not os.environ.get("HOSTILE_RANDOM"), database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.large_base_example, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(COMMANDS))
@SETTINGS
@given(data=st.data())
def test_every_option_of_every_command_survives_hostile_values(name: str, data: st.DataObject, world: World) -> None:
    args = data.draw(command_line(name, world))
    words = len(name.split())
    if data.draw(st.booleans()):
        args = [*args[:words], "--json", *args[words:]]
    check(world, args, world.env())


VARIABLES = [setting.variable for setting in CATALOGUE]


@pytest.mark.parametrize("variable", VARIABLES)
@SETTINGS
@given(data=st.data())
def test_every_variable_survives_hostile_values(variable: str, data: st.DataObject, world: World) -> None:
    value = data.draw(hostile_text(world).filter(lambda v: "\x00" not in v))  # a real environment cannot hold NUL
    if variable == "DOCKER_HOST" and not value.strip():
        value = f"tcp://127.0.0.1:{CLOSED}"  # unset would mean the real local engine: never from a test
    invocation = data.draw(st.sampled_from(INVOCATIONS))
    args = [invocation[0], "--json", *invocation[1:]] if data.draw(st.booleans()) else list(invocation)
    check(world, args, {**world.env(), variable: value})


def test_the_walk_covers_every_command_and_variable() -> None:
    every_command = {"gpus", "models", "pull", "up", "ps", "stop", "logs", "options", "validate", "fit", "status",
                     "lock", "export kubernetes"}
    assert every_command <= set(COMMANDS)
    assert len(VARIABLES) >= 30 and "HF_ENDPOINT" in VARIABLES and "DOCKER_HOST" in VARIABLES
