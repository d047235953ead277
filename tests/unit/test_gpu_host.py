"""Host facts: firmware product name (DMI, then device tree), architecture, Tegra nodes, host memory."""

from __future__ import annotations

import pytest

from nemoclaw_runtime.gpu.host import (
    DEVICE_TREE_MODEL,
    DMI_PRODUCT_NAME,
    FIRMWARE_VALUE_MAX_BYTES,
    SystemHostProbe,
    normalise_arch,
    read_machine,
)
from tests.fakes.fake_nvml import FakeHost


def test_dmi_product_name_wins_and_loses_its_newline() -> None:
    host = FakeHost(files={DMI_PRODUCT_NAME: b"NVIDIA DGX Spark\n", DEVICE_TREE_MODEL: b"Other\x00"})
    assert read_machine(host).product_name == "NVIDIA DGX Spark"


def test_device_tree_model_is_the_fallback_with_nul_stripped() -> None:
    host = FakeHost(files={DEVICE_TREE_MODEL: b"NVIDIA Jetson AGX Orin Developer Kit\x00"})
    assert read_machine(host).product_name == "NVIDIA Jetson AGX Orin Developer Kit"


def test_blank_dmi_falls_back_to_the_device_tree() -> None:
    host = FakeHost(files={DMI_PRODUCT_NAME: b"   \n", DEVICE_TREE_MODEL: b"Jetson Thor\x00"})
    assert read_machine(host).product_name == "Jetson Thor"


@pytest.mark.parametrize("raw", [b"DGX Spark\x01", b"DGX\nSpark\n", b"x" * (FIRMWARE_VALUE_MAX_BYTES + 1)])
def test_garbage_firmware_values_are_ignored(raw: bytes) -> None:
    assert read_machine(FakeHost(files={DMI_PRODUCT_NAME: raw})).product_name == ""


def test_firmware_reads_are_bounded() -> None:
    host = FakeHost(files={DMI_PRODUCT_NAME: b"y" * 100_000})
    read_machine(host)
    assert all(limit <= FIRMWARE_VALUE_MAX_BYTES + 2 for _path, limit in host.reads)


def test_no_firmware_files_is_an_empty_product() -> None:
    assert read_machine(FakeHost()).product_name == ""


def test_memory_is_in_mib_and_tegra_nodes_are_seen() -> None:
    host = FakeHost(machine="arm64", existing={"/dev/nvmap"}, memory_total_mib=62841, memory_available_mib=55020)
    machine = read_machine(host)
    assert (machine.arch, machine.memory_total_mib, machine.memory_available_mib) == ("aarch64", 62841, 55020)
    assert machine.tegra_device_nodes


@pytest.mark.parametrize(("raw", "arch"), [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "aarch64"),
                                           ("arm64", "aarch64"), ("ppc64le", "ppc64le"), ("", "unknown")])
def test_arch_normalisation(raw: str, arch: str) -> None:
    assert normalise_arch(raw) == arch


def test_the_real_host_answers_sanely() -> None:
    machine = read_machine(SystemHostProbe())
    assert machine.arch
    assert machine.memory_total_mib > 0
    assert 0 <= machine.memory_available_mib <= machine.memory_total_mib
    assert "\x00" not in machine.product_name


def test_the_real_probe_reads_missing_files_as_none(tmp_path: object) -> None:
    assert SystemHostProbe().read_bytes("/nonexistent/nemoclaw/product_name", 10) is None
