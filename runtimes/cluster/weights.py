"""Weights on every node: downloaded once on this machine (the token stays in this process), then copied through
each other node's engine into its ``nemoclaw-hf-cache`` volume — never downloaded inside a container.

The copy goes through a container that is created (never started) from the deployment's image with the volume
mounted, so any engine docker-py reaches (``ssh://``, ``tcp://``) can take it: the snapshot's folder is streamed as
a tar (symlinks kept, as the HF cache lays them out) and unpacked at the cache's root. A node whose volume already
holds that revision's snapshot is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nemoclaw_runtime.kernel.errors import NemoclawError
from nemoclaw_runtime.runtimes.docker.port import DockerPort
from nemoclaw_runtime.runtimes.docker.spec import LABEL_GROUP, LABEL_ROLE, ContainerSpec, GpuRequest, Mount
from nemoclaw_runtime.runtimes.drivers.vllm import CONTAINER_HF_HOME

__all__ = ["ROLE_COPY", "copy_snapshot", "snapshot_in_volume"]

ROLE_COPY = "weights-copy"


def snapshot_in_volume(snapshot: Path) -> str:
    """Where the snapshot folder of this machine's cache lives in a node's volume."""
    model_dir = snapshot.parent.parent  # …/hub/models--org--name/snapshots/<revision>
    return f"{CONTAINER_HF_HOME}/hub/{model_dir.name}/snapshots/{snapshot.name}"


def copy_snapshot(docker: DockerPort, *, snapshot: Path, image_ref: str, volume: str, group: str, node: int,
                  runtime: str) -> bool:
    """Copy the model of ``snapshot`` (its whole ``models--…`` folder) into ``volume`` on ``docker``'s engine;
    False when the volume already holds that snapshot. The helper container is removed whatever happens."""
    from nemoclaw_runtime.runtimes.docker.containers import managed_labels

    spec = ContainerSpec(
        name=f"{group}-weights-{node}", runtime=runtime, image=image_ref, command=("true",), gpus=GpuRequest("none"),
        labels=((LABEL_GROUP, group), (LABEL_ROLE, ROLE_COPY)), mounts=(Mount(volume, CONTAINER_HF_HOME, "volume"),),
        restart_policy=None)
    spec = dataclasses.replace(spec, labels=managed_labels(spec))
    with contextlib.suppress(NemoclawError):  # one left by an interrupted copy
        docker.remove_container(spec.name, force=True)
    container = docker.create_container(spec)
    try:
        if docker.path_exists(container, snapshot_in_volume(snapshot)):
            return False
        with _tar_stream(snapshot.parent.parent) as stream:
            docker.put_archive(container, CONTAINER_HF_HOME, stream)
        return True
    finally:
        with contextlib.suppress(NemoclawError):
            docker.remove_container(container, force=True)


@contextlib.contextmanager
def _tar_stream(model_dir: Path) -> Iterator[IO[bytes]]:
    """The folder as an uncompressed tar, written by a thread into a pipe and read by the engine call: a model of
    hundreds of GiB is never held in memory."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as archive:
                archive.add(model_dir, arcname=f"hub/{model_dir.name}")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(exc)

    writer = threading.Thread(target=write, name="nemoclaw-weights-tar", daemon=True)
    writer.start()
    try:
        yield reader
    finally:
        reader.close()  # a writer still blocked on a full pipe gets EPIPE and ends
        writer.join(timeout=30)
    if failure and not isinstance(failure[0], BrokenPipeError):
        raise NemoclawError(f"Could not read the weights in {model_dir}: {failure[0]}",
                            remedy="check the Hugging Face cache on this machine (HF_HOME)")
