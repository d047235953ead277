"""The NVML funnel: lazy init, absent readings as None (logged once), no-driver failures as a reason."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from nemoclaw_runtime.gpu.nvml import NvmlSession, NvmlUnavailable, load_pynvml
from tests.fakes.fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_UNINITIALIZED,
    FakeGpu,
    FakeNvml,
)


def test_query_initialises_lazily_and_the_context_shuts_down() -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")])
    with NvmlSession(fake) as nvml:
        assert fake.init_count == 0
        assert nvml.query("nvmlDeviceGetCount") == 1
        assert nvml.query("nvmlDeviceGetCount") == 1
    assert (fake.init_count, fake.shutdown_count) == (1, 1)
    assert not fake.initialised


def test_a_session_that_never_queried_does_not_shut_down() -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")])
    with NvmlSession(fake):
        pass
    assert fake.calls == []


def test_not_supported_is_none_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml([FakeGpu("NVIDIA GB10", memory_total_mib=None)])
    caplog.set_level(logging.DEBUG, logger="nemoclaw_runtime.gpu.nvml")
    with NvmlSession(fake) as nvml:
        handle = nvml.query("nvmlDeviceGetHandleByIndex", 0)
        assert nvml.query("nvmlDeviceGetMemoryInfo", handle) is None
        assert nvml.query("nvmlDeviceGetMemoryInfo", handle) is None
    records = [r for r in caplog.records if "nvmlDeviceGetMemoryInfo" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert "not supported" in records[0].getMessage()


def test_function_not_found_in_the_driver_is_none() -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")], missing={"nvmlDeviceGetCudaComputeCapability"})
    with NvmlSession(fake) as nvml:
        handle = nvml.query("nvmlDeviceGetHandleByIndex", 0)
        assert nvml.query("nvmlDeviceGetCudaComputeCapability", handle) is None
        assert nvml.query("nvmlDeviceGetName", handle) == "NVIDIA L4"


def test_a_function_the_binding_lacks_is_none() -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")], absent={"nvmlDeviceGetMigMode"})
    assert not hasattr(fake, "nvmlDeviceGetMigMode")
    with NvmlSession(fake) as nvml:
        handle = nvml.query("nvmlDeviceGetHandleByIndex", 0)
        assert nvml.query("nvmlDeviceGetMigMode", handle) is None


def test_other_reading_errors_are_none_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")], errors={"nvmlDeviceGetPciInfo": NVML_ERROR_GPU_IS_LOST})
    caplog.set_level(logging.DEBUG, logger="nemoclaw_runtime.gpu.nvml")
    with NvmlSession(fake) as nvml:
        handle = nvml.query("nvmlDeviceGetHandleByIndex", 0)
        for _ in range(3):
            assert nvml.query("nvmlDeviceGetPciInfo", handle) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "GPU is lost" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1"),
        (NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
        (NVML_ERROR_LIB_RM_VERSION_MISMATCH, "reboot"),
        (NVML_ERROR_NO_PERMISSION, "Insufficient Permissions"),
    ],
)
def test_init_failures_become_one_line_reasons(code: int, expected: str) -> None:
    fake = FakeNvml(init_error=code)
    with pytest.raises(NvmlUnavailable) as info, NvmlSession(fake) as nvml:
        nvml.query("nvmlDeviceGetCount")
    assert expected in info.value.reason
    assert "\n" not in info.value.reason
    assert fake.shutdown_count == 0


def test_uninitialized_during_a_read_means_no_driver() -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")], errors={"nvmlDeviceGetCount": NVML_ERROR_UNINITIALIZED})
    with pytest.raises(NvmlUnavailable), NvmlSession(fake) as nvml:
        nvml.query("nvmlDeviceGetCount")
    assert fake.shutdown_count == 1  # what was initialised is still shut down


def test_concurrent_queries_initialise_once() -> None:
    fake = FakeNvml([FakeGpu("NVIDIA L4")])
    results: list[int] = []
    with NvmlSession(fake) as nvml:
        threads = [threading.Thread(target=lambda: results.append(nvml.query("nvmlDeviceGetCount")))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert results == [1] * 8
    assert fake.init_count == 1


def test_missing_binding_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml → ImportError
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py"):
        load_pynvml()
