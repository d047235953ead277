"""The pieces of `up --nodes` on the fake engine: the records, the weights copy (marked when whole, skipped when
there, cancellable, never over a container that is not ours), the Ray watch (GPUs from `ray status`, a node
that stops or vanishes, the join's time budget), the group clean-up (only our labelled containers) and `stop` /
`ps` with a node that does not answer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled, ContainerExited, DockerUnavailable, NameTaken, ReadinessTimeout
from nemoclaw_runtime.kernel.events import Event
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.cluster import ops, records
from nemoclaw_runtime.runtimes.cluster.nodes import Node, parse_nodes
from nemoclaw_runtime.runtimes.cluster.start import remove_group
from nemoclaw_runtime.runtimes.cluster.watch import NodeContainer, RayCluster, ray_gpus, wait_for_gpus
from nemoclaw_runtime.runtimes.cluster.weights import COMPLETE_MARK, copy_snapshot, snapshot_in_volume
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest
from tests.fakes.clock import FakeClock
from tests.fakes.fake_docker import FakeDocker

DIGEST = "sha256:" + "a" * 64
IMAGE = f"registry.example/vllm@{DIGEST}"
GROUP = "io.nemoclaw.runtime.group"
RAY_STATUS = """======== Autoscaler status: 2026-12-02 12:00:00 ========
Resources
---------------------------------------------------------------
Usage:
 0.0/16.0 CPU
 0.0/{gpus} GPU
 0B/1.2GiB memory
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"NEMOCLAW_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)})


