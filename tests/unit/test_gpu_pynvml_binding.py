"""The real ``pynvml`` wrappers over a stub ``libnvidia-ml``: proves our calls match the binding's signatures and
return types (ctypes structs, lists, str/bytes) and that its error classes reach the funnel as we expect.

The stub stands in for the C library only (``pynvml.nvmlLib``): every pynvml function runs for real, packs its
ctypes arguments and checks the return code. No GPU or driver is needed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import pytest

from nemoclaw_runtime.gpu import PROFILE_DGX_SPARK, PROFILE_LINUX_NVIDIA, PROFILE_NONE, detect_gpus
from tests.fakes.fake_nvml import FakeHost

pynvml = pytest.importorskip("pynvml")

SUCCESS, NOT_SUPPORTED, INVALID_ARGUMENT = 0, 3, 2
MIB = 1024 * 1024


def _set_out(ref: Any, value: Any) -> None:
    ref._obj.value = value  # byref(x)._obj is x


def _handle_index(handle: Any) -> int:
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0) - 1


class StubLib:
    """The C entry points pynvml looks up; GPUs are ``(name, total MiB or None, pciDeviceId, (major, minor))``."""

    def __init__(self, gpus: list[tuple[str, int | None, int, tuple[int, int]]], *, init_rc: int = SUCCESS,
                 lacks: frozenset[str] = frozenset()) -> None:
        self.gpus = gpus
        self.init_rc = init_rc
        self.lacks = lacks
        self.initialised = 0

    def __getattr__(self, name: str) -> Callable[..., int]:
        if name in self.lacks or not hasattr(type(self), "c_" + name):
            raise AttributeError(name)  # pynvml turns this into NVMLError_FunctionNotFound
        return getattr(self, "c_" + name)  # type: ignore[no-any-return]

    def c_nvmlInitWithFlags(self, flags: int) -> int:
        self.initialised += self.init_rc == SUCCESS
        return self.init_rc

    def c_nvmlShutdown(self) -> int:
        self.initialised -= 1
        return SUCCESS

    def c_nvmlSystemGetDriverVersion(self, buf: Any, size: Any) -> int:
        buf.value = b"580.95.05"
        return SUCCESS

    def c_nvmlDeviceGetCount_v2(self, count: Any) -> int:
        _set_out(count, len(self.gpus))
        return SUCCESS

    def c_nvmlDeviceGetHandleByIndex_v2(self, index: Any, device: Any) -> int:
        address = ctypes.c_void_p(index.value + 1)  # a fake opaque pointer that encodes the index
        ctypes.memmove(ctypes.addressof(device._obj), ctypes.addressof(address), ctypes.sizeof(address))
        return SUCCESS

    def c_nvmlDeviceGetName(self, handle: Any, buf: Any, size: Any) -> int:
        buf.value = self.gpus[_handle_index(handle)][0].encode()
        return SUCCESS

    def c_nvmlDeviceGetUUID(self, handle: Any, buf: Any, size: Any) -> int:
        buf.value = f"GPU-stub-{_handle_index(handle)}".encode()
        return SUCCESS

    def c_nvmlDeviceGetMemoryInfo(self, handle: Any, memory: Any) -> int:
        total = self.gpus[_handle_index(handle)][1]
        if total is None:
            return NOT_SUPPORTED
        memory._obj.total, memory._obj.free, memory._obj.used = total * MIB, (total - 500) * MIB, 500 * MIB
        return SUCCESS

    def c_nvmlDeviceGetPciInfo_v3(self, handle: Any, info: Any) -> int:
        info._obj.pciDeviceId = self.gpus[_handle_index(handle)][2]
        return SUCCESS

    def c_nvmlDeviceGetCudaComputeCapability(self, handle: Any, major: Any, minor: Any) -> int:
        cc = self.gpus[_handle_index(handle)][3]
        _set_out(major, cc[0])
        _set_out(minor, cc[1])
        return SUCCESS

    def c_nvmlDeviceGetMigMode(self, handle: Any, current: Any, pending: Any) -> int:
        return NOT_SUPPORTED


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Callable[[StubLib], StubLib]:
    def install(lib: StubLib) -> StubLib:
        monkeypatch.setattr(pynvml, "nvmlLib", lib)
        monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
        monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
        return lib
    return install


def test_discrete_gpus_through_the_real_binding(stub: Callable[[StubLib], StubLib]) -> None:
    lib = stub(StubLib([("NVIDIA H100 80GB HBM3", 81559, 0x233010DE, (9, 0)),
                        ("NVIDIA H100 80GB HBM3", 81559, 0x233010DE, (9, 0))]))
    inv = detect_gpus(nvml=pynvml, host=FakeHost())
    assert inv.profile == PROFILE_LINUX_NVIDIA
    assert [g.name for g in inv.gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert [g.uuid for g in inv.gpus] == ["GPU-stub-0", "GPU-stub-1"]
    assert inv.gpus[0].memory_total_mib == 81559 and inv.gpus[0].memory_free_mib == 81059
    assert inv.gpus[0].pci_device_id == "0x233010DE"
    assert inv.gpus[0].compute_capability == (9, 0)
    assert not inv.gpus[0].mig_enabled
    assert inv.driver_version == "580.95.05"
    assert inv.summary_lines == ("NVIDIA GPU detected (2x NVIDIA H100 80GB HBM3, 163118 MB)",)
    assert lib.initialised == 0  # shut down after reading


def test_gb10_memory_not_supported_through_the_real_binding(stub: Callable[[StubLib], StubLib]) -> None:
    stub(StubLib([("NVIDIA GB10", None, 0x2E1210DE, (12, 1))], lacks=frozenset({"nvmlDeviceGetPciInfo_v3"})))
    inv = detect_gpus(nvml=pynvml, host=FakeHost(machine="aarch64", memory_total_mib=121000))
    assert inv.profile == PROFILE_DGX_SPARK
    assert inv.gpus[0].memory_total_mib is None
    assert inv.gpus[0].pci_device_id is None  # symbol missing from this "driver": FunctionNotFound → None
    assert inv.unified_memory and inv.memory_budget_mib == 121000


def test_driver_not_loaded_through_the_real_binding(stub: Callable[[StubLib], StubLib]) -> None:
    stub(StubLib([], init_rc=9))
    inv = detect_gpus(nvml=pynvml, host=FakeHost())
    assert inv.profile == PROFILE_NONE
    assert "not loaded" in (inv.reason or "")
