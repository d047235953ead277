"""GPU memory held by a server: NVML's per-process memory matched to the server's processes.

A container's processes come from the engine (``docker top``: host PIDs, the ones NVML lists); a server that is
not a container is found by the port it listens on (psutil), with its children (vLLM's engine core is a child
process). On unified memory (DGX Spark, Jetson) NVML has no per-process figure: the processes' resident memory
(psutil RSS) is what they hold. Where nothing honest can be said the memory is ``None`` and ``reason`` says why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.gpu.nvml import NvmlSession, load_pynvml
from nemoclaw_runtime.gpu.processes import GpuProcesses, read_processes
from nemoclaw_runtime.kernel.units import MIB

MAX_CHILDREN = 256

SOURCE_NVML = "nvml"
SOURCE_RSS = "rss"


@dataclass(frozen=True)
class GpuUsage:
    """``gpus``: NVML indices the server's processes run on; ``memory_mib``: what they hold (``None`` when
    unknown, with ``reason``); ``source``: ``nvml`` (per-process GPU memory) or ``rss`` (unified memory)."""

    gpus: tuple[int, ...] = ()
    memory_mib: int | None = None
    source: str | None = None
    reason: str | None = None
    processes: int = 0  # how many of the server's processes NVML lists on a GPU

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": list(self.gpus), "memory_mib": self.memory_mib, "source": self.source,
                "reason": self.reason, "processes": self.processes}


GpuReader = Callable[[], GpuProcesses]
RssReader = Callable[[int], "int | None"]


class NvmlProcessReader:
    """Reads :class:`GpuProcesses`, keeping NVML initialised between samples (a watch) until :meth:`close`."""

    def __init__(self, lib: object | None = None) -> None:
        self._lib = lib
        self._session: NvmlSession | None = None
        self._lock = threading.Lock()

    def __call__(self) -> GpuProcesses:
        with self._lock:
            if self._session is None:
                from nemoclaw_runtime.gpu.nvml import NvmlUnavailable

                try:
                    self._session = NvmlSession(self._lib if self._lib is not None else load_pynvml())
                except NvmlUnavailable as exc:
                    return GpuProcesses(reason=exc.reason)
            return read_processes(self._session)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.shutdown()
                self._session = None


def unreadable(reason: str) -> GpuReader:
    """A reader that knows nothing, for a reason (a GPU snapshot replay, say)."""
    return lambda: GpuProcesses(reason=reason)


def resident_bytes(pid: int) -> int | None:
    """psutil's RSS of ``pid``; ``None`` when the process is gone or not ours to read."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, OSError):
        return None


def attribute(reading: GpuProcesses, pids: Sequence[int] | None, *, why_no_pids: str | None = None,
              rss: RssReader = resident_bytes) -> GpuUsage:
    """The GPU memory of the processes ``pids`` (``None``: unknown, ``why_no_pids`` says why)."""
    if reading.reason is not None:
        return GpuUsage(reason=reading.reason)
    if pids is None:
        return GpuUsage(reason=why_no_pids or "the server's processes are unknown")
    wanted = set(pids)
    mine = [p for p in reading.processes if p.pid in wanted]
    gpus = tuple(sorted({p.gpu_index for p in mine}))
    if reading.unified_memory:
        return _resident(gpus, [p.pid for p in mine] or list(wanted), len(mine), rss)
    if not mine:
        return GpuUsage(memory_mib=0, source=SOURCE_NVML, reason="NVML lists none of its processes on a GPU")
    if any(p.used_memory_mib is None for p in mine):
        return GpuUsage(gpus=gpus, source=SOURCE_NVML, processes=len(mine),
                        reason="NVML does not report per-process memory here (usedGpuMemory not available)")
    return GpuUsage(gpus=gpus, memory_mib=sum(p.used_memory_mib or 0 for p in mine), source=SOURCE_NVML,
                    processes=len(mine))


def _resident(gpus: tuple[int, ...], pids: Iterable[int], listed: int, rss: RssReader) -> GpuUsage:
    sizes = [rss(pid) for pid in pids]
    known = [s for s in sizes if s is not None]
    if not known:
        return GpuUsage(gpus=gpus, source=SOURCE_RSS, processes=listed,
                        reason="unified memory: the processes' resident memory cannot be read from here")
    note = None if len(known) == len(sizes) else f"unified memory: {len(sizes) - len(known)} process(es) unreadable"
    return GpuUsage(gpus=gpus, memory_mib=sum(known) // MIB, source=SOURCE_RSS, processes=listed, reason=note)


def listener_pids(port: int) -> tuple[list[int] | None, str | None]:
    """The processes serving on TCP ``port`` (the listener and its children), or (None, why)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, PermissionError, OSError) as exc:
        return None, f"cannot list listening sockets here ({type(exc).__name__})"
    owners = {c.pid for c in connections
              if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    if not owners:
        return None, f"the process listening on port {port} is not visible from here"
    pids: list[int] = []
    for pid in sorted(owners):
        try:
            process = psutil.Process(pid)
            if process.name() == "docker-proxy":
                return None, ("port published by docker-proxy: a container nemoclaw-runtime does not manage, "
                              "whose processes it does not know")
            pids.append(pid)
            pids.extend(child.pid for child in process.children(recursive=True)[:MAX_CHILDREN])
        except psutil.Error:
            continue
    return (pids, None) if pids else (None, f"the process listening on port {port} is gone")


__all__ = [
    "GpuReader", "GpuUsage", "NvmlProcessReader", "RssReader", "attribute", "listener_pids", "resident_bytes",
    "unreadable",
]
