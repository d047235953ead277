"""The GPU inventory: what GPUs this host has, which profile it is, and how much memory models may use.

``detect_gpus()`` reads the raw facts (NVML through the funnel, the host through a :class:`HostProbe`, or a
recorded snapshot when ``Settings.gpu_snapshot`` is set) and derives everything else from them with one pure
function, so a live machine and its replayed snapshot give equal inventories.

Memory rules:
- Discrete GPUs: the budget is the summed VRAM of every GPU that reports a total (mixed GPUs included).
- Unified memory (DGX Spark's GB10, Jetson; or no GPU reporting a total): the budget is host memory and
  ``unified_memory`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.gpu.devices import read_driver_version, read_gpus
from nemoclaw_runtime.gpu.facts import GpuInfo, HostFacts, MachineInfo
from nemoclaw_runtime.gpu.host import HostProbe, SystemHostProbe, read_machine
from nemoclaw_runtime.gpu.nvml import NvmlSession, NvmlUnavailable, load_pynvml
from nemoclaw_runtime.gpu.profiles import (
    PROFILE_DGX_SPARK,
    PROFILE_JETSON,
    PROFILE_NONE,
    classify,
    is_jetson,
)
from nemoclaw_runtime.gpu.snapshot import (
    SnapshotError,
    facts_from_dict,
    facts_to_dict,
    gpu_to_dict,
    load_snapshot_file,
)
from nemoclaw_runtime.gpu.summary import summary_lines as format_summary
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.units import format_mib

NO_GPU_REASON = "NVML is working but lists no NVIDIA GPU"
_UNIFIED_PROFILES = frozenset({PROFILE_DGX_SPARK, PROFILE_JETSON})


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs of one host and what follows from them. Build with :func:`detect_gpus` or :meth:`from_snapshot`.

    ``total_vram_mib`` is the summed VRAM (host memory on unified memory; 0 with no GPU);
    ``memory_budget_mib`` is what models may use (``None`` with no GPU); ``reason`` says why there is no GPU;
    ``notes`` are extra facts worth showing (e.g. a Jetson GPU inferred from firmware).
    """

    profile: str
    gpus: tuple[GpuInfo, ...]
    machine: MachineInfo
    driver_version: str | None
    unified_memory: bool
    compute_constrained: bool
    total_vram_mib: int
    memory_budget_mib: int | None
    available_memory_mib: int | None
    reason: str | None
    summary_lines: tuple[str, ...]
    notes: tuple[str, ...]
    facts: HostFacts

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def min_compute_capability(self) -> tuple[int, int] | None:
        """The lowest compute capability among GPUs that report one (what every GPU can run)."""
        known = [gpu.compute_capability for gpu in self.gpus if gpu.compute_capability is not None]
        return min(known) if known else None

    @property
    def profile_line(self) -> str:
        if self.profile == PROFILE_NONE:
            return "Host profile: none"
        if self.unified_memory:
            extra = "; compute-constrained" if self.compute_constrained else ""
            return (f"Host profile: {self.profile} (unified memory: GPU budget = host memory "
                    f"{format_mib(self.total_vram_mib)}{extra})")
        return f"Host profile: {self.profile} (GPU budget = {format_mib(self.memory_budget_mib)} VRAM)"

    def human_lines(self) -> list[str]:
        """What ``nemoclaw-runtime gpus`` prints: the summary, the reason or details, and the profile line."""
        lines = list(self.summary_lines)
        if self.reason:
            lines.append(f"    {self.reason}")
        lines.extend(f"    {note}" for note in self.notes)
        for gpu in self.gpus:
            if gpu.mig_enabled:
                names = ", ".join(m.name or m.uuid for m in gpu.mig_devices) or "no MIG instances created"
                lines.append(f"    GPU {gpu.index}: MIG enabled ({names})")
        lines.append(self.profile_line)
        if self.driver_version:
            lines.append(f"NVIDIA driver: {self.driver_version}")
        return lines

    def snapshot(self) -> dict[str, Any]:
        """The raw facts, in the versioned snapshot schema (replay with ``NEMOCLAW_GPU_SNAPSHOT``)."""
        return facts_to_dict(self.facts)

    def to_dict(self) -> dict[str, Any]:
        """The ``gpus --json`` document."""
        doc: dict[str, Any] = {
            "profile": self.profile,
            "unified_memory": self.unified_memory,
            "compute_constrained": self.compute_constrained,
            "gpu_count": self.gpu_count,
            "total_vram_mib": self.total_vram_mib,
            "memory_budget_mib": self.memory_budget_mib,
            "available_memory_mib": self.available_memory_mib,
            "driver_version": self.driver_version,
            "gpus": [gpu_to_dict(gpu) for gpu in self.gpus],
            "summary": list(self.summary_lines),
            "profile_line": self.profile_line,
            "notes": list(self.notes),
        }
        if self.reason is not None:
            doc["reason"] = self.reason
        doc["snapshot"] = self.snapshot()
        return doc

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> GpuInventory:
        """The inventory a snapshot (or a whole ``gpus --json`` document) describes; bad input is InvalidInput."""
        try:
            facts = facts_from_dict(data)
        except SnapshotError as exc:
            raise InvalidInput(f"Invalid GPU snapshot — {exc}",
                               remedy="pass the `snapshot` object printed by `nemoclaw-runtime gpus --json`") from exc
        return build_inventory(facts)


