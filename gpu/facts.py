"""The raw facts an inventory is derived from: what NVML said about each GPU and what the host said about itself.

These are exactly what a snapshot records (``gpu/snapshot.py``), so a recorded machine replays to the same
inventory. Readings NVML could not give ("Not Supported", a missing symbol) are ``None``, never a made-up 0.
Memory is in MiB throughout (NemoClaw prints these numbers with a "MB" label, as nvidia-smi does).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpuInfo", "HostFacts", "MIB", "MachineInfo", "MigDevice", "format_pci_device_id", "normalise_pci_device_id"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class MigDevice:
    """One MIG instance of a GPU whose MIG mode is enabled: the unit a container is placed on."""

    index: int
    uuid: str
    name: str
    memory_total_mib: int | None = None


@dataclass(frozen=True)
class GpuInfo:
    """One physical GPU as NVML reports it.

    ``pci_device_id`` is NVML's ``pciDeviceId`` written like nvidia-smi's ``pci.device_id``: ``0xDDDDVVVV``
    (device id in the high 16 bits, vendor in the low 16). ``compute_capability`` is ``(major, minor)``.
    """

    index: int
    name: str
    uuid: str
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    pci_device_id: str | None = None
    mig_enabled: bool = False
    compute_capability: tuple[int, int] | None = None
    mig_devices: tuple[MigDevice, ...] = ()

    @property
    def pci_device(self) -> int | None:
        """The PCI device id (e.g. ``0x2330`` for an H100 SXM), or ``None`` when unknown."""
        return split_pci_device_id(self.pci_device_id)[1]

    @property
    def pci_vendor(self) -> int | None:
        """The PCI vendor id (``0x10de`` for NVIDIA), or ``None`` when unknown."""
        return split_pci_device_id(self.pci_device_id)[0]

    @property
    def compute_capability_sm(self) -> int | None:
        """Compute capability as one number, the way registries compare it: (9, 0) → 90, (12, 1) → 121."""
        if self.compute_capability is None:
            return None
        major, minor = self.compute_capability
        return major * 10 + minor


@dataclass(frozen=True)
class MachineInfo:
    """The host: CPU architecture, firmware product name (DMI or device tree) and host memory in MiB."""

    arch: str
    product_name: str
    memory_total_mib: int
    memory_available_mib: int
    tegra_device_nodes: bool = False  # /dev/nvhost-* or /dev/nvmap exist: a Tegra (Jetson) kernel


@dataclass(frozen=True)
class HostFacts:
    """Everything read from one machine: the content of a snapshot.

    ``nvml_error`` says why NVML gave no GPUs (no library, driver not loaded, ...); ``None`` when it answered.
    """

    machine: MachineInfo
    driver_version: str | None
    gpus: tuple[GpuInfo, ...]
    nvml_error: str | None = None


def format_pci_device_id(value: int) -> str:
    """NVML's 32-bit ``pciDeviceId`` in nvidia-smi's spelling, e.g. ``0x233010DE``."""
    return f"0x{value:08X}"


def split_pci_device_id(text: str | None) -> tuple[int | None, int | None]:
    """``(vendor, device)`` from ``0xDDDDVVVV``; a bare 16-bit ``0xDDDD`` is a device id of an NVIDIA GPU
    (NVML only lists NVIDIA GPUs). Anything unparsable is ``(None, None)``."""
    if not text:
        return None, None
    try:
        value = int(text, 16)
    except ValueError:
        return None, None
    if value > 0xFFFF:
        return value & 0xFFFF, value >> 16
    return 0x10DE, value


def normalise_pci_device_id(text: str | None) -> str | None:
    """The canonical spelling of a PCI id read from a snapshot (so replay equals record)."""
    vendor, device = split_pci_device_id(text)
    if device is None or vendor is None:
        return None
    return format_pci_device_id(device << 16 | vendor)
