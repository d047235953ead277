"""The one errors tree of nemoclaw-runtime.

Every error a user can meet is a subclass of :class:`NemoclawError`. Each carries a one-line ``message``, a
``remedy`` (what to do about it), the documented process ``exit_code``, and — for runtime failures — a classified
``cause`` and the container's ``log_tail``. Foreign exceptions (docker-py, NVML, httpx, huggingface_hub) are
translated into these in one place each; nothing else raises them raw at a user.

    NemoclawError                          exit 1  internal error / unexpected
    ├── InvalidInput (ValueError)          exit 2  bad slug, bad env value, bad flag
    │   ├── UnknownModel (LookupError)
    │   └── InvalidSetting
    ├── PreflightRefused                   exit 3  refused before anything was downloaded or started
    │   ├── MissingToken (PermissionError)
    │   ├── AccessDenied (PermissionError)       the hub / registry refused the token we have
    │   ├── NoSuitableGpu
    │   ├── DockerUnavailable (ConnectionError)
    │   ├── PortInUse
    │   ├── InsufficientResources              disk / VRAM / memory
    │   ├── NameTaken                          a container we do not own holds the name
    │   └── UnsupportedRuntime                 e.g. an Ollama older than the minimum version
    ├── DownloadFailed                     exit 4  image or weights download failed
    │   ├── PullStalled (TimeoutError)
    │   ├── PullTimedOut (TimeoutError)
    │   ├── ImageNotFound (LookupError)
    │   └── RegistryAuthFailed (PermissionError)
    ├── RuntimeNotReady                    exit 5  the server did not become ready / did not answer
    │   ├── ContainerExited
    │   ├── ReadinessTimeout (TimeoutError)
    │   └── ValidationFailed
    ├── NoSuchContainer (LookupError)      exit 6  no managed container by that name
    └── Cancelled                          exit 130  the user or the caller cancelled

Messages never contain secret values: build them from names, never from token strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class NemoclawError(Exception):
    """Root of every nemoclaw-runtime error.

    Args:
        message: one line saying what went wrong.
        remedy: one line (or a command) saying how to fix it.
        cause: a short classified cause for runtime failures (``cuda-oom``, ``hf-gated``, ...).
        log_tail: the last lines of the relevant log, oldest first.
        details: extra JSON-serialisable facts for ``--json`` output and typed callers.
    """

    exit_code: int = 1
    default_remedy: str | None = None

    def __init__(
        self,
        message: str,
        *,
        remedy: str | None = None,
        cause: str | None = None,
        log_tail: Sequence[str] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy if remedy is not None else self.default_remedy
        self.cause = cause
        self.log_tail = tuple(log_tail)
        self.details = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``--json`` and handed to typed callers."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "remedy": self.remedy,
            "exit_code": self.exit_code,
            "cause": self.cause,
            "log_tail": list(self.log_tail),
            "details": self.details,
        }


# --- exit 2: invalid input -------------------------------------------------------------------------------------


class InvalidInput(NemoclawError, ValueError):
    exit_code = 2


class UnknownModel(InvalidInput, LookupError):
    pass


class InvalidSetting(InvalidInput):
    """An environment variable or option value that cannot be parsed. ``details['variable']`` names it."""


# --- exit 3: preflight refused ---------------------------------------------------------------------------------


class PreflightRefused(NemoclawError):
    exit_code = 3


class MissingToken(PreflightRefused, PermissionError):
    pass


class AccessDenied(PreflightRefused, PermissionError):
    pass


class NoSuitableGpu(PreflightRefused):
    pass


class DockerUnavailable(PreflightRefused, ConnectionError):
    default_remedy = "start the engine (sudo systemctl start docker, or scripts/ensure-docker.sh) and check DOCKER_HOST"


class PortInUse(PreflightRefused):
    pass


class InsufficientResources(PreflightRefused):
    pass


class NameTaken(PreflightRefused):
    pass


class UnsupportedRuntime(PreflightRefused):
    pass


# --- exit 4: download failed -----------------------------------------------------------------------------------


class DownloadFailed(NemoclawError):
    exit_code = 4


class PullStalled(DownloadFailed, TimeoutError):
    pass


class PullTimedOut(DownloadFailed, TimeoutError):
    pass


class ImageNotFound(DownloadFailed, LookupError):
    pass


class RegistryAuthFailed(DownloadFailed, PermissionError):
    pass


# --- exit 5: runtime not ready ---------------------------------------------------------------------------------


class RuntimeNotReady(NemoclawError):
    exit_code = 5


class ContainerExited(RuntimeNotReady):
    pass


class ReadinessTimeout(RuntimeNotReady, TimeoutError):
    pass


class ValidationFailed(RuntimeNotReady):
    pass


# --- exit 6 / 130 ----------------------------------------------------------------------------------------------


class NoSuchContainer(NemoclawError, LookupError):
    exit_code = 6


class Cancelled(NemoclawError):
    exit_code = 130
    default_remedy = "run the command again; nothing half-started was left behind"


EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "internal error",
    2: "invalid input (unknown slug, bad environment value, bad flag)",
    3: "preflight refused (missing token, no suitable GPU, Docker unavailable, port taken, not enough disk/VRAM,"
    " name taken by a container we do not own)",
    4: "image or weights download failed (stall, auth, not found)",
    5: "runtime did not become ready (exited, timed out, failed validation)",
    6: "no such managed container",
    130: "cancelled (Ctrl-C)",
}
