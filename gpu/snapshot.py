"""Record and replay a machine's GPU facts: the versioned snapshot schema.

``nemoclaw-runtime gpus --json`` prints ``snapshot``; ``NEMOCLAW_GPU_SNAPSHOT=FILE`` replays it (or a whole
``gpus --json`` document) instead of NVML. Schema 1, stable::

    {"schema": 1,
     "machine": {"arch": "x86_64" | "aarch64", "product_name": str,
                 "memory_total_mib": int, "memory_available_mib": int,
                 "tegra_device_nodes": bool},                                  # optional, default false
     "driver_version": str | null,
     "nvml_error": str | null,                                                # optional: why NVML gave nothing
     "gpus": [{"index": int, "name": str, "uuid": str,
               "memory_total_mib": int | null, "memory_free_mib": int | null,
               "pci_device_id": str | null,                                   # "0xDDDDVVVV", as nvidia-smi
               "mig_enabled": bool,
               "compute_capability": "9.0" | null,                            # optional
               "mig_devices": [{"index": int, "uuid": str, "name": str,
                                "memory_total_mib": int | null}]}]}           # optional
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nemoclaw_runtime.gpu.facts import GpuInfo, HostFacts, MachineInfo, MigDevice, normalise_pci_device_id
from nemoclaw_runtime.kernel.checks import read_regular_file
from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.kernel.text import JsonTooDeep, loads_json

__all__ = ["SCHEMA_VERSION", "SnapshotError", "facts_from_dict", "facts_to_dict", "gpu_to_dict", "load_snapshot_file"]

SCHEMA_VERSION = 1
SNAPSHOT_VARIABLE = "NEMOCLAW_GPU_SNAPSHOT"
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024
MAX_SNAPSHOT_GPUS = 256


class SnapshotError(ValueError):
    """A snapshot document that does not follow the schema; the message names the offending field."""


# --- writing ---------------------------------------------------------------------------------------------------


def facts_to_dict(facts: HostFacts) -> dict[str, Any]:
    machine = facts.machine
    return {
        "schema": SCHEMA_VERSION,
        "machine": {
            "arch": machine.arch,
            "product_name": machine.product_name,
            "memory_total_mib": machine.memory_total_mib,
            "memory_available_mib": machine.memory_available_mib,
            "tegra_device_nodes": machine.tegra_device_nodes,
        },
        "driver_version": facts.driver_version,
        "nvml_error": facts.nvml_error,
        "gpus": [gpu_to_dict(gpu) for gpu in facts.gpus],
    }


def gpu_to_dict(gpu: GpuInfo) -> dict[str, Any]:
    cc = gpu.compute_capability
    return {
        "index": gpu.index,
        "name": gpu.name,
        "uuid": gpu.uuid,
        "memory_total_mib": gpu.memory_total_mib,
        "memory_free_mib": gpu.memory_free_mib,
        "pci_device_id": gpu.pci_device_id,
        "mig_enabled": gpu.mig_enabled,
        "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        "mig_devices": [
            {"index": m.index, "uuid": m.uuid, "name": m.name, "memory_total_mib": m.memory_total_mib}
            for m in gpu.mig_devices
        ],
    }


# --- reading ---------------------------------------------------------------------------------------------------


def facts_from_dict(data: Any) -> HostFacts:
    """Parse a snapshot, or a whole ``gpus --json`` document holding one; raises :class:`SnapshotError`."""
    if isinstance(data, Mapping) and "schema" not in data and isinstance(data.get("snapshot"), Mapping):
        data = data["snapshot"]
    if not isinstance(data, Mapping):
        raise SnapshotError("the document is not a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise SnapshotError(f"unsupported schema {data.get('schema')!r} (expected {SCHEMA_VERSION})")
    gpus = data.get("gpus")
    if not isinstance(gpus, list):
        raise SnapshotError("gpus must be a list")
    if len(gpus) > MAX_SNAPSHOT_GPUS:
        raise SnapshotError(f"gpus lists {len(gpus)} GPUs (at most {MAX_SNAPSHOT_GPUS})")
    return HostFacts(
        machine=_machine(_object(data.get("machine"), "machine")),
        driver_version=_opt_str(data, "driver_version", "driver_version"),
        gpus=tuple(_gpu(_object(g, f"gpus[{i}]"), f"gpus[{i}]") for i, g in enumerate(gpus)),
        nvml_error=_opt_str(data, "nvml_error", "nvml_error"),
    )


def load_snapshot_file(path: Path) -> HostFacts:
    """Read ``NEMOCLAW_GPU_SNAPSHOT``; any problem is :class:`InvalidSetting` naming the variable (exit 2).

    Only a regular file is read, and at most :data:`MAX_SNAPSHOT_BYTES` of it: a directory, a device such as
    ``/dev/zero``, a FIFO or a socket is refused without blocking (the file is opened non-blocking and checked
    before any read), and JSON nested deeper than the schema could ever be is refused before parsing.
    """
    try:
        data = loads_json(_read_bounded(path).decode("utf-8"))
        return facts_from_dict(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, JsonTooDeep, SnapshotError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidSetting(
            f'Invalid {SNAPSHOT_VARIABLE}="{path}" — {problem}',
            remedy=f"point {SNAPSHOT_VARIABLE} at the output of `nemoclaw-runtime gpus --json`, or unset it",
            details={"variable": SNAPSHOT_VARIABLE, "path": str(path)},
        ) from exc


def _read_bounded(path: Path) -> bytes:
    try:
        return read_regular_file(path, MAX_SNAPSHOT_BYTES)
    except ValueError as exc:  # not a regular file, or too large
        raise SnapshotError(str(exc)) from None


def _machine(data: Mapping[str, Any]) -> MachineInfo:
    tegra = data.get("tegra_device_nodes", False)
    if not isinstance(tegra, bool):
        raise SnapshotError("machine.tegra_device_nodes must be true or false")
    return MachineInfo(
        arch=_str(data, "arch", "machine.arch"),
        product_name=_str(data, "product_name", "machine.product_name"),
        memory_total_mib=_int(data, "memory_total_mib", "machine.memory_total_mib"),
        memory_available_mib=_int(data, "memory_available_mib", "machine.memory_available_mib"),
        tegra_device_nodes=tegra,
    )


def _gpu(data: Mapping[str, Any], where: str) -> GpuInfo:
    mig_enabled = data.get("mig_enabled")
    if not isinstance(mig_enabled, bool):
        raise SnapshotError(f"{where}.mig_enabled must be true or false")
    migs = data.get("mig_devices", [])
    if not isinstance(migs, list):
        raise SnapshotError(f"{where}.mig_devices must be a list")
    return GpuInfo(
        index=_int(data, "index", f"{where}.index"),
        name=_str(data, "name", f"{where}.name"),
        uuid=_str(data, "uuid", f"{where}.uuid"),
        memory_total_mib=_opt_int(data, "memory_total_mib", where) or None,  # 0 is "unknown", as from NVML
        memory_free_mib=_opt_int(data, "memory_free_mib", where),
        pci_device_id=normalise_pci_device_id(_opt_str(data, "pci_device_id", f"{where}.pci_device_id")),
        mig_enabled=mig_enabled,
        compute_capability=_compute_capability(data.get("compute_capability"), where),
        mig_devices=tuple(_mig(_object(m, f"{where}.mig_devices[{j}]"), f"{where}.mig_devices[{j}]")
                          for j, m in enumerate(migs[:16])),
    )


def _mig(data: Mapping[str, Any], where: str) -> MigDevice:
    return MigDevice(
        index=_int(data, "index", f"{where}.index"),
        uuid=_str(data, "uuid", f"{where}.uuid"),
        name=_str(data, "name", f"{where}.name"),
        memory_total_mib=_opt_int(data, "memory_total_mib", where) or None,
    )


def _compute_capability(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    major, dot, minor = str(value).partition(".")
    if not isinstance(value, str) or not dot or not major.isdigit() or not minor.isdigit():
        raise SnapshotError(f'{where}.compute_capability must look like "9.0" or be null')
    return int(major), int(minor)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SnapshotError(f"{where} must be an object")
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise SnapshotError(f"{where} must be a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise SnapshotError(f"{where} must be a string or null")
    return value


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SnapshotError(f"{where} must be a non-negative integer")
    return value


def _opt_int(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SnapshotError(f"{where}.{key} must be a non-negative integer or null")
    return value
