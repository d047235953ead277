"""Host facts: CPU architecture, the firmware's product name, Tegra device nodes and host memory.

Everything the machine is asked goes through a :class:`HostProbe`, so tests (and snapshots) can stand in for it.
Firmware values are read the way NemoClaw's identity probe does: at most 256 bytes, one trailing newline (DMI) or
NUL (device tree) dropped, and a value with control characters ignored rather than trusted.
"""

from __future__ import annotations

import os
import platform
from typing import Protocol

from nemoclaw_runtime.gpu.facts import MIB, MachineInfo
from nemoclaw_runtime.gpu.profiles import TEGRA_DEVICE_NODES

__all__ = [
    "DEVICE_TREE_MODEL", "DMI_PRODUCT_NAME", "FIRMWARE_VALUE_MAX_BYTES", "HostProbe", "SystemHostProbe",
    "normalise_arch", "read_machine",
]

DMI_PRODUCT_NAME = "/sys/class/dmi/id/product_name"
DEVICE_TREE_MODEL = "/sys/firmware/devicetree/base/model"
FIRMWARE_VALUE_MAX_BYTES = 256

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}


class HostProbe(Protocol):
    """What the inventory asks the host. The real one is :class:`SystemHostProbe`."""

    def machine(self) -> str:
        """``platform.machine()``."""
        ...

    def read_bytes(self, path: str, limit: int) -> bytes | None:
        """At most ``limit`` bytes of a file, or ``None`` when it cannot be read."""
        ...

    def exists(self, path: str) -> bool:
        ...

    def memory_bytes(self) -> tuple[int, int]:
        """Host memory ``(total, available)`` in bytes."""
        ...


class SystemHostProbe:
    """The real host: ``platform``, sysfs and psutil."""

    def machine(self) -> str:
        return platform.machine()

    def read_bytes(self, path: str, limit: int) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                return handle.read(limit)
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def memory_bytes(self) -> tuple[int, int]:
        import psutil

        memory = psutil.virtual_memory()
        return int(memory.total), int(memory.available)


def read_machine(probe: HostProbe) -> MachineInfo:
    total, available = probe.memory_bytes()
    return MachineInfo(
        arch=normalise_arch(probe.machine()),
        product_name=read_product_name(probe),
        memory_total_mib=max(int(total), 0) // MIB,
        memory_available_mib=max(int(available), 0) // MIB,
        tegra_device_nodes=any(probe.exists(node) for node in TEGRA_DEVICE_NODES),
    )


def read_product_name(probe: HostProbe) -> str:
    """DMI ``product_name``, else the device-tree ``model`` (NUL stripped), else ``""``."""
    return (firmware_value(probe, DMI_PRODUCT_NAME, strip_nul=False)
            or firmware_value(probe, DEVICE_TREE_MODEL, strip_nul=True)
            or "")


def firmware_value(probe: HostProbe, path: str, *, strip_nul: bool) -> str | None:
    raw = probe.read_bytes(path, FIRMWARE_VALUE_MAX_BYTES + 2)
    if raw is None:
        return None
    if strip_nul:
        raw = raw.rstrip(b"\x00")
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    if len(raw) > FIRMWARE_VALUE_MAX_BYTES:
        return None
    text = raw.decode("utf-8", errors="replace")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return None  # not a product name; never match a profile on garbage
    return text.strip() or None


def normalise_arch(machine: str) -> str:
    value = machine.strip().lower()
    return _ARCH_ALIASES.get(value, value) or "unknown"
