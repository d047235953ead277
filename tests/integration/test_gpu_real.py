"""Real NVML on a real GPU (marker ``gpu``): skipped, with the reason, where NVML finds no GPU."""

from __future__ import annotations

import json

import pytest

from nemoclaw_runtime.gpu import PROFILE_NONE, PROFILES, GpuInventory, detect_gpus, has_usable_gpu

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def inventory() -> GpuInventory:
    inv = detect_gpus()
    if inv.gpu_count == 0:
        pytest.skip(f"NVML finds no GPU here: {inv.reason}")
    return inv


def test_real_readings_are_sane(inventory: GpuInventory) -> None:
    assert inventory.gpu_count > 0
    assert inventory.profile in PROFILES and inventory.profile != PROFILE_NONE
    for gpu in inventory.gpus:
        assert gpu.name.strip(), gpu
        assert gpu.uuid.startswith("GPU-"), gpu
        assert gpu.memory_total_mib is None or gpu.memory_total_mib > 0
        assert gpu.memory_free_mib is None or 0 <= gpu.memory_free_mib <= (gpu.memory_total_mib or 10**9)
        assert gpu.pci_vendor in (None, 0x10DE)
        assert gpu.compute_capability is None or gpu.compute_capability[0] >= 3
        for mig in gpu.mig_devices:
            assert mig.uuid.startswith("MIG-") and (mig.memory_total_mib is None or mig.memory_total_mib > 0)
    assert inventory.driver_version
    assert inventory.memory_budget_mib and inventory.memory_budget_mib > 0
    assert has_usable_gpu(inventory) or any(g.mig_enabled and not g.mig_devices for g in inventory.gpus)
    assert inventory.summary_lines[0].startswith("NVIDIA GPU detected")


def test_the_real_machine_replays_from_its_snapshot(inventory: GpuInventory) -> None:
    replayed = GpuInventory.from_snapshot(json.loads(json.dumps(inventory.to_dict())))
    assert replayed == inventory


def test_reading_twice_is_stable(inventory: GpuInventory) -> None:
    again = detect_gpus()
    assert [(g.uuid, g.name, g.memory_total_mib) for g in again.gpus] == \
        [(g.uuid, g.name, g.memory_total_mib) for g in inventory.gpus]
    assert again.profile == inventory.profile