def detect_gpus(settings: Settings | None = None, *, nvml: object | None = None,
                host: HostProbe | None = None) -> GpuInventory:
    """Read this host's GPUs and profile. Never raises for a missing driver: that is profile ``none`` + reason.

    Args:
        settings: ``gpu_snapshot`` set → replay that file instead of reading the machine (InvalidSetting if bad).
        nvml: a pynvml-like module (default: ``pynvml``, imported on first use). Tests pass a fake.
        host: the host probe (default: the real machine).
    """
    settings = settings or Settings()
    if settings.gpu_snapshot is not None:
        return build_inventory(load_snapshot_file(settings.gpu_snapshot))
    return build_inventory(read_facts(nvml=nvml, host=host))


def read_facts(*, nvml: object | None = None, host: HostProbe | None = None) -> HostFacts:
    """The raw facts of this machine: NVML is initialised, read, and shut down again."""
    machine = read_machine(host or SystemHostProbe())
    try:
        lib = nvml if nvml is not None else load_pynvml()
        with NvmlSession(lib) as session:
            session.init()
            driver_version = read_driver_version(session)
            gpus = read_gpus(session)
    except NvmlUnavailable as exc:
        return HostFacts(machine=machine, driver_version=None, gpus=(), nvml_error=exc.reason)
    return HostFacts(machine=machine, driver_version=driver_version, gpus=gpus)


def build_inventory(facts: HostFacts) -> GpuInventory:
    """Derive the whole inventory from raw facts (pure: live reads and snapshot replays both end here)."""
    machine = facts.machine
    gpus = facts.gpus
    notes: tuple[str, ...] = ()
    if not gpus and is_jetson(machine.product_name, (), machine.tegra_device_nodes):
        gpus, notes = _jetson_firmware_gpu(machine, facts.nvml_error)
    if not gpus:
        return _no_gpu_inventory(facts)
    profile = classify(
        product_name=machine.product_name,
        gpu_names=[gpu.name for gpu in gpus],
        pci_ids=[(gpu.pci_vendor, gpu.pci_device) for gpu in gpus],
        tegra_nodes=machine.tegra_device_nodes,
    )
    unified = profile in _UNIFIED_PROFILES or all(gpu.memory_total_mib is None for gpu in gpus)
    if unified:
        total = machine.memory_total_mib
        available: int | None = machine.memory_available_mib
        per_gpu = [total // len(gpus)] * len(gpus)  # NemoClaw's split, for the per-group figures only
    else:
        per_gpu = [gpu.memory_total_mib or 0 for gpu in gpus]
        total = sum(per_gpu)
        frees = [gpu.memory_free_mib for gpu in gpus if gpu.memory_free_mib is not None]
        available = sum(frees) if frees else None
    return GpuInventory(
        profile=profile, gpus=gpus, machine=machine, driver_version=facts.driver_version,
        unified_memory=unified, compute_constrained=profile == PROFILE_JETSON,
        total_vram_mib=total, memory_budget_mib=total, available_memory_mib=available, reason=None,
        summary_lines=format_summary([(gpu.name, mib) for gpu, mib in zip(gpus, per_gpu, strict=True)], total),
        notes=notes, facts=facts,
    )


def has_usable_gpu(inv: GpuInventory) -> bool:
    """True when some GPU can run a model: a profile, a memory budget, and not a MIG GPU with no instances."""
    if inv.profile == PROFILE_NONE or not inv.memory_budget_mib:
        return False
    return any(not gpu.mig_enabled or gpu.mig_devices for gpu in inv.gpus)


def _no_gpu_inventory(facts: HostFacts) -> GpuInventory:
    return GpuInventory(
        profile=PROFILE_NONE, gpus=(), machine=facts.machine, driver_version=facts.driver_version,
        unified_memory=False, compute_constrained=False, total_vram_mib=0, memory_budget_mib=None,
        available_memory_mib=None, reason=facts.nvml_error or NO_GPU_REASON,
        summary_lines=format_summary([], 0), notes=(), facts=facts,
    )


def _jetson_firmware_gpu(machine: MachineInfo, nvml_error: str | None) -> tuple[tuple[GpuInfo, ...], tuple[str, ...]]:
    """Older JetPacks have no NVML: like NemoClaw, count the integrated GPU from the firmware name."""
    product = machine.product_name or "Jetson"
    name = product if product.upper().startswith("NVIDIA") else f"NVIDIA {product}"
    why = f" ({nvml_error})" if nvml_error else ""
    note = f"GPU inferred from the Jetson firmware; NVML lists none{why}"
    return (GpuInfo(index=0, name=name, uuid=""),), (note,)


__all__ = ["GpuInventory", "NO_GPU_REASON", "build_inventory", "detect_gpus", "has_usable_gpu", "load_pynvml"]
