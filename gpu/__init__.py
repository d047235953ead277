"""GPU inventory (NVML) and host profiles.

    from nemoclaw_runtime.gpu import detect_gpus, has_usable_gpu, PROFILE_DGX_SPARK

    inv = detect_gpus(settings)          # never raises for a missing driver: profile "none" + inv.reason
    inv.profile, inv.memory_budget_mib, inv.unified_memory, inv.summary_lines

Importing this package does not import pynvml; NVML is loaded when :func:`detect_gpus` reads it.
"""

from nemoclaw_runtime.gpu.facts import GpuInfo, HostFacts, MachineInfo, MigDevice
from nemoclaw_runtime.gpu.host import HostProbe, SystemHostProbe
from nemoclaw_runtime.gpu.inventory import GpuInventory, build_inventory, detect_gpus, has_usable_gpu
from nemoclaw_runtime.gpu.processes import GpuProcess, GpuProcesses, read_gpu_processes
from nemoclaw_runtime.gpu.profiles import (
    PROFILE_DGX_SPARK,
    PROFILE_DGX_STATION,
    PROFILE_JETSON,
    PROFILE_LINUX_NVIDIA,
    PROFILE_NONE,
    PROFILES,
)
from nemoclaw_runtime.gpu.snapshot import SCHEMA_VERSION

__all__ = [
    "PROFILES",
    "PROFILE_DGX_SPARK",
    "PROFILE_DGX_STATION",
    "PROFILE_JETSON",
    "PROFILE_LINUX_NVIDIA",
    "PROFILE_NONE",
    "SCHEMA_VERSION",
    "GpuInfo",
    "GpuInventory",
    "GpuProcess",
    "GpuProcesses",
    "HostFacts",
    "HostProbe",
    "MachineInfo",
    "MigDevice",
    "SystemHostProbe",
    "build_inventory",
    "detect_gpus",
    "has_usable_gpu",
    "read_gpu_processes",
]
