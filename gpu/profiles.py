"""Host profiles: which kind of NVIDIA machine this is, decided from firmware, GPU names and PCI ids.

The rules and their order follow NemoClaw's ``detectNvidiaPlatform`` / ``dgx-station-identity.ts`` exactly (the
regexes are theirs), with one change of source: GPU names and PCI ids come from NVML instead of nvidia-smi/sysfs.

    dgx-spark     product matches DGX Spark, or any GPU name matches GB10
    dgx-station   product matches P3830 / DGX Station / Station+GB300, or a GPU with PCI id 0x31c2/0x31c3 (0x10de)
    jetson        product (or a GPU name) matches Jetson|Tegra|Thor|Orin|Xavier, or Tegra device nodes exist
    linux-nvidia  any other host with an NVIDIA GPU
    none          no GPU could be read
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# The profile names are declared once, in kernel/names.py (the registry and the settings share them).
from nemoclaw_runtime.kernel.names import (
    PROFILE_DGX_SPARK,
    PROFILE_DGX_STATION,
    PROFILE_JETSON,
    PROFILE_LINUX_NVIDIA,
    PROFILE_NONE,
    PROFILES,
)

# NemoClaw's regexes, verbatim (src/lib/inference/nim.ts, dgx-station-identity.ts).
_SPARK_PRODUCT = re.compile(r"DGX[_\s-]+Spark", re.IGNORECASE)
_SPARK_GPU_NAME = re.compile(r"GB10", re.IGNORECASE)
_STATION_P3830 = re.compile(r"(?<![A-Za-z0-9])P3830(?![A-Za-z0-9])", re.IGNORECASE)
_STATION_PRODUCT = re.compile(r"DGX[_\s-]+Station", re.IGNORECASE)
_STATION_WORD = re.compile(r"Station", re.IGNORECASE)
_GB300 = re.compile(r"GB300", re.IGNORECASE)
_JETSON = re.compile(r"Jetson|Tegra|Thor|Orin|Xavier", re.IGNORECASE)

NVIDIA_PCI_VENDOR = 0x10DE
STATION_GB300_PCI_DEVICES = frozenset({0x31C2, 0x31C3})

# Device nodes that exist only on Tegra (Jetson) kernels; NemoClaw checks the same four.
TEGRA_DEVICE_NODES: tuple[str, ...] = ("/dev/nvhost-gpu", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-ctrl", "/dev/nvmap")


def is_spark(product_name: str, gpu_names: Iterable[str]) -> bool:
    return bool(_SPARK_PRODUCT.search(product_name)) or any(_SPARK_GPU_NAME.search(n) for n in gpu_names)


def is_station_product(product_name: str) -> bool:
    return bool(
        _STATION_P3830.search(product_name)
        or _STATION_PRODUCT.search(product_name)
        or (_STATION_WORD.search(product_name) and _GB300.search(product_name))
    )


def is_station_pci(pci_ids: Iterable[tuple[int | None, int | None]]) -> bool:
    """True when any (vendor, device) pair is a DGX Station GB300 GPU."""
    return any(vendor == NVIDIA_PCI_VENDOR and device in STATION_GB300_PCI_DEVICES for vendor, device in pci_ids)


def is_jetson(product_name: str, gpu_names: Iterable[str], tegra_nodes: bool) -> bool:
    return tegra_nodes or bool(_JETSON.search(product_name)) or any(_JETSON.search(n) for n in gpu_names)


def classify(
    *,
    product_name: str,
    gpu_names: Sequence[str],
    pci_ids: Sequence[tuple[int | None, int | None]],
    tegra_nodes: bool = False,
) -> str:
    """The host profile of a machine that has at least one NVIDIA GPU (the caller decides ``none``)."""
    if is_spark(product_name, gpu_names):
        return PROFILE_DGX_SPARK
    if is_station_product(product_name) or is_station_pci(pci_ids):
        return PROFILE_DGX_STATION
    if is_jetson(product_name, gpu_names, tegra_nodes):
        return PROFILE_JETSON
    return PROFILE_LINUX_NVIDIA


__all__ = [
    "NVIDIA_PCI_VENDOR",
    "PROFILES",
    "PROFILE_DGX_SPARK",
    "PROFILE_DGX_STATION",
    "PROFILE_JETSON",
    "PROFILE_LINUX_NVIDIA",
    "PROFILE_NONE",
    "STATION_GB300_PCI_DEVICES",
    "TEGRA_DEVICE_NODES",
    "classify",
    "is_jetson",
    "is_spark",
    "is_station_pci",
    "is_station_product",
]
