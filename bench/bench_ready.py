"""Benchmark (not a test): how soon `up vllm` returns once the server can answer, and how fast a repeat `up` is.

    python bench/bench_ready.py [--runs 5] [--delay 3]

Needs the Docker engine (scripts/ensure-docker.sh) and the test support code (run from the repository root). For
each run it starts the fake vLLM image (readiness delayed by --delay s) through the real pipeline and measures
*time-to-ready overhead*: the engine's timestamp of the server's "Application startup complete." log line → the
moment `up` returned. The baseline is NemoClaw's loop, a `/v1/models` poll every 5 s from container start, measured
the same way against the same image. It also times an idempotent `up` (same spec already running: reused).
Everything is printed as medians and ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import httpx  # noqa: E402

from nemoclaw_runtime.kernel.settings import Settings  # noqa: E402
from nemoclaw_runtime.runtimes import pipeline  # noqa: E402
from tests.fake_servers.fake_hf import FakeHub, tiny_model_files  # noqa: E402
from tests.fake_servers.fake_vllm import fake_vllm_files, serve_command  # noqa: E402
from tests.helpers.docker_env import free_port, unique_name  # noqa: E402
from tests.helpers.images import build_busybox_image  # noqa: E402
from tests.helpers.registry import running_registry  # noqa: E402

MODEL_SLUG = "nemotron-3-nano-4b"
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"


def pinned_revision() -> str | None:
    """The commit the registry pins the model to: the fake hub must serve that one (the prefetch asks for it)."""
    from nemoclaw_runtime.registry import load_registry

    entry = load_registry().find_vllm_model(MODEL_SLUG)
    return entry.hf_revision if entry is not None else None
READY_LINE = "Application startup complete."
NEMOCLAW_POLL_S = 5.0


def ready_line_time(container: docker.models.containers.Container) -> float:
    """The engine's timestamp (epoch seconds) of the server's ready line."""
    for raw in container.logs(timestamps=True).decode(errors="replace").splitlines():
        stamp, _, text = raw.partition(" ")
        if READY_LINE in text:
            return _parse_stamp(stamp)
    raise RuntimeError("the fake vLLM never logged its ready line")


def _parse_stamp(stamp: str) -> float:
    # RFC 3339 with nanoseconds: keep microseconds for datetime.
    head, _, frac = stamp.rstrip("Z").partition(".")
    parsed = dt.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    return parsed.timestamp()


def run_ours(client: docker.DockerClient, settings: Settings, image: str, port: int) -> tuple[float, float]:
    """One `up` through the pipeline: (time-to-ready overhead, idempotent repeat duration)."""
    name = unique_name("bench-vllm")
    request = pipeline.make_request("vllm", model=MODEL_SLUG, image=image, name=name, gpus="none", port=port,
                                    validate=False)
    try:
        pipeline.up(request, settings=settings)
        returned = time.time()
        overhead = returned - ready_line_time(client.containers.get(name))
        started = time.perf_counter()
        result = pipeline.up(request, settings=settings)
        repeat = time.perf_counter() - started
        assert result.reused
        return overhead, repeat
    finally:
        _remove(client, name)


def run_fixed_poll(client: docker.DockerClient, image: str, port: int) -> float:
    """NemoClaw's readiness: poll /v1/models now and then every 5 s; overhead measured the same way."""
    name = unique_name("bench-poll")
    container = client.containers.run(image, serve_command(MODEL_ID, max_model_len=4096), name=name, detach=True,
                                      ports={"8000/tcp": ("127.0.0.1", port)})
    try:
        for _ in range(120):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
                if response.status_code == 200 and isinstance(response.json().get("data"), list):
                    return time.time() - ready_line_time(container)
            except httpx.HTTPError:
                pass
            time.sleep(NEMOCLAW_POLL_S)
        raise RuntimeError("the fake vLLM never became ready")
    finally:
        _remove(client, name)


def _remove(client: docker.DockerClient, name: str) -> None:
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay", type=int, default=3, help="seconds the fake vLLM takes to load")
    args = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp, running_registry(Path(tmp) / "registry") as registry:
        tag = f"nemoclaw-bench/fake-vllm:{int(time.time())}"
        build_busybox_image(client, tag, fake_vllm_files(),
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "FAKE_VLLM_DELAY_S": str(args.delay)},
                            cmd=["vllm"])
        registry.push(client, tag, "bench/fake-vllm", "1")
        image = registry.ref("bench/fake-vllm", "1")
        hub = FakeHub().start()
        try:
            hub.add_repo(MODEL_ID, tiny_model_files(), commit=pinned_revision())
            settings = Settings.from_env({"HOME": tmp, "HF_ENDPOINT": hub.url, "HF_HOME": f"{tmp}/hf",
                                          "NEMOCLAW_GPU_SNAPSHOT": str(ROOT / "fixtures/gpu/h100_x8.json")})
            ours = [run_ours(client, settings, image, free_port()) for _ in range(args.runs)]
            polled = [run_fixed_poll(client, image, free_port()) for _ in range(args.runs)]
        finally:
            hub.close()
            client.images.remove(tag, force=True)
            client.images.remove(image, force=True)
    overhead = statistics.median(o for o, _ in ours)
    repeat = statistics.median(r for _, r in ours)
    baseline = statistics.median(polled)
    print(f"runs: {args.runs}, fake load time {args.delay} s")
    print(f"time-to-ready overhead, nemoclaw-runtime up: median {overhead * 1000:.0f} ms "
          f"(all: {', '.join(f'{o * 1000:.0f}' for o, _ in ours)} ms)")
    print(f"time-to-ready overhead, 5 s fixed poll:      median {baseline * 1000:.0f} ms "
          f"(all: {', '.join(f'{p * 1000:.0f}' for p in polled)} ms)")
    print(f"ratio ours / fixed poll: {overhead / baseline:.3f}  "
          "(target: up returns <= 250 ms after the server answers)")
    print(f"idempotent up (same spec running, reused): median {repeat * 1000:.0f} ms")


if __name__ == "__main__":
    main()
