"""The up pipeline over fakes: the reuse fast path, and settings the pipeline itself reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.kernel.events import Event, Info, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.drivers.steps import effective_context_window
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

SNAPSHOT = Path(__file__).resolve().parents[2] / "fixtures" / "gpu" / "h100_x8.json"
IMAGE = "127.0.0.1:5000/test/vllm:1"
DIGEST = "sha256:" + "ab" * 32
SERVED = "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"


class TagPullStore:
    """An image store that could not pin a digest (no index): the image is pulled by tag."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker, self.pulls = docker, 0

    def image_present(self, ref: str) -> bool:
        return self.docker.image_inspect(ref) is not None

    def ensure_image(self, ref: str, *, events: Any, cancel: CancelToken) -> PulledImage:
        self.pulls += 1
        self.docker.add_image(ref, digest=DIGEST)  # the engine still records the tag's digest in RepoDigests
        return PulledImage(ref, None, "linux/amd64", pulled=True)


def serving(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": SERVED, "max_model_len": 4096}]})


def test_a_tag_pulled_container_is_reused_without_a_second_pull(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                                  "NEMOCLAW_VLLM_IMAGE": IMAGE})
    docker = FakeDocker()
    store = TagPullStore(docker)
    clock = SystemClock()
    with httpx.Client(transport=httpx.MockTransport(serving)) as http:
        svc = pipeline.Services(settings, docker, store, DockerContainerManager(docker, settings, clock), http,
                                clock, owned=False)
        request = pipeline.make_request("vllm", model="nemotron-3-nano-4b", port=free_port(), gpus="none",
                                        prefetch=False, validate=False)
        inventory = GpuInventory.from_snapshot(json.loads(SNAPSHOT.read_text()))
        first = pipeline.up(request, settings=settings, inventory=inventory, services=svc)
        second = pipeline.up(request, settings=settings, inventory=inventory, services=svc)
    assert not first.reused and second.reused and second.container_id == first.container_id
    assert store.pulls == 1  # the fast path: no second pull, no engine write


@pytest.mark.parametrize(("raw", "expected"), [("32768", 32768), (" 8192 ", 8192), ("²", None), ("0", None),
                                               ("16777217", None), ("abc", None), ("32k", 32000)])
def test_configured_context_window_is_validated_never_crashes(raw: str, expected: int | None) -> None:
    events: list[Event] = []
    if expected is None:  # checked where it enters: exit 2 naming the variable (issue 12), never silently ignored
        with pytest.raises(InvalidSetting) as caught:
            Settings.from_env({"NEMOCLAW_CONTEXT_WINDOW": raw})
        assert caught.value.exit_code == 2 and caught.value.details["variable"] == "NEMOCLAW_CONTEXT_WINDOW"
        settings = Settings(context_window=raw)  # a library caller's own Settings: still never crashes
    else:
        settings = Settings.from_env({"NEMOCLAW_CONTEXT_WINDOW": raw})
    assert effective_context_window(settings, 1000, events.append) == (expected or 1000)
    kinds = {type(e) for e in events}
    assert kinds == ({Info} if expected else {Warning})
