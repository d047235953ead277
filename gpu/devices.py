"""Read every GPU's facts through the NVML funnel.

Each reading is independent: a "Not Supported" memory total (GB10, Jetson) or a missing compute-capability
symbol leaves that one field ``None`` and the rest of the GPU intact. Loops are bounded by ``MAX_GPUS`` and
``MAX_MIG_DEVICES`` whatever NVML claims.
"""

from __future__ import annotations

import logging
from typing import Any

from nemoclaw_runtime.gpu.facts import MIB, GpuInfo, MigDevice, format_pci_device_id
from nemoclaw_runtime.gpu.nvml import NvmlSession

__all__ = ["MAX_GPUS", "MAX_MIG_DEVICES", "read_driver_version", "read_gpus", "read_memory", "read_mig_enabled"]

logger = logging.getLogger(__name__)

MAX_GPUS = 64
MAX_MIG_DEVICES = 16  # NVML_MAX_MIG_DEVICES is 7 per GPU today
NVML_DEVICE_MIG_ENABLE = 1


def read_driver_version(nvml: NvmlSession) -> str | None:
    return _text(nvml.query("nvmlSystemGetDriverVersion"))


def read_gpus(nvml: NvmlSession) -> tuple[GpuInfo, ...]:
    """All GPUs NVML lists, in NVML index order; a GPU whose handle cannot be had is skipped (and logged)."""
    count = nvml.query("nvmlDeviceGetCount") or 0
    if count > MAX_GPUS:
        logger.warning("NVML reports %d GPUs; reading the first %d", count, MAX_GPUS)
    gpus: list[GpuInfo] = []
    for index in range(min(int(count), MAX_GPUS)):
        handle = nvml.query("nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            logger.warning("NVML gave no handle for GPU %d; it is left out", index)
            continue
        gpus.append(read_gpu(nvml, index, handle))
    return tuple(gpus)


def read_gpu(nvml: NvmlSession, index: int, handle: Any) -> GpuInfo:
    total, free = read_memory(nvml, handle)
    mig_enabled = read_mig_enabled(nvml, handle)
    return GpuInfo(
        index=index,
        name=_text(nvml.query("nvmlDeviceGetName", handle)) or "",
        uuid=_text(nvml.query("nvmlDeviceGetUUID", handle)) or "",
        memory_total_mib=total,
        memory_free_mib=free,
        pci_device_id=read_pci_device_id(nvml, handle),
        mig_enabled=mig_enabled,
        compute_capability=read_compute_capability(nvml, handle),
        mig_devices=read_mig_devices(nvml, handle) if mig_enabled else (),
    )


def read_memory(nvml: NvmlSession, handle: Any) -> tuple[int | None, int | None]:
    """(total, free) in MiB. Unsupported (GB10) or a total of 0 means "no dedicated memory": both ``None``."""
    info = nvml.query("nvmlDeviceGetMemoryInfo", handle)
    total = _mib(getattr(info, "total", None))
    if total is None:
        return None, None
    free = getattr(info, "free", None)
    return total, (int(free) // MIB if isinstance(free, int) and free >= 0 else None)


def read_pci_device_id(nvml: NvmlSession, handle: Any) -> str | None:
    info = nvml.query("nvmlDeviceGetPciInfo", handle)
    value = getattr(info, "pciDeviceId", None)
    return format_pci_device_id(value) if isinstance(value, int) and value > 0 else None


def read_compute_capability(nvml: NvmlSession, handle: Any) -> tuple[int, int] | None:
    value = nvml.query("nvmlDeviceGetCudaComputeCapability", handle)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None
    major, minor = value
    return (int(major), int(minor)) if major > 0 else None


def read_mig_enabled(nvml: NvmlSession, handle: Any) -> bool:
    """``nvmlDeviceGetMigMode`` returns ``(current, pending)``; only the current mode counts."""
    mode = nvml.query("nvmlDeviceGetMigMode", handle)
    if not isinstance(mode, (tuple, list)) or not mode:
        return False  # NotSupported: a GPU without MIG
    return bool(mode[0] == NVML_DEVICE_MIG_ENABLE)


def read_mig_devices(nvml: NvmlSession, handle: Any) -> tuple[MigDevice, ...]:
    """The MIG instances that exist; empty slots answer "Not Found" and are skipped."""
    slots = nvml.query("nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    devices: list[MigDevice] = []
    for slot in range(min(int(slots), MAX_MIG_DEVICES)):
        mig = nvml.query("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
        if mig is None:
            continue
        total, _free = read_memory(nvml, mig)
        devices.append(MigDevice(
            index=slot,
            uuid=_text(nvml.query("nvmlDeviceGetUUID", mig)) or "",
            name=_text(nvml.query("nvmlDeviceGetName", mig)) or "",
            memory_total_mib=total,
        ))
    return tuple(devices)


def _mib(value: Any) -> int | None:
    """Bytes → MiB; a missing or zero amount is unknown, never a real 0."""
    if not isinstance(value, int) or value <= 0:
        return None
    return value // MIB


def _text(value: Any) -> str | None:
    """NVML strings arrive as ``bytes`` from older bindings and ``str`` from newer ones."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip() or None