def _snapshot(tmp_path: Path) -> Path:
    model = tmp_path / "hub" / "models--org--tiny"
    snapshot = model / "snapshots" / "abc123"
    (model / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (model / "blobs" / "deadbeef").write_bytes(b"x" * 4096)
    (model / "blobs" / "half.incomplete").write_bytes(b"partial")
    (snapshot / "config.json").symlink_to("../../blobs/deadbeef")
    (model / "snapshots" / "older").mkdir()
    (model / "snapshots" / "older" / "config.json").write_text("{}")
    return snapshot


def _run_spec(fake: FakeDocker, name: str, labels: dict[str, str]) -> str:
    fake.add_image("busybox:latest")
    spec = ContainerSpec(name=name, runtime="vllm", image="busybox:latest", command=("sleep", "1"),
                         labels=tuple(labels.items()), gpus=GpuRequest("none"))
    container = fake.create_container(spec)
    fake.start_container(container)
    return container


# --- records -------------------------------------------------------------------------------------------------------


def test_a_record_round_trips_and_a_bad_one_is_ignored(settings: Settings) -> None:
    record = records.GroupRecord("demo", "vllm", "nemotron-3-nano-4b", parse_nodes("local,tcp://10.0.0.2:2375"))
    path = records.write_record(settings, record)
    assert records.read_record(settings, "demo") == record and path.stat().st_mode & 0o777 == 0o644
    for bad in ({"schema": 1, "name": "demo", "runtime": "vllm", "model": "m", "nodes": []},
                {"schema": 1, "name": "other", "runtime": "vllm", "model": "m", "nodes": ["local", "tcp://h:1"]},
                {"schema": 1, "name": "demo", "runtime": "vllm", "model": "m", "nodes": ["local", "ftp://h"]}):
        path.write_text(json.dumps(bad))
        assert records.read_record(settings, "demo") is None
        assert records.read_records(settings) == []


# --- the weights copy ----------------------------------------------------------------------------------------------


def test_the_copy_sends_this_snapshot_marks_it_last_and_is_skipped_once_there(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.add_image("registry.example/vllm:1", digest=DIGEST)
    snapshot = _snapshot(tmp_path)
    copied = copy_snapshot(fake, snapshot=snapshot, image_ref=IMAGE, volume="cache", group="demo", node=1,
                           runtime="vllm", cancel=CancelToken())
    assert copied
    files = fake.files["volume:cache"]
    root = "/root/.cache/huggingface/hub/models--org--tiny"
    assert {f"{root}/blobs/deadbeef", f"{root}/snapshots/abc123/config.json"} <= files
    assert f"{root}/blobs/half.incomplete" not in files and f"{root}/snapshots/older/config.json" not in files
    assert f"{snapshot_in_volume(snapshot)}/{COMPLETE_MARK}" in files
    assert [c for c in fake.containers.values()] == [], "the helper container is removed"
    uploads = sum(method == "put_archive" for method, _ in fake.calls)
    assert uploads == 2  # the snapshot, then its completion mark
    again = copy_snapshot(fake, snapshot=snapshot, image_ref=IMAGE, volume="cache", group="demo", node=1,
                          runtime="vllm", cancel=CancelToken())
    assert again is False and sum(method == "put_archive" for method, _ in fake.calls) == uploads


def test_a_cancelled_copy_raises_and_removes_its_container(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.add_image("registry.example/vllm:1", digest=DIGEST)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        copy_snapshot(fake, snapshot=_snapshot(tmp_path), image_ref=IMAGE, volume="cache", group="demo", node=1,
                      runtime="vllm", cancel=cancel)
    assert fake.containers == {}
    assert not any(path.endswith(COMPLETE_MARK) for path in fake.files.get("volume:cache", set()))


def test_the_copy_never_removes_a_container_that_is_not_ours(tmp_path: Path) -> None:
    fake = FakeDocker()
    fake.add_image("registry.example/vllm:1", digest=DIGEST)
    fake.add_foreign_container("demo-weights-1")
    with pytest.raises(NameTaken):
        copy_snapshot(fake, snapshot=_snapshot(tmp_path), image_ref=IMAGE, volume="cache", group="demo", node=1,
                      runtime="vllm", cancel=CancelToken())
    assert [c.name for c in fake.containers.values()] == ["demo-weights-1"]


# --- the Ray watch -------------------------------------------------------------------------------------------------


def test_ray_status_gpu_totals() -> None:
    assert ray_gpus(RAY_STATUS.format(gpus="2.0")) == 2.0
    assert ray_gpus("ConnectionError: Could not find any running Ray instance.") is None


def _cluster(fake: FakeDocker, settings: Settings, clock: FakeClock) -> RayCluster:
    manager = DockerContainerManager(fake, settings, clock)
    for index in (0, 1):
        _run_spec(fake, f"demo-ray-{index}", {"io.nemoclaw.runtime.managed": "true", GROUP: "demo"})
    nodes = parse_nodes("local,tcp://10.0.0.2:2375")
    return RayCluster([NodeContainer(node, f"demo-ray-{node.index}", manager) for node in nodes], clock)


def test_the_join_waits_for_the_gpus_and_ends_at_its_budget(settings: Settings) -> None:
    fake, clock = FakeDocker(), FakeClock()
    cluster = _cluster(fake, settings, clock)
    answers = iter([(1, "not yet"), (0, RAY_STATUS.format(gpus="1.0")), (0, RAY_STATUS.format(gpus="2.0"))])
    seen: list[Event] = []
    took = wait_for_gpus(cluster, lambda: next(answers), gpus=2, timeout_s=60, clock=clock, cancel=CancelToken(),
                         events=seen.append)
    assert took == 2.0 and any("reports 2 of the 2 GPUs" in getattr(e, "message", "") for e in seen)
    with pytest.raises(ReadinessTimeout) as caught:
        wait_for_gpus(cluster, lambda: (0, RAY_STATUS.format(gpus="1.0")), gpus=2, timeout_s=5, clock=clock,
                      cancel=CancelToken(), events=seen.append)
    assert caught.value.exit_code == 5 and "1 of the 2 GPUs" in caught.value.message


def test_a_node_that_stops_or_vanishes_ends_the_join_with_its_log(settings: Settings) -> None:
    fake, clock = FakeDocker(), FakeClock()
    cluster = _cluster(fake, settings, clock)
    fake.emit_logs("demo-ray-1", "RuntimeError: NCCL error: unhandled system error")
    fake.crash("demo-ray-1", exit_code=1)
    with pytest.raises(ContainerExited) as caught:
        wait_for_gpus(cluster, lambda: (0, RAY_STATUS.format(gpus="1.0")), gpus=2, timeout_s=60, clock=clock,
                      cancel=CancelToken(), events=lambda e: None)
    assert caught.value.cause == "nccl" and "node 1 (tcp://10.0.0.2:2375)" in caught.value.message
    assert caught.value.log_tail and caught.value.exit_code == 5
    fake.remove_container("demo-ray-1", force=True)
    stopped = cluster.first_stopped()
    assert stopped is not None and stopped[1].status == "removed"


# --- clean-up, stop and ps -----------------------------------------------------------------------------------------


def test_the_group_clean_up_removes_only_our_labelled_containers_and_volume() -> None:
    fake = FakeDocker()
    ours = {"io.nemoclaw.runtime.managed": "true", GROUP: "demo"}
    _run_spec(fake, "demo-ray-0", ours)
    _run_spec(fake, "demo", ours)
    _run_spec(fake, "impostor", {GROUP: "demo"})  # the group label without ours: never touched
    fake.create_volume("demo-ray-tmp", {"io.nemoclaw.runtime.managed": "true"})
    left = remove_group("demo", [(Node(0, "local"), fake)], lambda e: None)
    assert left == [] and [c.name for c in fake.containers.values()] == ["impostor"]
    assert "demo-ray-tmp" not in fake.volumes


def test_stop_with_a_node_that_does_not_answer_is_exit_3_and_keeps_the_record(settings: Settings) -> None:
    head, worker = FakeDocker(), FakeDocker()
    worker.engine_up = False
    ours = {"io.nemoclaw.runtime.managed": "true", GROUP: "demo"}
    _run_spec(head, "demo", ours)
    records.write_record(settings, records.GroupRecord("demo", "vllm", "m", parse_nodes("local,tcp://10.0.0.2:1")))
    engines = {"local": head, "tcp://10.0.0.2:1": worker}

    views = ops.list_groups(settings, engines=lambda node: engines[node.address])
    assert [(n["index"], n["state"]) for n in views[0].nodes or ()] == [(0, "missing"), (1, "unreachable")]
    with pytest.raises(DockerUnavailable) as caught:
        ops.stop_groups(settings, ["demo"], engines=lambda node: engines[node.address])
    assert caught.value.exit_code == 3 and "node 1 (tcp://10.0.0.2:1)" in caught.value.message
    assert head.containers == {} and records.read_record(settings, "demo") is not None
    worker.engine_up = True
    assert ops.stop_groups(settings, ["demo"], engines=lambda node: engines[node.address]) == ["demo"]
    assert records.read_record(settings, "demo") is None


def test_cluster_views_are_plain_data() -> None:
    node = parse_nodes("local,ssh://me@spark2")[1]
    assert dataclasses.asdict(node) == {"index": 1, "address": "ssh://me@spark2"} and node.hostname == "spark2"


def test_a_node_engine_that_never_answers_is_exit_3_naming_it_within_the_bound(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-py's ssh:// transport connects without a timeout: the node's first call is bounded here."""
    import threading
    import time

    from nemoclaw_runtime.runtimes.cluster import start

    monkeypatch.setattr(start, "NODE_CONNECT_S", 0.2)
    release = threading.Event()

    def hangs(node: Node) -> FakeDocker:
        release.wait(5)  # an engine that accepted and never answered
        return FakeDocker()

    began = time.monotonic()
    try:
        with pytest.raises(DockerUnavailable) as caught:
            start.connect_node(settings, Node(1, "ssh://me@gone"), hangs)
    finally:
        release.set()
    assert time.monotonic() - began < 2
    assert caught.value.message.startswith("Node 1 (ssh://me@gone): the Docker engine did not answer within 0.2 s")
    down = FakeDocker()
    down.engine_up = False
    with pytest.raises(DockerUnavailable, match=r"^Node 2 \(tcp://h:1\): Cannot connect"):
        start.connect_node(settings, Node(2, "tcp://h:1"), lambda node: down)
