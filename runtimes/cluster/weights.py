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
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import Cancelled, NameTaken, NemoclawError
from nemoclaw_runtime.runtimes.docker.port import DockerPort
from nemoclaw_runtime.runtimes.docker.spec import LABEL_GROUP, LABEL_ROLE, ContainerSpec, GpuRequest, Mount
from nemoclaw_runtime.runtimes.drivers.vllm import CONTAINER_HF_HOME

__all__ = ["COMPLETE_MARK", "ROLE_COPY", "copy_snapshot", "snapshot_in_volume"]

ROLE_COPY = "weights-copy"


def snapshot_in_volume(snapshot: Path) -> str:
    """Where the snapshot folder of this machine's cache lives in a node's volume."""
    model_dir = snapshot.parent.parent  # …/hub/models--org--name/snapshots/<revision>
    return f"{CONTAINER_HF_HOME}/hub/{model_dir.name}/snapshots/{snapshot.name}"


def copy_snapshot(docker: DockerPort, *, snapshot: Path, image_ref: str, volume: str, group: str, node: int,
                  runtime: str, cancel: CancelToken) -> bool:
    """Copy the model of ``snapshot`` (its whole ``models--…`` folder) into ``volume`` on ``docker``'s engine;
    False when the volume already holds that snapshot (its completion mark, written last). The helper container
    is removed whatever happens; ``cancel`` stops the stream between chunks."""
    from nemoclaw_runtime.runtimes.docker.containers import is_managed, managed_labels

    spec = ContainerSpec(
        name=f"{group}-weights-{node}", runtime=runtime, image=image_ref, command=("true",), gpus=GpuRequest("none"),
        labels=((LABEL_GROUP, group), (LABEL_ROLE, ROLE_COPY)), mounts=(Mount(volume, CONTAINER_HF_HOME, "volume"),),
        restart_policy=None)
    spec = dataclasses.replace(spec, labels=managed_labels(spec))
    left = docker.inspect_container(spec.name)
    if left is not None:  # one left by an interrupted copy: ours only (our label), never someone else's
        if not is_managed(left):
            raise NameTaken(f"The container name {spec.name} is held by a container nemoclaw-runtime did not create",
                            remedy="remove or rename that container, or pass another --name")
        docker.remove_container(left.id, force=True)
    container = docker.create_container(spec)
    mark = f"{snapshot_in_volume(snapshot)}/{COMPLETE_MARK}"
    try:
        if docker.path_exists(container, mark):
            return False
        model_dir = snapshot.parent.parent
        with _tar_stream(model_dir, snapshot, cancel) as stream:
            docker.put_archive(container, CONTAINER_HF_HOME, stream)
        cancel.raise_if_cancelled()
        docker.put_archive(container, snapshot_in_volume(snapshot), _mark_tar())  # last: the copy is whole
        return True
    finally:
        with contextlib.suppress(NemoclawError):
            docker.remove_container(container, force=True)


#: Written into a node's snapshot folder once every file of it has arrived.
COMPLETE_MARK = ".nemoclaw-complete"


def _mark_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(tarfile.TarInfo(COMPLETE_MARK), io.BytesIO(b""))
    return buffer.getvalue()


class _Cancellable(io.RawIOBase):
    """A file read for the tar that raises :class:`Cancelled` between chunks once ``cancel`` is set."""

    def __init__(self, handle: IO[bytes], cancel: CancelToken) -> None:
        self._handle = handle
        self._cancel = cancel

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._cancel.raise_if_cancelled()
        return self._handle.read(size)


def _members(model_dir: Path, snapshot: Path) -> Iterator[Path]:
    """The model folder's entries the snapshot needs: its folders, its blobs and refs, and this snapshot only (other
    revisions and ``.incomplete`` leftovers of this machine's cache stay here)."""
    snapshots = model_dir / "snapshots"
    for root, folders, files in os.walk(model_dir):
        here = Path(root)
        if here == snapshots:
            folders[:] = [f for f in folders if f == snapshot.name]
        yield here
        for name in sorted(files):
            if not name.endswith(".incomplete"):
                yield here / name


@contextlib.contextmanager
def _tar_stream(model_dir: Path, snapshot: Path, cancel: CancelToken) -> Iterator[IO[bytes]]:
    """The model folder as an uncompressed tar, written by a thread into a pipe and read by the engine call: a model
    of hundreds of GiB is never held in memory."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as archive:
                for path in _members(model_dir, snapshot):
                    relative = path.relative_to(model_dir)
                    name = f"hub/{model_dir.name}" + ("" if relative == Path(".") else f"/{relative.as_posix()}")
                    info = archive.gettarinfo(str(path), name)
                    if info.isreg():
                        with path.open("rb") as handle:
                            archive.addfile(info, _Cancellable(handle, cancel))
                    else:
                        archive.addfile(info)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(exc)

    writer = threading.Thread(target=write, name="nemoclaw-weights-tar", daemon=True)
    writer.start()

    def finish() -> None:
        reader.close()  # a writer still blocked on a full pipe gets EPIPE and ends
        writer.join(timeout=30)

    try:
        yield reader
    except BaseException:
        finish()
        if failure and isinstance(failure[0], Cancelled):  # the engine saw a cut tar because we cancelled: say so
            raise failure[0] from None
        raise
    finish()
    if failure and isinstance(failure[0], Cancelled):
        raise failure[0]
    if failure and not isinstance(failure[0], BrokenPipeError):
        raise NemoclawError(f"Could not read the weights in {model_dir}: {failure[0]}",
                            remedy="check the Hugging Face cache on this machine (HF_HOME)")
