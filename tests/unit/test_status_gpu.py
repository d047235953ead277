"""Per-process GPU memory: the gpu layer's NVML reading (FakeNvml), its attribution to a server's processes, the
``docker top`` PIDs the adapter parses, and the listener of a port."""

from __future__ import annotations

import os
from typing import Any

import docker.errors
import pytest

from nemoclaw_runtime.gpu import GpuProcesses, read_gpu_processes
from nemoclaw_runtime.gpu.processes import NOT_LISTED_REASON, GpuProcess
from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine
from nemoclaw_runtime.runtimes.status.gpu_usage import NvmlProcessReader, attribute, listener_pids
from tests.fake_servers.fake_status import FakeStatusServer
from tests.fakes.fake_nvml import (
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_NO_PERMISSION,
    FakeGpu,
    FakeMig,
    FakeNvml,
)


def test_processes_of_every_gpu_in_mib() -> None:
    nvml = FakeNvml([FakeGpu("NVIDIA H100", processes=[(10, 30000), (11, 2)]), FakeGpu("NVIDIA H100",
                                                                                      processes=[(10, 29000)])])
    reading = read_gpu_processes(nvml)
    assert reading.reason is None and reading.gpu_count == 2 and not reading.unified_memory
    assert [(p.pid, p.gpu_index, p.used_memory_mib) for p in reading.processes] == [(10, 0, 30000), (11, 0, 2),
                                                                                    (10, 1, 29000)]
    assert reading.processes[0].gpu_uuid.startswith("GPU-") and nvml.shutdown_count == nvml.init_count == 1


def test_no_driver_is_a_reason() -> None:
    reading = read_gpu_processes(FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED))
    assert reading.processes == () and "not loaded" in (reading.reason or "")


def test_a_driver_that_cannot_list_processes_is_a_reason() -> None:
    reading = read_gpu_processes(FakeNvml([FakeGpu("NVIDIA T4")],
                                          not_supported={"nvmlDeviceGetComputeRunningProcesses"}))
    assert reading.reason == NOT_LISTED_REASON


def test_a_binding_without_the_function_is_a_reason() -> None:
    reading = read_gpu_processes(FakeNvml([FakeGpu("NVIDIA T4")], absent={"nvmlDeviceGetComputeRunningProcesses"}))
    assert reading.reason == NOT_LISTED_REASON


def test_no_permission_on_one_gpu_keeps_the_others() -> None:
    class OneDenied(FakeNvml):
        def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Any:
            if handle.gpu == 0:
                self._enter("nvmlDeviceGetComputeRunningProcesses")
                from tests.fakes.fake_nvml import NVMLError

                raise NVMLError(NVML_ERROR_NO_PERMISSION)
            return super().nvmlDeviceGetComputeRunningProcesses(handle)

    reading = read_gpu_processes(OneDenied([FakeGpu("A"), FakeGpu("B", processes=[(5, 10)])]))
    assert reading.reason is None and [(p.pid, p.gpu_index) for p in reading.processes] == [(5, 1)]


def test_unified_memory_and_unavailable_memory() -> None:
    reading = read_gpu_processes(FakeNvml([FakeGpu("NVIDIA GB10", memory_total_mib=None, processes=[(9, None)])]))
    assert reading.unified_memory and reading.processes[0].used_memory_mib is None


def test_mig_devices_are_asked_too() -> None:
    gpu = FakeGpu("NVIDIA A100", mig_mode=(NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE),
                  mig_devices=[FakeMig("MIG-1", "1g.10gb", 9728)], processes=[(3, 100)])
    nvml = FakeNvml([gpu])
    reading = read_gpu_processes(nvml)
    assert [p.pid for p in reading.processes] == [3]
    assert nvml.calls.count("nvmlDeviceGetComputeRunningProcesses") == 2  # the GPU and its MIG device


def test_the_raw_not_available_sentinel_is_none() -> None:
    class RawBinding(FakeNvml):
        def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Any:
            from types import SimpleNamespace

            self._enter("nvmlDeviceGetComputeRunningProcesses")
            return [SimpleNamespace(pid=4, usedGpuMemory=2**64 - 1), SimpleNamespace(pid=0, usedGpuMemory=1)]

    reading = read_gpu_processes(RawBinding([FakeGpu("X")]))
    assert [(p.pid, p.used_memory_mib) for p in reading.processes] == [(4, None)]


