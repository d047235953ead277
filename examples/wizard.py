"""A minimal onboarding wizard on the nemoclaw-runtime library: detect the GPUs, list this host's local options,
pick one (the suggested one, or KEY from argv), bring it up with a progress bar driven by the library's typed
events, validate it with a real request, and print the base URL on stdout.

    python examples/wizard.py                      # the suggested option
    python examples/wizard.py install-vllm --gpus none --name my-vllm

Everything else (model, port, image, experimental options) comes from the NEMOCLAW_* environment, exactly as for
the CLI. Ctrl-C sets a CancelToken: the library stops and cleans up; a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from nemoclaw_runtime import (
    CancelToken,
    NemoclawError,
    Settings,
    detect_gpus,
    local_options,
    select_option,
    up,
    validate,
)
from nemoclaw_runtime.kernel.events import Event, Heartbeat, PhaseChanged, Warning
from nemoclaw_runtime.kernel.events import Progress as ByteProgress


class ProgressView:
    """One callback for every long operation: a bar per download, a line per phase, heartbeats and warnings."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             console=console, transient=True)
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> ProgressView:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, ByteProgress):
            key = (event.task, event.subject)
            if key not in self.tasks:
                self.tasks[key] = self.bars.add_task(f"{event.task} {event.subject}", total=event.total_bytes)
            self.bars.update(self.tasks[key], completed=event.done_bytes, total=event.total_bytes)
        elif isinstance(event, PhaseChanged):
            self.console.print(f"[bold]==>[/] {event.message}")
        elif isinstance(event, Heartbeat):
            self.console.print(f"    still {event.phase} ({event.elapsed_s:.0f}s, {event.state})")
        elif isinstance(event, Warning):
            self.console.print(f"[yellow]warning:[/] {event.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", nargs="?", help="vllm, install-vllm, nim or ollama (default: the suggested one)")
    parser.add_argument("--gpus", default="all", help="all, none (testing without a GPU) or indices such as 0,1")
    parser.add_argument("--name", help="container name (default: the runtime's)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)  # stdout carries only the base URL
    cancel = CancelToken()

    def on_interrupt(signum: int, frame: object) -> None:
        console.print("[yellow]Cancelling… (Ctrl-C again to interrupt at once)[/]")
        cancel.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        settings = Settings.from_env(os.environ)
        inventory = detect_gpus(settings)
        for line in inventory.summary_lines:
            console.print(f"[green]✓[/] {line}")
        menu = local_options(settings, inventory=inventory)
        for number, option in enumerate(menu.options, 1):
            console.print(f"  {number}) {option.label}  [dim]({option.key}; default model {option.default_model})[/]")
        for absent in menu.absent:
            console.print(f"  [dim]- {absent.key}: {absent.message}[/]")
        choice = select_option(menu, settings, key=args.key)
        console.print(f"Using [bold]{choice.option.label}[/] with {choice.model or 'its default model'}")
        base_url, model = choice.base_url, choice.model
        if not (choice.running and choice.runtime == "vllm"):  # a running vLLM is used as it is
            with ProgressView(console) as view:
                result = up(choice.runtime, model=choice.model, gpus=args.gpus, name=args.name, validate=False,
                            settings=settings, inventory=inventory, events=view, cancel=cancel)
            base_url, model = result.base_url, result.served_model_id
        assert base_url is not None and model is not None
        checked = validate(base_url, model, settings=settings, cancel=cancel)
        console.print(f"[green]✓[/] {model} answered in {checked.latency_ms:.0f} ms ({checked.api})")
    except NemoclawError as exc:
        console.print(f"[red]Error:[/] {exc.message}")
        if exc.remedy:
            console.print(f"  fix: {exc.remedy}")
        return exc.exit_code
    print(base_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
