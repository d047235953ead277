"""``up vllm --nodes``: what several nodes cost over one, and the weights copy to another node's engine.

A second Docker engine on this machine (tests/helpers/second_engine.py: its own socket and data root, needs root)
stands in for the second host, as in tests/integration/test_up_nodes.py; the fake vLLM image (it plays Ray) comes
from a local registry; the weights from the fake Hugging Face hub.

* copy: a ``--weights-mib`` snapshot copied into the second engine's volume by ``cluster.weights.copy_snapshot``
  (a tar streamed through a pipe) against docker-py's ``put_archive`` of the same tar built in memory first (what a
  plain copy does). Wall time and this process's peak resident memory growth for each (sampled every 10 ms):
  target time ratio ≤ 1.2 and a memory growth that does not scale with the model (a few MiB, where the plain copy
  holds the whole tar);
* start: ``up vllm --gpus none`` on one engine against ``up vllm --gpus none --nodes local,ENGINE2 --nic lo`` (Ray
  head, worker, the GPU gate, the server on the head), weights already on both, ``--runs`` each, medians: what the
  second node adds.

    sudo python bench/bench_nodes.py [--weights-mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.* (registry, second engine, fake hub, fake vLLM)

import docker  # noqa: E402
import psutil  # noqa: E402

from nemoclaw_runtime import api  # noqa: E402
from nemoclaw_runtime.kernel.clock import CancelToken  # noqa: E402
from nemoclaw_runtime.kernel.settings import Settings  # noqa: E402
from nemoclaw_runtime.runtimes import wiring  # noqa: E402
from nemoclaw_runtime.runtimes.cluster.weights import copy_snapshot  # noqa: E402
from tests.fake_servers.fake_hf import FakeHub, tiny_model_files  # noqa: E402
from tests.fake_servers.fake_vllm import build_fake_vllm_image  # noqa: E402
from tests.helpers.docker_env import free_port  # noqa: E402
from tests.helpers.registry import running_registry  # noqa: E402
from tests.helpers.second_engine import SecondEngine  # noqa: E402

MIB = 1024 * 1024
MODEL_SLUG = "nemotron-3-nano-4b"
MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"
PINNED = "3fe6dab75665a93884214ad4b1b95cf02717d081"
SNAPSHOT = ROOT / "fixtures" / "gpu" / "h100_x8.json"


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[float]]:
    """Yields a list that holds, once the block ends, the peak growth of this process's RSS over the block (MiB)."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result: list[float] = []
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result.append((max(peak[0], process.memory_info().rss) - start) / MIB)


def make_snapshot(root: Path, mib: int) -> Path:
    model = root / "hub" / "models--bench--copy"
    snapshot = model / "snapshots" / ("0" * 40)
    (model / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    with (model / "blobs" / "weights").open("wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(MIB))
    (snapshot / "model.safetensors").symlink_to("../../blobs/weights")
    return snapshot


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bench_copy(engine2: SecondEngine, image: str, snapshot: Path) -> None:
    settings = Settings.from_env({**os.environ, "DOCKER_HOST": engine2.host})
    port = wiring.open_docker(settings)
    client = docker.DockerClient(base_url=engine2.host, timeout=600)
    volumes = [f"nrt-bench-copy-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        with peak_rss_growth() as ours_mib:
            ours_s = timed(lambda: copy_snapshot(port, snapshot=snapshot, image_ref=image, volume=volumes[0],
                                                 group="nrt-bench", node=1, runtime="vllm", cancel=CancelToken()))

        def plain() -> None:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                archive.add(snapshot.parent.parent, arcname=f"hub/{snapshot.parent.parent.name}")
            container = client.containers.create(image, ["true"], volumes={volumes[1]: {
                "bind": "/root/.cache/huggingface"}})
            try:
                container.put_archive("/root/.cache/huggingface", buffer.getvalue())
            finally:
                container.remove(force=True)

        with peak_rss_growth() as plain_mib:
            plain_s = timed(plain)
        files = [f for f in snapshot.parent.parent.rglob("*") if f.is_file() and not f.is_symlink()]
        size = sum(f.stat().st_size for f in files) / MIB
        print(f"copy {size:.0f} MiB to the second engine's volume:")
        print(f"  ours (streamed tar) {ours_s:6.2f} s, peak RSS growth {ours_mib[0]:7.1f} MiB")
        print(f"  plain put_archive   {plain_s:6.2f} s, peak RSS growth {plain_mib[0]:7.1f} MiB")
        print(f"  time ratio ours/plain {ours_s / plain_s:.2f} (target ≤ 1.2); memory ours/plain "
              f"{ours_mib[0] / max(plain_mib[0], 0.1):.3f}")
    finally:
        for volume in volumes:
            with contextlib.suppress(docker.errors.APIError):
                client.volumes.get(volume).remove(force=True)
        client.close()
        port.close()


def bench_start(engine2: SecondEngine, image: str, runs: int) -> None:
    samples: dict[str, list[float]] = {"one engine": [], "two engines (--nodes)": []}
    for _ in range(runs):
        for label, nodes in (("one engine", None), ("two engines (--nodes)", f"local,{engine2.host}")):
            name = f"nrt-bench-{uuid.uuid4().hex[:8]}"
            options = {"nodes": nodes, "nic": "lo"} if nodes else {}
            try:
                started = time.perf_counter()
                api.up("vllm", model=MODEL_SLUG, image=image, name=name, gpus="none", validate=False, **options)
                samples[label].append(time.perf_counter() - started)
            finally:
                api.stop([name])
    one, two = (statistics.median(v) for v in samples.values())
    print(f"start, median of {runs} (weights already on every node):")
    print(f"  one engine {one:6.2f} s; two engines (--nodes) {two:6.2f} s; ratio {two / one:.2f} "
          f"(+{two - one:.2f} s for the Ray head, the worker's join and the GPU gate)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="nrt-bench-nodes-") as tmp, \
            running_registry(Path(tmp) / "registry") as registry, \
            contextlib.closing(FakeHub().start()) as hub:
        workdir = Path(tmp)
        os.environ.update({"HOME": str(workdir), "NEMOCLAW_STATE_DIR": str(workdir / "state"),
                           "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT), "HF_ENDPOINT": hub.url,
                           "HF_HOME": str(workdir / "hf"), "NEMOCLAW_VLLM_PORT": str(free_port()),
                           "NEMOCLAW_RAY_PORT": str(free_port())})
        hub.add_repo(MODEL_ID, tiny_model_files(), commit=PINNED)
        tag = f"nemoclaw-bench/fake-vllm-nodes:{uuid.uuid4().hex[:12]}"
        build_fake_vllm_image(client, tag)
        registry.push(client, tag, "bench/fake-vllm-nodes", "1")
        image = registry.ref("bench/fake-vllm-nodes", "1")
        (workdir / "engine2").mkdir()
        engine2 = SecondEngine(workdir / "engine2").start()
        try:
            docker.DockerClient(base_url=engine2.host).images.pull(image)
            bench_copy(engine2, image, make_snapshot(workdir / "copy", args.weights_mib))
            bench_start(engine2, image, args.runs)
        finally:
            engine2.close()
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, force=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
