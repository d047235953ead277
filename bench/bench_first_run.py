"""The first ``up vllm``: the image pull and the weights download at the same time, not one after the other.

Builds a fake vLLM image padded with ``--image-mib`` of random data (one layer), pushes it to a local registry
(Debian's docker-registry on 127.0.0.1) and serves it through tests/helpers/stall_proxy.py in trickle mode
(``--registry-rate-mib``); the fake Hugging Face hub (tests/fake_servers/fake_hf.py) serves the model's weights plus a
``--weights-mib`` file at ``--hub-rate-mib`` (one 64 KiB chunk per delay). The defaults make the two take about as
long, where running them one after the other costs most. Then, cold every time (image removed, empty HF_HOME):

* pull alone: ``pipeline.pull("vllm", image=REF)`` (what ``nemoclaw-runtime pull vllm`` does);
* weights alone: ``transfer.weights.prefetch`` (what ``up vllm`` downloads on the host);
* concurrent: a whole first ``up vllm --gpus none --no-validate``; its downloads phase runs from the first
  ``weights``/``pull`` phase event to the ``start`` phase, and the whole ``up`` adds the container's start and
  readiness.

Prints each, the ratio of the downloads phase to max(pull alone, weights alone) (target ≤ 1.1; one after the other
it was their sum), and removes everything it created, even on Ctrl-C.

    python bench/bench_first_run.py [--image-mib 16] [--weights-mib 16] [--registry-rate-mib 2] [--hub-rate-mib 0.6]
                                    [--runs 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.* (registry, stall proxy, fake hub, fake vLLM)

import docker  # noqa: E402

from nemoclaw_runtime.kernel.clock import CancelToken  # noqa: E402
from nemoclaw_runtime.kernel.events import Event, PhaseChanged, discard  # noqa: E402
from nemoclaw_runtime.kernel.settings import Settings  # noqa: E402
from nemoclaw_runtime.runtimes import pipeline  # noqa: E402
from nemoclaw_runtime.runtimes.transfer import weights  # noqa: E402
from tests.fake_servers.fake_hf import FakeHub, tiny_model_files  # noqa: E402
from tests.fake_servers.fake_vllm import fake_vllm_files  # noqa: E402
from tests.helpers.docker_env import free_port  # noqa: E402
from tests.helpers.images import build_busybox_image  # noqa: E402
from tests.helpers.registry import running_registry  # noqa: E402
from tests.helpers.stall_proxy import StallProxy  # noqa: E402

MIB = 1024 * 1024
CHUNK = 64 * 1024
MODEL_ID = "bench/first-run-model"  # an hf: model, so no registry pin asks the fake hub for a revision it lacks
SNAPSHOT = ROOT / "fixtures" / "gpu" / "h100_x8.json"


def remove_image(client: docker.DockerClient, ref: str) -> None:
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        client.images.remove(client.images.get(ref).id, force=True)


def point_hub_at(url: str) -> None:
    """huggingface_hub reads HF_ENDPOINT once, at import: set both (as FakeHub.patch_default_endpoint does)."""
    from huggingface_hub import constants

    os.environ["HF_ENDPOINT"] = url
    constants.ENDPOINT = url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"


@contextlib.contextmanager
def fresh_hf_home(workdir: Path) -> Iterator[Settings]:
    home = workdir / f"hf-{uuid.uuid4().hex[:8]}"
    os.environ["HF_HOME"] = str(home)
    try:
        yield Settings.from_env()
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def first_up(client: docker.DockerClient, ref: str, settings: Settings) -> tuple[float, float]:
    """One cold ``up vllm``: (downloads phase, whole up) in seconds; the container is removed afterwards."""
    name = f"nrt-bench-{uuid.uuid4().hex[:8]}"
    marks: dict[str, float] = {}

    def sink(event: Event) -> None:
        if isinstance(event, PhaseChanged):
            marks.setdefault(event.phase, time.perf_counter())

    request = pipeline.make_request("vllm", model=f"hf:{MODEL_ID}", image=ref, gpus="none", port=free_port(), name=name,
                                    validate=False, timeout_s=120)
    started = time.perf_counter()
    try:
        pipeline.up(request, settings=settings, events=sink, cancel=CancelToken())
        total = time.perf_counter() - started
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    began = min(marks[p] for p in ("weights", "pull") if p in marks)
    return marks["start"] - began, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-mib", type=int, default=16)
    parser.add_argument("--weights-mib", type=int, default=16)
    parser.add_argument("--registry-rate-mib", type=float, default=2.0,
                        help="the trickle proxy's setting, MiB/s per blob (it pauses 0.1 s per upstream chunk too, so "
                             "the rate it reaches is lower: about 0.6 MiB/s)")
    parser.add_argument("--hub-rate-mib", type=float, default=0.6, help="the fake hub's rate, MiB/s per file")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rate, hub_rate = int(args.registry_rate_mib * MIB), int(args.hub_rate_mib * MIB)
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="nrt-bench-first-") as tmp, \
            running_registry(Path(tmp) / "registry") as registry, \
            contextlib.closing(FakeHub().start()) as hub:
        workdir = Path(tmp)
        os.environ.update({"HOME": str(workdir), "NEMOCLAW_STATE_DIR": str(workdir / "state"),
                           "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT)})
        point_hub_at(hub.url)
        hub.add_repo(MODEL_ID, {**tiny_model_files(), "padding.bin": os.urandom(args.weights_mib * MIB)})
        hub.slow_downloads(CHUNK / hub_rate, CHUNK)

        local = f"nemoclaw-bench/fake-vllm:{uuid.uuid4().hex[:12]}"
        image_id = build_busybox_image(client, local, {**fake_vllm_files(), "/padding.bin": os.urandom(
            args.image_mib * MIB)}, env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            cmd=["vllm", "serve", "fake/model", "--port", "8000", "--max-model-len", "4096"])
        registry.push(client, local, "bench/fake-vllm", "1")
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image_id, force=True)
        with StallProxy(registry.host, mode="trickle", trickle_bytes_per_s=rate) as proxy:
            ref = f"{proxy.host}/bench/fake-vllm:1"
            print(f"image {args.image_mib} MiB (trickle proxy set to {args.registry_rate_mib:g} MiB/s), weights "
                  f"{args.weights_mib} MiB (hub at {args.hub_rate_mib:g} MiB/s)")
            samples: dict[str, list[float]] = {"pull alone": [], "weights alone": [], "concurrent (downloads)": [],
                                               "concurrent (whole up)": []}
            try:
                for _ in range(args.runs):
                    remove_image(client, ref)
                    with fresh_hf_home(workdir) as settings:
                        samples["pull alone"].append(timed(lambda: pipeline.pull("vllm", image=ref,
                                                                                 settings=settings)))
                        samples["weights alone"].append(timed(lambda: weights.prefetch(
                            MODEL_ID, token=None, settings=settings, events=discard, cancel=CancelToken())))
                    remove_image(client, ref)
                    with fresh_hf_home(workdir) as settings:
                        downloads, total = first_up(client, ref, settings)
                    samples["concurrent (downloads)"].append(downloads)
                    samples["concurrent (whole up)"].append(total)
            finally:
                remove_image(client, ref)
    medians: dict[str, Any] = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"  {name:24s} median {medians[name]:6.2f} s   runs {', '.join(f'{v:.2f}' for v in values)}")
    longest = max(medians["pull alone"], medians["weights alone"])
    print(f"  one after the other would be ~{medians['pull alone'] + medians['weights alone']:.2f} s")
    print(f"  ratio downloads / max(pull, weights): {medians['concurrent (downloads)'] / longest:.3f} "
          "(target <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
