"""A fake ``pynvml``: only the functions nemoclaw-runtime calls, with switches for the ways real NVML fails.

    nvml = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", memory_total_mib=81559)])
    nvml = FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)          # no driver installed
    nvml = FakeNvml([FakeGpu("NVIDIA GB10", memory_total_mib=None)])   # memory "Not Supported" (unified)
    nvml = FakeNvml(gpus, missing={"nvmlDeviceGetCudaComputeCapability"})  # symbol absent from the driver
    nvml = FakeNvml(gpus, absent={"nvmlDeviceGetMigMode"})             # function absent from the binding
    nvml = FakeNvml.from_snapshot(json.load(...))                      # a recorded machine, for record/replay
    nvml = FakeNvml([FakeGpu("NVIDIA H100", processes=[(4242, 30000)])])  # pid 4242 holds 30000 MiB on GPU 0

Errors are raised the way pynvml raises them: ``NVMLError(code)`` dispatches to the ``NVMLError_<Name>``
subclass and carries ``.value``. Device calls before ``nvmlInit`` fail with "Uninitialized", as the real library
does, so a test notices if the funnel forgets to initialise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

MIB = 1024 * 1024

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1

_ERROR_NAMES = {
    NVML_ERROR_UNINITIALIZED: ("Uninitialized", "Uninitialized"),
    NVML_ERROR_INVALID_ARGUMENT: ("InvalidArgument", "Invalid Argument"),
    NVML_ERROR_NOT_SUPPORTED: ("NotSupported", "Not Supported"),
    NVML_ERROR_NO_PERMISSION: ("NoPermission", "Insufficient Permissions"),
    NVML_ERROR_NOT_FOUND: ("NotFound", "Not Found"),
    NVML_ERROR_DRIVER_NOT_LOADED: ("DriverNotLoaded", "Driver Not Loaded"),
    NVML_ERROR_LIBRARY_NOT_FOUND: ("LibraryNotFound", "NVML Shared Library Not Found"),
    NVML_ERROR_FUNCTION_NOT_FOUND: ("FunctionNotFound", "Function Not Found"),
    NVML_ERROR_GPU_IS_LOST: ("GpuIsLost", "GPU is lost"),
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: ("LibRmVersionMismatch", "RM has detected an NVML/RM version mismatch."),
    NVML_ERROR_UNKNOWN: ("Unknown", "Unknown Error"),
}


class NVMLError(Exception):
    """Like pynvml's: ``NVMLError(code)`` builds the matching subclass; ``.value`` is the code."""

    _by_code: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN) -> NVMLError:  # noqa: PYI034 - may build a subclass
        target = NVMLError._by_code.get(value, cls) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value
        return obj

    def __init__(self, *args: Any) -> None:
        super().__init__(self.value)  # .value was set by __new__ (a subclass fixes its own code)

    def __str__(self) -> str:
        return _ERROR_NAMES.get(self.value, ("", f"NVML Error with code {self.value}"))[1]


def _make_error_classes() -> dict[str, type[NVMLError]]:
    classes: dict[str, type[NVMLError]] = {}
    for code, (suffix, _text) in _ERROR_NAMES.items():
        def new(cls: type[NVMLError], *args: Any, _code: int = code) -> NVMLError:
            return NVMLError.__new__(NVMLError, _code)
        klass = type(f"NVMLError_{suffix}", (NVMLError,), {"__new__": new})
        NVMLError._by_code[code] = klass
        classes[klass.__name__] = klass
    return classes


_CLASSES = _make_error_classes()
NVMLError_NotSupported = _CLASSES["NVMLError_NotSupported"]
NVMLError_FunctionNotFound = _CLASSES["NVMLError_FunctionNotFound"]
NVMLError_LibraryNotFound = _CLASSES["NVMLError_LibraryNotFound"]
NVMLError_DriverNotLoaded = _CLASSES["NVMLError_DriverNotLoaded"]
NVMLError_Uninitialized = _CLASSES["NVMLError_Uninitialized"]
NVMLError_NotFound = _CLASSES["NVMLError_NotFound"]


