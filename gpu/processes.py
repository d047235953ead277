"""Which processes hold GPU memory, and how much: NVML's per-process accounting, through the funnel.

    reading = read_gpu_processes()              # never raises for a missing driver: ``reason`` says why
    reading.processes                           # (GpuProcess(pid, gpu_index, gpu_uuid, used_memory_mib), ...)
    reading.unified_memory                      # True on GB10 / Jetson: NVML has no per-process figure there

``nvmlDeviceGetComputeRunningProcesses`` lists the compute processes of each GPU (host PIDs) with their
``usedGpuMemory``; NVML leaves that field "not available" (pynvml: ``None``) where it cannot say — Windows WDDM,
unified memory, MIG without privileges — and the reading is then ``None``, never a made-up 0. On a MIG-enabled GPU
the MIG devices are asked too (a parent handle answers only with privileges). Loops are bounded like
``devices.read_gpus``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.gpu.devices import MAX_GPUS, MAX_MIG_DEVICES, read_memory, read_mig_enabled
from nemoclaw_runtime.gpu.facts import MIB
from nemoclaw_runtime.gpu.nvml import NvmlSession, NvmlUnavailable, load_pynvml

MAX_PROCESSES_PER_DEVICE = 4096
NOT_LISTED_REASON = "NVML cannot list the GPU processes on this driver (nvmlDeviceGetComputeRunningProcesses)"


@dataclass(frozen=True)
class GpuProcess:
    """One compute process on one GPU. ``used_memory_mib`` is ``None`` where NVML cannot say."""

    pid: int
    gpu_index: int
    gpu_uuid: str
    used_memory_mib: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "gpu_index": self.gpu_index, "gpu_uuid": self.gpu_uuid,
                "used_memory_mib": self.used_memory_mib}


@dataclass(frozen=True)
class GpuProcesses:
    """Every GPU compute process NVML lists. ``reason`` is set when NVML gave nothing usable (no driver, the
    function unsupported on every GPU); ``unified_memory`` when no GPU has memory of its own (GB10, Jetson)."""

    processes: tuple[GpuProcess, ...] = ()
    gpu_count: int = 0
    unified_memory: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"processes": [p.to_dict() for p in self.processes], "gpu_count": self.gpu_count,
                "unified_memory": self.unified_memory, "reason": self.reason}


def read_gpu_processes(nvml: object | None = None) -> GpuProcesses:
    """The compute processes of every GPU; NVML is initialised, read and shut down again.

    Args:
        nvml: a pynvml-like module (default: ``pynvml``, imported on first use). Tests pass a fake.
    """
    try:
        lib = nvml if nvml is not None else load_pynvml()
    except NvmlUnavailable as exc:
        return GpuProcesses(reason=exc.reason)
    with NvmlSession(lib) as session:
        return read_processes(session)


def read_processes(nvml: NvmlSession) -> GpuProcesses:
    """The same over a session the caller keeps open (a watch reads every few seconds without re-initialising
    NVML each time); no driver is a ``reason``, never an exception."""
    try:
        nvml.init()
        return _read(nvml)
    except NvmlUnavailable as exc:
        return GpuProcesses(reason=exc.reason)


def _read(nvml: NvmlSession) -> GpuProcesses:
    count = min(int(nvml.query("nvmlDeviceGetCount") or 0), MAX_GPUS)
    found: dict[tuple[int, int], GpuProcess] = {}
    listed_any = False
    with_memory = 0
    for index in range(count):
        handle = nvml.query("nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            continue
        if read_memory(nvml, handle)[0] is not None:
            with_memory += 1
        uuid = _text(nvml.query("nvmlDeviceGetUUID", handle))
        handles = [handle]
        if read_mig_enabled(nvml, handle):
            slots = min(int(nvml.query("nvmlDeviceGetMaxMigDeviceCount", handle) or 0), MAX_MIG_DEVICES)
            handles += [h for h in (nvml.query("nvmlDeviceGetMigDeviceHandleByIndex", handle, s)
                                    for s in range(slots)) if h is not None]
        for device in handles:
            listed = nvml.query("nvmlDeviceGetComputeRunningProcesses", device)
            if listed is None:
                continue
            listed_any = True
            for entry in list(listed)[:MAX_PROCESSES_PER_DEVICE]:
                process = _process(entry, index, uuid)
                if process is not None:
                    found.setdefault((process.pid, index), process)
    if count and not listed_any:
        return GpuProcesses(gpu_count=count, unified_memory=with_memory == 0, reason=NOT_LISTED_REASON)
    return GpuProcesses(processes=tuple(sorted(found.values(), key=lambda p: (p.gpu_index, p.pid))),
                        gpu_count=count, unified_memory=count > 0 and with_memory == 0)


def _process(entry: Any, gpu_index: int, gpu_uuid: str) -> GpuProcess | None:
    pid = getattr(entry, "pid", None)
    if not isinstance(pid, int) or pid <= 0:
        return None
    used = getattr(entry, "usedGpuMemory", None)
    # pynvml maps NVML_VALUE_NOT_AVAILABLE to None; an older binding may hand the raw sentinel (2**64 - 1) through.
    memory = int(used) // MIB if isinstance(used, int) and 0 <= used < 2**63 else None
    return GpuProcess(pid=pid, gpu_index=gpu_index, gpu_uuid=gpu_uuid, used_memory_mib=memory)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value) if value is not None else ""


__all__ = ["GpuProcess", "GpuProcesses", "read_gpu_processes", "read_processes"]
