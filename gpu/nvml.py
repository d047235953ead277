"""The one funnel every NVML call goes through (after nvitop's ``nvmlQuery``, minus its module metaprogramming).

``NvmlSession(lib).query("nvmlDeviceGetName", handle)`` resolves the function by name on ``lib`` (``pynvml`` or
the fake in ``tests/fakes/fake_nvml.py``), initialises NVML lazily under a lock, and sorts failures:

- "Not Supported", "Function Not Found" (a symbol this driver lacks) and "Not Found" (an empty MIG slot) are
  *absent readings*: ``query`` returns ``None`` and logs once per function, at debug level.
- "Library Not Found", "Driver Not Loaded", "Uninitialized" (and any failure of ``nvmlInit`` itself) mean there is
  no usable driver: :class:`NvmlUnavailable` carries a one-line reason and the inventory becomes profile ``none``.
- Any other NVML error on a reading (GPU lost, no permission, ...) is also ``None``, logged once as a warning.

``with NvmlSession(lib) as nvml:`` shuts NVML down after reading (pynvml reference-counts init/shutdown, so two
sessions in one process are fine).
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, final

__all__ = ["NvmlSession", "NvmlUnavailable", "load_pynvml"]

logger = logging.getLogger(__name__)

# NVML return codes (nvml.h); compared by value so the real pynvml and the fake classify alike.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18

_ABSENT = {NVML_ERROR_NOT_SUPPORTED: "not supported", NVML_ERROR_FUNCTION_NOT_FOUND: "function not found",
           NVML_ERROR_NOT_FOUND: "not found"}
_NO_DRIVER = {NVML_ERROR_UNINITIALIZED, NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND}
_MAX_LOGGED = 1024  # bound the log-once memory, as nvitop does

DRIVER_HINT = "install or load the NVIDIA driver (https://www.nvidia.com/Download/index.aspx), then run again"


class NvmlUnavailable(Exception):
    """NVML cannot be used on this host; ``reason`` is one line fit for a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_pynvml() -> Any:
    """The real binding, imported only when NVML is actually read (keeps ``--help`` fast)."""
    try:
        import pynvml
    except ImportError as exc:  # a broken install; nvidia-ml-py is a dependency
        raise NvmlUnavailable("the nvidia-ml-py package (pynvml) is not installed") from exc
    return pynvml


def no_driver_reason(code: int | None, detail: str) -> str:
    """The user-facing reason for an NVML failure that means "no usable driver"."""
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return f"NVML library not found (libnvidia-ml.so.1): the NVIDIA driver is not installed — {DRIVER_HINT}"
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return f"the NVIDIA driver is not loaded (NVML: Driver Not Loaded) — {DRIVER_HINT}"
    if code == NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return ("NVML and the loaded NVIDIA kernel driver have different versions (a driver update without a "
                "reboot?) — reboot or reload the nvidia kernel modules")
    return f"NVML could not be initialised ({detail})"


@final
class NvmlSession:
    """A bounded NVML session over a pynvml-like module. Thread-safe; use as a context manager."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._initialised = False
        self._logged: set[tuple[str, int | None]] = set()

    def __enter__(self) -> NvmlSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def init(self) -> None:
        """Initialise NVML once; raises :class:`NvmlUnavailable` with the reason when it cannot be."""
        with self._lock:
            if self._initialised:
                return
            try:
                self._lib.nvmlInit()
            except self._lib.NVMLError as exc:
                code = getattr(exc, "value", None)
                raise NvmlUnavailable(no_driver_reason(code, str(exc))) from exc
            self._initialised = True

    def shutdown(self) -> None:
        with self._lock:
            if not self._initialised:
                return
            self._initialised = False
            try:
                self._lib.nvmlShutdown()
            except self._lib.NVMLError as exc:  # nothing useful to do; the readings are already taken
                logger.debug("nvmlShutdown failed: %s", exc)

    def query(self, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``lib.<fn_name>(*args)``: the value, or ``None`` when NVML cannot give this reading."""
        self.init()
        fn = getattr(self._lib, fn_name, None)
        if fn is None:  # an nvidia-ml-py too old to know the function: same as the driver lacking it
            self._log_once(fn_name, NVML_ERROR_FUNCTION_NOT_FOUND, "not in this pynvml")
            return None
        try:
            return fn(*args, **kwargs)
        except self._lib.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in _NO_DRIVER:
                raise NvmlUnavailable(no_driver_reason(code, str(exc))) from exc
            self._log_once(fn_name, code, str(exc))
            return None

    def _log_once(self, fn_name: str, code: int | None, detail: str) -> None:
        key = (fn_name, code)
        if key in self._logged or len(self._logged) >= _MAX_LOGGED:
            return
        self._logged.add(key)
        if code in _ABSENT:
            logger.debug("NVML %s: %s (%s); treated as unknown", fn_name, _ABSENT[code], detail)
        else:
            logger.warning("NVML %s failed: %s; treated as unknown", fn_name, detail)