def test_the_reader_keeps_nvml_open_until_closed() -> None:
    nvml = FakeNvml([FakeGpu("NVIDIA L4", processes=[(1, 1)])])
    reader = NvmlProcessReader(nvml)
    assert reader().processes and reader().processes
    assert nvml.init_count == 1 and nvml.shutdown_count == 0
    reader.close()
    assert nvml.shutdown_count == 1
    assert NvmlProcessReader(FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED))().reason


# --- attribution ------------------------------------------------------------------------------------------------


def reading(*processes: GpuProcess, unified: bool = False) -> GpuProcesses:
    return GpuProcesses(processes=processes, gpu_count=2, unified_memory=unified)


def test_attribution_sums_the_servers_own_processes() -> None:
    usage = attribute(reading(GpuProcess(1, 0, "u0", 100), GpuProcess(2, 1, "u1", 50), GpuProcess(3, 1, "u1", 9)),
                      [1, 2])
    assert (usage.gpus, usage.memory_mib, usage.source, usage.processes) == ((0, 1), 150, "nvml", 2)


def test_attribution_with_no_gpu_process_is_zero_with_a_reason() -> None:
    usage = attribute(reading(GpuProcess(3, 0, "u0", 9)), [1])
    assert usage.memory_mib == 0 and usage.gpus == () and "none of its processes" in (usage.reason or "")


def test_attribution_without_pids_is_unknown() -> None:
    usage = attribute(reading(GpuProcess(3, 0, "u0", 9)), None, why_no_pids="docker top failed")
    assert usage.memory_mib is None and usage.reason == "docker top failed"


def test_unified_memory_unreadable_rss_is_unknown() -> None:
    usage = attribute(reading(GpuProcess(3, 0, "u0", None), unified=True), [3], rss=lambda pid: None)
    assert usage.memory_mib is None and usage.source == "rss" and "resident memory" in (usage.reason or "")


# --- docker top and listeners -----------------------------------------------------------------------------------


class _Api:
    """docker-py's request helpers as the adapter's ``docker top`` uses them (with its short timeout)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def _url(self, pathfmt: str, *args: str) -> str:
        return pathfmt.format(*args)

    def _get(self, url: str, **kwargs: Any) -> Any:
        assert url.endswith("/top") and kwargs.get("timeout")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def _result(self, response: Any, json: bool = False) -> Any:
        return response


class _Client:
    def __init__(self, answer: Any) -> None:
        self.api = _Api(answer)


def test_adapter_reads_the_pid_column_of_docker_top() -> None:
    top = {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
           "Processes": [["root", "4242", "4200", "0", "09:00", "?", "00:00:01", "vllm serve"],
                         ["root", "4243", "4242", "9", "09:00", "?", "00:01:00", "EngineCore"], ["short"]]}
    assert DockerEngine(_Client(top)).container_pids("c") == [4242, 4243]  # type: ignore[arg-type]
    assert DockerEngine(_Client({"Titles": ["CMD"], "Processes": []})).container_pids("c") == []  # type: ignore[arg-type]


def test_adapter_top_of_a_stopped_container_is_empty_and_a_missing_one_is_exit_6() -> None:
    from nemoclaw_runtime.kernel.errors import NoSuchContainer

    class Response:
        def __init__(self, status: int) -> None:
            self.status_code = status
            self.reason = "x"
            self.url = "http+docker://localhost/containers/c/top"

    conflict = docker.errors.APIError("Container c is not running", response=Response(409))  # type: ignore[arg-type]
    assert DockerEngine(_Client(conflict)).container_pids("c") == []  # type: ignore[arg-type]
    missing = docker.errors.NotFound("No such container: c", response=Response(404))  # type: ignore[arg-type]
    with pytest.raises(NoSuchContainer):
        DockerEngine(_Client(missing)).container_pids("c")  # type: ignore[arg-type]


def test_listener_of_a_local_port() -> None:
    with FakeStatusServer("vllm") as server:
        pids, why = listener_pids(server.port)
    if pids is None:  # a platform where listening sockets' owners cannot be read: the reason says so
        assert why
    else:
        assert os.getpid() in pids and why is None