@dataclass
class FakeMig:
    uuid: str
    name: str
    memory_total_mib: int | None = None
    slot: int | None = None  # position among the MIG slots; default: its order in the list


@dataclass
class FakeGpu:
    """One fake GPU. ``None`` on a reading means NVML answers "Not Supported" for it."""

    name: str
    uuid: str = ""
    memory_total_mib: int | None = 81559
    memory_free_mib: int | None = None
    pci_device_id: int | None = 0x233010DE
    compute_capability: tuple[int, int] | None = (9, 0)
    mig_mode: tuple[int, int] | None = None
    mig_devices: list[FakeMig] = field(default_factory=list)
    max_mig_devices: int = 7
    #: Compute processes ``(pid, used MiB)``; ``None`` MiB is NVML's "not available" (pynvml gives ``None``).
    processes: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass(frozen=True)
class _Handle:
    gpu: int
    mig_slot: int | None = None


class FakeNvml:
    """Stands in for the ``pynvml`` module. Switches:

    - ``init_error``: ``nvmlInit`` fails with this code (LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED, ...).
    - ``not_supported``: functions that answer "Not Supported" on every device.
    - ``missing``: functions whose symbol the driver lacks ("Function Not Found", as pynvml raises it).
    - ``absent``: functions the binding itself does not have (``getattr`` fails).
    - ``errors``: ``{function: code}`` for any other failure (GPU lost, no permission, ...).
    """

    NVMLError = NVMLError
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE

    def __init__(self, gpus: Iterable[FakeGpu] = (), *, driver_version: str | None = "580.95.05",
                 init_error: int | None = None, not_supported: Iterable[str] = (), missing: Iterable[str] = (),
                 absent: Iterable[str] = (), errors: Mapping[str, int] | None = None) -> None:
        self.gpus = list(gpus)
        for number, gpu in enumerate(self.gpus):
            gpu.uuid = gpu.uuid or f"GPU-{number:08x}-fake-0000-0000-{number:012x}"
        self.driver_version = driver_version
        self.init_error = init_error
        self.not_supported = set(not_supported)
        self.missing = set(missing)
        self.absent = set(absent)
        self.errors = dict(errors or {})
        self.calls: list[str] = []
        self.init_count = 0
        self.shutdown_count = 0
        self._refcount = 0

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "absent"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> FakeNvml:
        """The NVML a recorded machine would present (memory ``null`` → "Not Supported", and so on)."""
        if snapshot.get("nvml_error"):
            not_loaded = "not loaded" in str(snapshot["nvml_error"]).lower()
            return cls(init_error=NVML_ERROR_DRIVER_NOT_LOADED if not_loaded else NVML_ERROR_LIBRARY_NOT_FOUND)
        return cls([_gpu_from_snapshot(g) for g in snapshot["gpus"]], driver_version=snapshot.get("driver_version"))

    @property
    def initialised(self) -> bool:
        return self._refcount > 0

    # --- the pynvml surface we use -------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.init_count += 1
        self._refcount += 1

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")
        if self._refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self.shutdown_count += 1
        self._refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        if self.driver_version is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        self._enter("nvmlDeviceGetName")
        return self._mig(handle).name if handle.mig_slot is not None else self._gpu(handle).name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        self._enter("nvmlDeviceGetUUID")
        return self._mig(handle).uuid if handle.mig_slot is not None else self._gpu(handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo")
        if handle.mig_slot is not None:
            total, free = self._mig(handle).memory_total_mib, None
        else:
            total, free = self._gpu(handle).memory_total_mib, self._gpu(handle).memory_free_mib
        if total is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # GB10 / Jetson: no dedicated framebuffer
        free = total if free is None else free
        return SimpleNamespace(total=total * MIB, free=free * MIB, used=(total - free) * MIB)

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> SimpleNamespace:
        self._enter("nvmlDeviceGetPciInfo")
        value = self._gpu(handle).pci_device_id
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(pciDeviceId=value, busId=f"00000000:{handle.gpu + 1:02X}:00.0")

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability")
        value = self._gpu(handle).compute_capability
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        self._enter("nvmlDeviceGetMigMode")
        mode = self._gpu(handle).mig_mode
        if mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [mode[0], mode[1]]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount")
        gpu = self._gpu(handle)
        if gpu.mig_mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _Handle:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex")
        gpu = self._gpu(handle)
        if gpu.mig_mode is None or gpu.mig_mode[0] != NVML_DEVICE_MIG_ENABLE:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index not in self._mig_slots(gpu):
            raise NVMLError(NVML_ERROR_NOT_FOUND)  # an empty slot
        return _Handle(handle.gpu, index)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        if handle.mig_slot is not None:
            return []
        return [SimpleNamespace(pid=pid, usedGpuMemory=None if mib is None else mib * MIB, gpuInstanceId=0xFFFFFFFF,
                                computeInstanceId=0xFFFFFFFF) for pid, mib in self._gpu(handle).processes]

    # --- helpers -------------------------------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self._refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if name in self.missing:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        if name in self.not_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if name in self.errors:
            raise NVMLError(self.errors[name])

    def _gpu(self, handle: _Handle) -> FakeGpu:
        return self.gpus[handle.gpu]

    def _mig_slots(self, gpu: FakeGpu) -> dict[int, FakeMig]:
        return {(m.slot if m.slot is not None else i): m for i, m in enumerate(gpu.mig_devices)}

    def _mig(self, handle: _Handle) -> FakeMig:
        return self._mig_slots(self._gpu(handle))[handle.mig_slot or 0]


def _gpu_from_snapshot(data: Mapping[str, Any]) -> FakeGpu:
    cc = data.get("compute_capability")
    migs = [FakeMig(uuid=m["uuid"], name=m["name"], memory_total_mib=m.get("memory_total_mib"), slot=m["index"])
            for m in data.get("mig_devices", [])]
    return FakeGpu(
        name=data["name"],
        uuid=data["uuid"],
        memory_total_mib=data.get("memory_total_mib"),
        memory_free_mib=data.get("memory_free_mib"),
        pci_device_id=int(data["pci_device_id"], 16) if data.get("pci_device_id") else None,
        compute_capability=tuple(int(p) for p in cc.split(".")) if cc else None,  # type: ignore[arg-type]
        mig_mode=(NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE) if data.get("mig_enabled") else None,
        mig_devices=migs,
    )


class FakeHost:
    """A :class:`~nemoclaw_runtime.gpu.host.HostProbe` with canned files, device nodes and memory."""

    def __init__(self, *, machine: str = "x86_64", files: Mapping[str, bytes] | None = None,
                 existing: Iterable[str] = (), memory_total_mib: int = 64000,
                 memory_available_mib: int = 60000) -> None:
        self._machine = machine
        self.files = dict(files or {})
        self.existing = set(existing)
        self.memory_total_mib = memory_total_mib
        self.memory_available_mib = memory_available_mib
        self.reads: list[tuple[str, int]] = []

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> FakeHost:
        machine = snapshot["machine"]
        product = machine["product_name"]
        return cls(
            machine=machine["arch"],
            files={"/sys/class/dmi/id/product_name": (product + "\n").encode()} if product else {},
            existing={"/dev/nvmap"} if machine.get("tegra_device_nodes") else set(),
            memory_total_mib=machine["memory_total_mib"],
            memory_available_mib=machine["memory_available_mib"],
        )

    def machine(self) -> str:
        return self._machine

    def read_bytes(self, path: str, limit: int) -> bytes | None:
        self.reads.append((path, limit))
        data = self.files.get(path)
        return None if data is None else data[:limit]

    def exists(self, path: str) -> bool:
        return path in self.existing

    def memory_bytes(self) -> tuple[int, int]:
        return self.memory_total_mib * MIB, self.memory_available_mib * MIB
