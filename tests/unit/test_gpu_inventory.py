"""The inventory: profiles, memory budgets, summaries, and record (fake NVML) → replay (snapshot) equality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.gpu import (
    PROFILE_DGX_SPARK,
    PROFILE_DGX_STATION,
    PROFILE_JETSON,
    PROFILE_LINUX_NVIDIA,
    PROFILE_NONE,
    GpuInventory,
    detect_gpus,
    has_usable_gpu,
)
from nemoclaw_runtime.gpu.inventory import NO_GPU_REASON
from nemoclaw_runtime.kernel.errors import InvalidInput
from tests.fakes.fake_nvml import (
    NVML_DEVICE_MIG_DISABLE,
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeGpu,
    FakeHost,
    FakeMig,
    FakeNvml,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def dmi_host(product: str = "", **kw: Any) -> FakeHost:
    files = {"/sys/class/dmi/id/product_name": f"{product}\n".encode()} if product else {}
    return FakeHost(files=files, **kw)


def detect(gpus: list[FakeGpu], product: str = "", **kw: Any) -> GpuInventory:
    host_kw = {k: kw.pop(k) for k in ("machine", "existing", "memory_total_mib", "memory_available_mib") if k in kw}
    return detect_gpus(nvml=FakeNvml(gpus, **kw), host=dmi_host(product, **host_kw))


def h100(mib: int = 81920, **kw: Any) -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", memory_total_mib=mib, **kw)


# --- record → replay -------------------------------------------------------------------------------------------


def test_every_profile_has_a_fixture() -> None:
    profiles = {GpuInventory.from_snapshot(load(name)).profile for name in FIXTURE_NAMES}
    assert profiles == {PROFILE_DGX_SPARK, PROFILE_DGX_STATION, PROFILE_JETSON, PROFILE_LINUX_NVIDIA, PROFILE_NONE}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_nvml_path_and_snapshot_path_give_the_same_inventory(name: str) -> None:
    recorded = load(name)
    fake = FakeNvml.from_snapshot(recorded)
    live = detect_gpus(nvml=fake, host=FakeHost.from_snapshot(recorded))
    assert live.snapshot() == recorded  # the fake machine records exactly the fixture
    assert GpuInventory.from_snapshot(recorded) == live
    assert GpuInventory.from_snapshot(live.to_dict()) == live  # a whole `gpus --json` document replays too
    assert json.loads(json.dumps(live.to_dict())) == live.to_dict()
    assert fake.init_count == fake.shutdown_count  # NVML shut down after reading


def test_snapshot_setting_replays_the_file_without_touching_nvml(tmp_path: Path) -> None:
    from nemoclaw_runtime.kernel.settings import Settings

    path = tmp_path / "snap.json"
    path.write_text(json.dumps(load("dgx_spark")))
    fake = FakeNvml([h100()])
    inv = detect_gpus(Settings(gpu_snapshot=path), nvml=fake, host=dmi_host())
    assert inv.profile == PROFILE_DGX_SPARK
    assert fake.calls == []


def test_optional_snapshot_fields_may_be_absent() -> None:
    snap = load("a100_mig")
    for gpu in snap["gpus"]:
        del gpu["compute_capability"], gpu["mig_devices"]
    del snap["nvml_error"], snap["machine"]["tegra_device_nodes"]
    inv = GpuInventory.from_snapshot(snap)
    assert inv.gpus[0].compute_capability is None
    assert inv.gpus[0].mig_devices == ()
    assert inv.gpus[0].mig_enabled


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda s: s.update(schema=2), "schema"),
        (lambda s: s.pop("machine"), "machine"),
        (lambda s: s["gpus"][0].pop("name"), "gpus[0].name"),
        (lambda s: s["gpus"][0].update(memory_total_mib="80GB"), "memory_total_mib"),
        (lambda s: s["gpus"][0].update(mig_enabled="yes"), "mig_enabled"),
        (lambda s: s["gpus"][0].update(compute_capability="Hopper"), "compute_capability"),
        (lambda s: s.update(gpus={}), "gpus"),
    ],
)
def test_a_malformed_snapshot_names_the_field(mutate: Any, problem: str) -> None:
    snap = load("h100_x8")
    mutate(snap)
    with pytest.raises(InvalidInput, match=problem.replace("[", r"\[").replace("]", r"\]")):
        GpuInventory.from_snapshot(snap)


# --- profiles --------------------------------------------------------------------------------------------------


def test_dgx_spark_uses_host_memory_as_the_gpu_budget() -> None:
    inv = GpuInventory.from_snapshot(load("dgx_spark"))
    assert inv.profile == PROFILE_DGX_SPARK
    assert inv.unified_memory and not inv.compute_constrained
    assert inv.gpus[0].memory_total_mib is None  # "Not Supported" is unknown, never 0
    assert inv.total_vram_mib == inv.memory_budget_mib == 121000
    assert inv.available_memory_mib == 109250
    assert inv.summary_lines == ("NVIDIA GPU detected (NVIDIA GB10, 121000 MB)",)
    assert inv.profile_line == "Host profile: dgx-spark (unified memory: GPU budget = host memory 118 GiB)"
    assert inv.gpus[0].compute_capability_sm == 121
    assert has_usable_gpu(inv)


def test_a_gb10_gpu_alone_makes_a_spark() -> None:
    inv = detect([FakeGpu("NVIDIA GB10", memory_total_mib=None)], memory_total_mib=119000)
    assert inv.profile == PROFILE_DGX_SPARK
    assert inv.memory_budget_mib == 119000


@pytest.mark.parametrize("product", ["NVIDIA DGX Spark", "DGX_Spark", "dgx-spark founders"])
def test_spark_product_names(product: str) -> None:
    assert detect([h100()], product).profile == PROFILE_DGX_SPARK


@pytest.mark.parametrize("product", ["P3830", "NVIDIA P3830-0001", "DGX Station", "NVIDIA DGX_Station A100",
                                     "Station with GB300"])
def test_station_product_names(product: str) -> None:
    assert detect([h100()], product).profile == PROFILE_DGX_STATION


@pytest.mark.parametrize("product", ["P3830X", "XP3830", "Station", "GB300 server"])
def test_near_miss_products_are_generic_linux(product: str) -> None:
    assert detect([h100()], product).profile == PROFILE_LINUX_NVIDIA


@pytest.mark.parametrize("pci", [0x31C210DE, 0x31C310DE])
def test_station_by_gb300_pci_id_alone(pci: int) -> None:
    inv = detect([FakeGpu("NVIDIA GB300", memory_total_mib=284208, pci_device_id=pci)])
    assert inv.profile == PROFILE_DGX_STATION
    assert inv.gpus[0].pci_vendor == 0x10DE
    assert inv.summary_lines == ("NVIDIA GPU detected (NVIDIA GB300, 284208 MB)",)


def test_station_pci_rule_needs_the_nvidia_vendor() -> None:
    from nemoclaw_runtime.gpu.profiles import is_station_pci

    assert is_station_pci([(0x10DE, 0x31C2)])
    assert not is_station_pci([(0x1234, 0x31C2), (0x10DE, 0x2330), (None, None)])


def test_dgx_station_fixture_sums_mixed_gpus() -> None:
    inv = GpuInventory.from_snapshot(load("dgx_station"))
    assert inv.profile == PROFILE_DGX_STATION
    assert not inv.unified_memory
    assert inv.total_vram_mib == inv.memory_budget_mib == 284208 + 97887
    assert inv.summary_lines == (
        "NVIDIA GPU detected: 2 GPUs, 382095 MB VRAM",
        "    - NVIDIA GB300 (284208 MB)",
        "    - NVIDIA RTX PRO 6000 Blackwell Workstation Edition (97887 MB)",
    )
    assert inv.profile_line == "Host profile: dgx-station (GPU budget = 373 GiB VRAM)"


def test_jetson_is_unified_and_compute_constrained() -> None:
    inv = GpuInventory.from_snapshot(load("jetson_orin"))
    assert inv.profile == PROFILE_JETSON
    assert inv.unified_memory and inv.compute_constrained
    assert inv.memory_budget_mib == 62841
    assert "compute-constrained" in inv.profile_line


@pytest.mark.parametrize("product", ["Jetson AGX Thor", "NVIDIA Orin Nano", "quill tegra186", "Xavier NX"])
def test_jetson_products(product: str) -> None:
    assert detect([FakeGpu("NVIDIA Tegra iGPU", memory_total_mib=None)], product).profile == PROFILE_JETSON


def test_jetson_without_nvml_counts_the_firmware_gpu() -> None:
    host = dmi_host(existing={"/dev/nvhost-ctrl-gpu"}, memory_total_mib=7600, machine="aarch64")
    host.files["/sys/firmware/devicetree/base/model"] = b"NVIDIA Jetson Xavier NX Developer Kit\x00"
    inv = detect_gpus(nvml=FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND), host=host)
    assert inv.profile == PROFILE_JETSON
    assert [g.name for g in inv.gpus] == ["NVIDIA Jetson Xavier NX Developer Kit"]
    assert inv.memory_budget_mib == 7600
    assert inv.reason is None
    assert "NVML" in inv.notes[0]
    assert GpuInventory.from_snapshot(inv.snapshot()) == inv


# --- no GPU ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "words"), [(NVML_ERROR_LIBRARY_NOT_FOUND, "not installed"),
                                             (NVML_ERROR_DRIVER_NOT_LOADED, "not loaded")])
def test_no_driver_is_profile_none_with_the_reason(code: int, words: str) -> None:
    inv = detect_gpus(nvml=FakeNvml(init_error=code), host=dmi_host("PowerEdge R760"))
    assert inv.profile == PROFILE_NONE
    assert words in (inv.reason or "")
    assert inv.gpus == () and inv.gpu_count == 0
    assert inv.total_vram_mib == 0 and inv.memory_budget_mib is None and inv.available_memory_mib is None
    assert inv.summary_lines == ("No NVIDIA GPU detected",)
    assert inv.to_dict()["reason"] == inv.reason
    assert not has_usable_gpu(inv)


def test_spark_firmware_without_a_driver_is_still_none() -> None:
    inv = detect_gpus(nvml=FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED), host=dmi_host("NVIDIA DGX Spark"))
    assert inv.profile == PROFILE_NONE


def test_nvml_with_zero_gpus() -> None:
    inv = detect([])
    assert inv.profile == PROFILE_NONE
    assert inv.reason == NO_GPU_REASON
    assert inv.driver_version == "580.95.05"


def test_reason_only_in_json_when_there_is_no_gpu() -> None:
    assert "reason" not in GpuInventory.from_snapshot(load("h100_x8")).to_dict()


# --- readings --------------------------------------------------------------------------------------------------


def test_every_optional_reading_unsupported_leaves_the_gpu_intact() -> None:
    gpu = FakeGpu("NVIDIA L40S", memory_total_mib=46068, pci_device_id=None, compute_capability=None)
    inv = detect([gpu], not_supported={"nvmlSystemGetDriverVersion", "nvmlDeviceGetMigMode"})
    info = inv.gpus[0]
    assert (info.name, info.memory_total_mib) == ("NVIDIA L40S", 46068)
    assert info.pci_device_id is None and info.pci_device is None
    assert info.compute_capability is None and info.compute_capability_sm is None
    assert not info.mig_enabled
    assert inv.driver_version is None
    assert inv.profile == PROFILE_LINUX_NVIDIA


def test_missing_symbols_are_unknown_readings() -> None:
    inv = detect([h100()], missing={"nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetMigMode",
                                    "nvmlDeviceGetPciInfo"})
    assert inv.gpus[0].compute_capability is None
    assert inv.gpus[0].pci_device_id is None
    assert inv.memory_budget_mib == 81920


def test_a_zero_memory_total_is_unknown_not_real() -> None:
    inv = detect([FakeGpu("NVIDIA Thing", memory_total_mib=0)], memory_total_mib=32000)
    assert inv.gpus[0].memory_total_mib is None
    assert inv.unified_memory
    assert inv.memory_budget_mib == 32000


def test_a_gpu_without_a_handle_is_left_out() -> None:
    inv = detect([h100()], errors={"nvmlDeviceGetHandleByIndex": NVML_ERROR_GPU_IS_LOST})
    assert inv.profile == PROFILE_NONE


def test_pci_id_and_compute_capability_are_decoded() -> None:
    inv = GpuInventory.from_snapshot(load("h100_x8"))
    gpu = inv.gpus[0]
    assert (gpu.pci_vendor, gpu.pci_device, gpu.pci_device_id) == (0x10DE, 0x2330, "0x233010DE")
    assert gpu.compute_capability == (9, 0)
    assert inv.min_compute_capability == (9, 0)


def test_mixed_compute_capability_reports_the_lowest() -> None:
    inv = GpuInventory.from_snapshot(load("mixed"))
    assert inv.min_compute_capability == (8, 0)


def test_free_memory_is_summed_and_a_full_gpu_is_zero_not_unknown() -> None:
    inv = detect([h100(memory_free_mib=0), h100(memory_free_mib=1000)])
    assert [g.memory_free_mib for g in inv.gpus] == [0, 1000]
    assert inv.available_memory_mib == 1000


# --- MIG -------------------------------------------------------------------------------------------------------


def test_mig_devices_are_read_and_empty_slots_skipped() -> None:
    migs = [FakeMig("MIG-aaaa", "NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40192, slot=0),
            FakeMig("MIG-bbbb", "NVIDIA A100-SXM4-80GB MIG 1g.10gb", 9728, slot=4)]
    gpu = FakeGpu("NVIDIA A100-SXM4-80GB", memory_total_mib=81920,
                  mig_mode=(NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE), mig_devices=migs)
    inv = detect([gpu])
    info = inv.gpus[0]
    assert info.mig_enabled
    assert [(m.index, m.uuid, m.memory_total_mib) for m in info.mig_devices] == [(0, "MIG-aaaa", 40192),
                                                                                 (4, "MIG-bbbb", 9728)]
    assert inv.memory_budget_mib == 81920
    assert has_usable_gpu(inv)
    assert any("MIG enabled" in line for line in inv.human_lines())


def test_mig_pending_but_not_current_is_disabled() -> None:
    gpu = FakeGpu("NVIDIA A100-SXM4-80GB", mig_mode=(NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_ENABLE))
    assert not detect([gpu]).gpus[0].mig_enabled


def test_mig_enabled_without_instances_is_not_usable() -> None:
    gpu = FakeGpu("NVIDIA A100-SXM4-80GB", mig_mode=(NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE))
    inv = detect([gpu])
    assert inv.gpus[0].mig_devices == ()
    assert not has_usable_gpu(inv)
    assert has_usable_gpu(detect([gpu, h100()]))


# --- summary lines ---------------------------------------------------------------------------------------------


def test_summary_one_name_several_gpus() -> None:
    inv = detect([h100(), h100()])
    assert inv.summary_lines == ("NVIDIA GPU detected (2x NVIDIA H100 80GB HBM3, 163840 MB)",)
    assert inv.profile_line == "Host profile: linux-nvidia (GPU budget = 160 GiB VRAM)"


def test_summary_mixed_names_prefix_every_group_when_one_repeats() -> None:
    inv = GpuInventory.from_snapshot(load("mixed"))
    assert inv.summary_lines == (
        "NVIDIA GPU detected: 3 GPUs, 204800 MB VRAM",
        "    - 2x NVIDIA H100 80GB HBM3 (163840 MB)",
        "    - 1x NVIDIA A100 40GB (40960 MB)",
    )


def test_summary_mixed_names_without_repeats_has_no_prefix() -> None:
    inv = detect([h100(), FakeGpu("NVIDIA A100 40GB", memory_total_mib=40960)])
    assert inv.summary_lines[1:] == ("    - NVIDIA H100 80GB HBM3 (81920 MB)", "    - NVIDIA A100 40GB (40960 MB)")


def test_summary_normalises_whitespace_in_names() -> None:
    inv = detect([h100(), FakeGpu("  NVIDIA   H100 80GB HBM3 ", memory_total_mib=81920)])
    assert inv.summary_lines == ("NVIDIA GPU detected (2x NVIDIA H100 80GB HBM3, 163840 MB)",)


def test_summary_with_blank_names() -> None:
    inv = detect([FakeGpu("", memory_total_mib=1000), FakeGpu("", memory_total_mib=2000)])
    assert inv.summary_lines == ("NVIDIA GPU detected: 2 GPU(s), 3000 MB VRAM",)


def test_human_lines_end_with_profile_and_driver() -> None:
    lines = GpuInventory.from_snapshot(load("dgx_spark")).human_lines()
    assert lines[0] == "NVIDIA GPU detected (NVIDIA GB10, 121000 MB)"
    assert lines[-2:] == ["Host profile: dgx-spark (unified memory: GPU budget = host memory 118 GiB)",
                          "NVIDIA driver: 580.95.05"]


def test_json_document_fields() -> None:
    doc = GpuInventory.from_snapshot(load("h100_x8")).to_dict()
    assert doc["profile"] == "linux-nvidia"
    assert (doc["gpu_count"], doc["total_vram_mib"], doc["unified_memory"]) == (8, 8 * 81559, False)
    assert doc["summary"] == ["NVIDIA GPU detected (8x NVIDIA H100 80GB HBM3, 652472 MB)"]
    assert doc["snapshot"]["schema"] == 1
    assert doc["gpus"][0]["pci_device_id"] == "0x233010DE"


def test_package_exports_resolve() -> None:
    from nemoclaw_runtime import gpu

    assert len(set(gpu.__all__)) == len(gpu.__all__)
    assert all(getattr(gpu, name) is not None for name in gpu.__all__)
    assert gpu.PROFILES == ("dgx-spark", "dgx-station", "jetson", "linux-nvidia", "none")
