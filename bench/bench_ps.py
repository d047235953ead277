"""How much does ``ps`` cost over docker-py's own label-filtered listing?

Starts ``--count`` managed containers (a tiny busybox sleeper, runtime vllm, labelled with this run, on
127.0.0.1), then times, ``--runs`` times each, interleaved:

* ``list_managed(settings, docker=engine, runtime=R)`` — the library call;
* ``nemoclaw-runtime ps --json --runtime R`` in-process (CLI parsing, a fresh engine connection, JSON rendering);
* docker-py ``client.containers.list(all=True, filters={"label": [...]})`` (list + inspect each, like ours);
* the same with ``sparse=True`` (one list call, no inspect): the floor.

Prints the medians and the ratios to docker-py. Removes everything it created, even on Ctrl-C.

    python bench/bench_ps.py [--count 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support (the busybox image builder)

import docker  # noqa: E402

from nemoclaw_runtime.cli.main import run as cli_run  # noqa: E402
from nemoclaw_runtime.kernel.settings import Settings  # noqa: E402
from nemoclaw_runtime.runtimes.docker.adapter import connect  # noqa: E402
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager, list_managed  # noqa: E402
from nemoclaw_runtime.runtimes.docker.spec import (  # noqa: E402
    LABEL_MANAGED,
    LABEL_RUNTIME,
    ContainerSpec,
    GpuRequest,
    PortBinding,
)
from tests.helpers.docker_env import free_port, session_labels  # noqa: E402
from tests.helpers.images import build_busybox_image, unique_tag  # noqa: E402

SLEEPER = "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), samples


def start_fleet(settings: Settings, image: str, runtime: str, count: int, labels: dict[str, str]) -> list[str]:
    engine = connect(settings)
    manager = DockerContainerManager(engine, settings, stop_timeout_s=2)
    names = []
    try:
        for i in range(count):
            name = f"nrt-bench-{runtime}-{i:02d}"
            spec = ContainerSpec(name=name, runtime=runtime, image=image, command=(), gpus=GpuRequest("none"),
                                 restart_policy=None, labels=tuple(labels.items()),
                                 ports=(PortBinding(8000, free_port()),))
            manager.ensure_running(spec)
            names.append(name)
    finally:
        engine.close()
    return names


def cli_ps(runtime: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli_run(["ps", "--json", "--runtime", runtime])
    if code != 0:
        raise SystemExit(f"ps exited {code}: {out.getvalue()}")


def measure(settings: Settings, client: docker.DockerClient, runtime: str, count: int, runs: int) -> None:
    engine = connect(settings)
    filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_RUNTIME}={runtime}"]}
    cases: dict[str, Callable[[], object]] = {
        "list_managed()": lambda: list_managed(settings, docker=engine, runtime=runtime),
        "ps --json (CLI, in-process)": lambda: cli_ps(runtime),
        "docker-py containers.list": lambda: client.containers.list(all=True, filters=filters),
        "docker-py containers.list(sparse)": lambda: client.containers.list(all=True, filters=filters, sparse=True),
    }
    try:
        assert len(list_managed(settings, docker=engine, runtime=runtime)) == len(client.containers.list(
            all=True, filters=filters)) >= count
        for fn in cases.values():  # warm connections and imports
            fn()
        results = {label: [] for label in cases}  # type: dict[str, list[float]]
        for _ in range(runs):  # interleaved, so a noisy moment hits every case alike
            for label, fn in cases.items():
                results[label].extend(median_ms(fn, 1)[1])
    finally:
        engine.close()
    baseline = statistics.median(results["docker-py containers.list"])
    print(f"{count} managed containers, {runs} runs each (median):")
    for label, samples in results.items():
        med = statistics.median(samples)
        print(f"  {label:36s} {med:8.1f} ms   x{med / baseline:5.2f} vs docker-py containers.list")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    bench_id = uuid.uuid4().hex
    # A real runtime (an unknown one is exit 2 since --runtime is validated); every case lists the same set: all
    # managed vllm containers, which on a bench machine are this run's.
    runtime = "vllm"
    labels = {**session_labels(bench_id), "io.nemoclaw.bench": bench_id}
    settings = Settings.from_env()
    client = docker.from_env(timeout=120)
    image = unique_tag("bench-sleeper")
    try:
        build_busybox_image(client, image, cmd=["/bin/sh", "-c", SLEEPER], labels={"io.nemoclaw.bench": bench_id})
        start_fleet(settings, image, runtime, args.count, labels)
        measure(settings, client, runtime, args.count, args.runs)
    finally:
        for container in client.containers.list(all=True, filters={"label": f"io.nemoclaw.bench={bench_id}"}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)
        client.close()


if __name__ == "__main__":
    main()
