"""What does the digest-pinned, watched pull cost over docker-py's plain pull? And how fast does a stall end?

1. Throughput. Builds a ``--size-mib`` image (default 1024) of ``--layers`` random-data layers (FROM scratch, one
   COPY per layer), pushes it to a local registry (Debian's docker-registry on 127.0.0.1), removes it, then pulls
   it cold ``--runs`` times each, interleaved:

   * ``nemoclaw-runtime pull ollama --image REF --json`` in-process (manifest resolution over httpx, presence
     check, the pinned pull with the watchdog thread and throttled progress events, the tag back);
   * docker-py ``client.api.pull(repo, tag, stream=True, decode=True)`` consumed to the end.

   The image is removed between runs, so every run downloads and extracts everything. Prints medians and the
   ratio (target ≤ 1.05).

2. Stall latency. For each window in ``--stall-windows``, pulls a small image through a proxy that stops sending
   blob bytes after 1 MB, and reports the time from the stall to PullStalled (expected: window + a fraction of a
   second; the bound the tests use is window + 2 s).

Removes everything it created, even on Ctrl-C.

    python bench/bench_pull.py [--size-mib 1024] [--layers 6] [--runs 3] [--stall-windows 2,5]
    python bench/bench_pull.py --size-mib 64 --runs 3          # a quick check
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
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support (registry, stall proxy)

import docker  # noqa: E402

from nemoclaw_runtime.cli.main import run as cli_run  # noqa: E402
from nemoclaw_runtime.kernel.errors import PullStalled  # noqa: E402
from nemoclaw_runtime.kernel.settings import Settings  # noqa: E402
from nemoclaw_runtime.runtimes.docker.adapter import connect  # noqa: E402
from nemoclaw_runtime.runtimes.transfer.image_pull import pull_image  # noqa: E402
from tests.helpers.docker_env import session_labels  # noqa: E402
from tests.helpers.registry import LocalRegistry, running_registry  # noqa: E402
from tests.helpers.stall_proxy import StallProxy  # noqa: E402

MIB = 1024 * 1024


class RandomReader(io.RawIOBase):
    """``size`` random bytes, read in chunks (the context never sits in memory whole)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, 4 * MIB)
        buffer[:n] = os.urandom(n)
        self.left -= n
        return n


def build_random_image(client: docker.DockerClient, tag: str, size: int, layers: int, workdir: Path) -> str:
    per_layer = size // layers
    context = workdir / "context.tar"
    dockerfile = "FROM scratch\n" + "".join(f"COPY l{i}.bin /l{i}.bin\n" for i in range(layers))
    with tarfile.open(context, "w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
        for i in range(layers):
            info = tarfile.TarInfo(f"l{i}.bin")
            info.size = per_layer
            tar.addfile(info, io.BufferedReader(RandomReader(per_layer)))
    with context.open("rb") as handle:
        for event in client.api.build(fileobj=handle, custom_context=True, tag=tag, rm=True, forcerm=True,
                                      labels=session_labels(), decode=True):
            if "error" in event:
                raise RuntimeError(f"build failed: {event['error']}")
    context.unlink()
    return str(client.images.get(tag).id)


def publish(client: docker.DockerClient, registry: LocalRegistry, size: int, layers: int, workdir: Path) -> str:
    """Build, push, and remove locally; returns the registry reference."""
    local = f"nemoclaw-bench/pull-src:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    image_id = build_random_image(client, local, size, layers, workdir)
    repo = f"bench/{uuid.uuid4().hex[:10]}"
    registry.push(client, local, repo, "1.0")
    client.images.remove(image_id, force=True)
    print(f"  built and pushed {size // MIB} MiB in {layers} layers in {time.monotonic() - started:.0f} s")
    return f"{registry.host}/{repo}:1.0"


def remove_image(client: docker.DockerClient, ref: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.images.remove(client.images.get(ref).id, force=True)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ours(ref: str) -> Callable[[], object]:
    def pull() -> None:
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
            code = cli_run(["pull", "ollama", "--image", ref, "--json"])
        if code != 0:
            raise RuntimeError(f"nemoclaw-runtime pull exited {code}: {sink.getvalue()[-400:]}")

    return pull


def plain(client: docker.DockerClient, ref: str) -> Callable[[], object]:
    repo, tag = ref.rsplit(":", 1)

    def pull() -> None:
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError(event["error"])

    return pull


def throughput(client: docker.DockerClient, ref: str, runs: int) -> None:
    samples: dict[str, list[float]] = {"nemoclaw-runtime pull": [], "docker-py pull": []}
    for run in range(runs):
        order = [("nemoclaw-runtime pull", ours(ref)), ("docker-py pull", plain(client, ref))]
        for name, fn in order if run % 2 == 0 else reversed(order):
            remove_image(client, ref)
            samples[name].append(timed(fn))
        remove_image(client, ref)
    ours_s, plain_s = (statistics.median(samples[k]) for k in samples)
    for name, values in samples.items():
        print(f"  {name:22s} median {statistics.median(values):6.2f} s   runs {', '.join(f'{v:.2f}' for v in values)}")
    print(f"  ratio ours/docker-py: {ours_s / plain_s:.3f} (target <= 1.05)")


def stall_latency(client: docker.DockerClient, registry: LocalRegistry, windows: list[float], workdir: Path) -> None:
    ref = publish(client, registry, 16 * MIB, 1, workdir)
    for window in windows:
        settings = Settings.from_env({"HOME": str(workdir)}).replace(pull_stall_timeout=window,
                                                                     pull_quiet_timeout=window * 10)
        with StallProxy(registry.host, mode="stall", stall_after=1 * MIB) as proxy:
            proxied = ref.replace(registry.host, proxy.host, 1)
            try:
                with contextlib.closing(connect(settings)) as port:
                    pull_image(proxied, settings, port=port)
                print(f"  window {window:4.1f} s: the pull completed?!")
            except PullStalled:
                latency = time.monotonic() - (proxy.first_stall_at or time.monotonic())
                print(f"  window {window:4.1f} s: PullStalled {latency:5.2f} s after the bytes stopped "
                      f"(overhead {latency - window:+.2f} s)")
        remove_image(client, proxied)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as folder:
        yield Path(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stall-windows", default="2,5")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    with workspace() as workdir, running_registry(workdir / "registry") as registry:
        os.environ["HOME"] = str(workdir)  # the CLI reads its settings from here; no docker config of the user
        ref = None
        try:
            if not args.skip_throughput:
                print(f"Throughput: {args.size_mib} MiB, {args.layers} layers, {args.runs} cold runs each")
                ref = publish(client, registry, args.size_mib * MIB, args.layers, workdir)
                throughput(client, ref, args.runs)
            windows = [float(w) for w in args.stall_windows.split(",") if w.strip()]
            if windows:
                print("Stall detection latency")
                stall_latency(client, registry, windows, workdir)
        finally:
            if ref:
                remove_image(client, ref)
    client.close()


if __name__ == "__main__":
    main()
