"""How long does ``status`` take over 10 servers, some of them hung?

Starts ``--count`` managed fake vLLM containers (the FROM-scratch busybox image of fixtures/images/fake-vllm, a
unique bench label, 127.0.0.1 ports): in the "mixed" fleet ``--hung`` of them accept and never answer, one answers
``/health`` 503 and one answers garbage on ``/metrics``; the "healthy" fleet has none of that. Then times, ``--runs``
times each, interleaved:

* ``collect_status(settings, NAMES, docker=engine, http=client)`` — the library call, engine and client warm;
* ``nemoclaw-runtime status NAMES --json`` in-process (CLI parsing, a fresh engine connection, JSON rendering).

Prints the median and the worst wall time of each, and the health counts of the last sample. Removes everything it
created, even on Ctrl-C.

    python bench/bench_status.py [--count 10] [--hung 3] [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fake_servers / tests.helpers (the busybox image builder)

import docker  # noqa: E402
import httpx  # noqa: E402

from nemoclaw_runtime.cli import main as cli_main  # noqa: E402
from nemoclaw_runtime.kernel.settings import Settings  # noqa: E402
from nemoclaw_runtime.runtimes import wiring  # noqa: E402
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager  # noqa: E402
from nemoclaw_runtime.runtimes.docker.spec import (  # noqa: E402
    LABEL_MODEL,
    LABEL_SERVED_MODEL,
    ContainerSpec,
    GpuRequest,
    PortBinding,
)
from nemoclaw_runtime.runtimes.status.collect import collect_status  # noqa: E402
from nemoclaw_runtime.runtimes.status.gpu_usage import NvmlProcessReader  # noqa: E402
from tests.fake_servers.fake_vllm import build_fake_vllm_image, serve_command  # noqa: E402
from tests.helpers.docker_env import free_port, session_labels  # noqa: E402
from tests.helpers.images import unique_tag  # noqa: E402

MODEL = "acme/bench-model"
READY_WITHIN_S = 60.0


def start_fleet(settings: Settings, image: str, prefix: str, env_of: list[dict[str, str]],
                labels: dict[str, str]) -> list[str]:
    engine = wiring.open_docker(settings)
    manager = DockerContainerManager(engine, settings, stop_timeout_s=2)
    names = []
    try:
        for i, env in enumerate(env_of):
            name = f"{prefix}-{i:02d}"
            spec = ContainerSpec(name=name, runtime="vllm", image=image, command=tuple(serve_command(MODEL)),
                                 env=tuple(env.items()), gpus=GpuRequest("none"), restart_policy=None,
                                 labels=((LABEL_MODEL, MODEL), (LABEL_SERVED_MODEL, MODEL), *labels.items()),
                                 ports=(PortBinding(8000, free_port()),))
            manager.ensure_running(spec)
            names.append(name)
        deadline = time.monotonic() + READY_WITHIN_S
        waiting = set(names)
        while waiting and time.monotonic() < deadline:
            waiting = {n for n in waiting if not any("Application startup complete" in line
                                                      for line in engine.container_logs(n, tail=50))}
            time.sleep(0.1)
        if waiting:
            raise SystemExit(f"not serving within {READY_WITHIN_S}s: {sorted(waiting)}")
    finally:
        engine.close()
    return names


def cli_status(names: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli_main.run(["status", *names, "--json"])
    if code != 0:
        raise SystemExit(f"status exited {code}: {out.getvalue()}")


def measure(label: str, settings: Settings, names: list[str], runs: int) -> None:
    engine = wiring.open_docker(settings)
    reader = NvmlProcessReader()
    last = None
    try:
        with httpx.Client(trust_env=False) as http:
            def library() -> None:
                nonlocal last
                last = collect_status(settings, names, docker=engine, http=http, gpu_reader=reader)

            cases: dict[str, Callable[[], object]] = {
                "collect_status() (library, warm)": library,
                "status --json (CLI, in-process)": lambda: cli_status(names),
            }
            for fn in cases.values():  # warm connections and imports
                fn()
            results: dict[str, list[float]] = {case: [] for case in cases}
            for _ in range(runs):  # interleaved, so a noisy moment hits every case alike
                for case, fn in cases.items():
                    started = time.perf_counter()
                    fn()
                    results[case].append((time.perf_counter() - started) * 1000)
    finally:
        reader.close()
        engine.close()
    print(f"{label}: {len(names)} servers, {runs} runs each")
    for case, samples in results.items():
        print(f"  {case:36s} median {statistics.median(samples):7.1f} ms   worst {max(samples):7.1f} ms")
    if last is not None:
        counts = Counter(s.health for s in last.servers)
        print("  last sample: " + ", ".join(f"{n} {health}" for health, n in sorted(counts.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--hung", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if args.count < args.hung + 2:
        parser.error("--count must leave room for the hung, the 503 and the garbage servers")

    cli_main.COMMANDS.setdefault("status", "nemoclaw_runtime.cli.status:status")
    bench_id = uuid.uuid4().hex
    labels = {**session_labels(bench_id), "io.nemoclaw.bench": bench_id}
    settings = Settings.from_env()
    client = docker.from_env(timeout=120)
    image = unique_tag("bench-fake-vllm")
    healthy = [{} for _ in range(args.count)]
    mixed: list[dict[str, str]] = [{"FAKE_VLLM_HANG": "1", "FAKE_VLLM_HANG_S": "600"} for _ in range(args.hung)]
    mixed += [{"FAKE_VLLM_HEALTH": "503"}, {"FAKE_VLLM_METRICS": "garbage"}]
    mixed += [{} for _ in range(args.count - len(mixed))]
    try:
        build_fake_vllm_image(client, image)
        fleets = {"healthy": start_fleet(settings, image, f"nrt-bench-ok-{bench_id[:6]}", healthy, labels),
                  f"mixed ({args.hung} hung, 1 engine-dead, 1 garbage metrics)":
                      start_fleet(settings, image, f"nrt-bench-mix-{bench_id[:6]}", mixed, labels)}
        for label, names in fleets.items():
            measure(label, settings, names, args.runs)
    finally:
        for container in client.containers.list(all=True, filters={"label": f"io.nemoclaw.bench={bench_id}"}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)
        client.close()


if __name__ == "__main__":
    main()
