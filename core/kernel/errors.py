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
        └── Terminated                     exit 143  SIGTERM (systemd, Kubernetes, timeout): cleaned up like Ctrl-C

Messages never contain secret values: build them from names, never from token strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AccessDenied", "Cancelled", "ContainerExited", "DockerUnavailable", "DownloadFailed", "EXIT_CODES",
    "ImageNotFound", "InsufficientResources", "InvalidInput", "InvalidSetting", "MissingToken", "NameTaken",
    "NemoclawError", "NoSuchContainer", "NoSuitableGpu", "PortInUse", "PreflightRefused", "PullStalled", "PullTimedOut",
    "ReadinessTimeout", "RegistryAuthFailed", "RuntimeNotReady", "Terminated", "UnknownModel", "UnsupportedRuntime",
    "ValidationFailed",
]


class NemoclawError(Exception):
    """Root of every nemoclaw-runtime error; raised as itself when no subclass fits (an unclassified engine error).

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
    """Raised when a flag, slug, image reference or environment value is malformed, before anything is touched."""

    exit_code = 2


class UnknownModel(InvalidInput, LookupError):
    """Raised when a model slug, tag or NIM name is not in the registry (or not installed in Ollama)."""


class InvalidSetting(InvalidInput):
    """Raised when an environment variable or option value cannot be parsed; ``details['variable']`` names it."""


# --- exit 3: preflight refused ---------------------------------------------------------------------------------


class PreflightRefused(NemoclawError):
    """Raised when a check before any download or start says no (a lock held, no option fits this host)."""

    exit_code = 3


class MissingToken(PreflightRefused, PermissionError):
    """Raised when a needed credential (NGC key, HF token, registry login) is absent before a pull or start."""


class AccessDenied(PreflightRefused, PermissionError):
    """Raised when the hub or a registry rejects the credential we have (wrong key, gated model not granted)."""


class NoSuitableGpu(PreflightRefused):
    """Raised when no usable NVIDIA GPU / host profile exists for the runtime asked for."""


class DockerUnavailable(PreflightRefused, ConnectionError):
    """Raised when the Docker engine cannot be reached or refuses us (no socket, permission denied, hung)."""

    default_remedy = ("start Docker (sudo systemctl start docker) and check that DOCKER_HOST names a running engine "
                      "(unset it for the local socket unix:///var/run/docker.sock)")


class PortInUse(PreflightRefused):
    """Raised when the host port to publish is already held by another process or another container."""


class InsufficientResources(PreflightRefused):
    """Raised when the host lacks the disk, VRAM or memory the chosen model needs, before any pull."""


class NameTaken(PreflightRefused):
    """Raised when the container name is already held by a container we do not manage (or on a create race)."""


class UnsupportedRuntime(PreflightRefused):
    """Raised when a runtime found is unusable: an Ollama older than the minimum, a model without tools."""


# --- exit 4: download failed -----------------------------------------------------------------------------------


class DownloadFailed(NemoclawError):
    """Raised when an image or weights download fails for a reason no subclass names (broken stream, 5xx)."""

    exit_code = 4


class PullStalled(DownloadFailed, TimeoutError):
    """Raised when the watchdog sees an image pull make no progress for the stall window; nothing is tagged."""


class PullTimedOut(DownloadFailed, TimeoutError):
    """Raised when an image pull exceeds its overall time budget (NEMOCLAW_PULL_MAX_TIMEOUT)."""


class ImageNotFound(DownloadFailed, LookupError):
    """Raised when an image (or manifest, tag, digest) is absent locally or in the registry."""


class RegistryAuthFailed(DownloadFailed, PermissionError):
    """Raised when a registry refuses a pull or login for lack of valid credentials (401/403)."""


# --- exit 5: runtime not ready ---------------------------------------------------------------------------------


class RuntimeNotReady(NemoclawError):
    """Raised when a started server does not answer as expected (wrong server on the port, API error)."""

    exit_code = 5


class ContainerExited(RuntimeNotReady):
    """Raised when the container exits, crash-loops or vanishes while we wait for it to become ready."""


class ReadinessTimeout(RuntimeNotReady, TimeoutError):
    """Raised when the server is still not ready when the readiness timeout runs out."""


class ValidationFailed(RuntimeNotReady):
    """Raised when a ready server fails the post-start probe (no answer, bad answer, no tool calling)."""


# --- exit 6 / 130 ----------------------------------------------------------------------------------------------


class NoSuchContainer(NemoclawError, LookupError):
    """Raised when the named container does not exist, or is not one we manage."""

    exit_code = 6


class Cancelled(NemoclawError):
    """Raised when the user (Ctrl-C) or the caller's cancel token stops an operation."""

    exit_code = 130
    default_remedy = "run the command again"  # what was cleaned up (or left) is the message's to say


class Terminated(Cancelled):
    """The command received SIGTERM: the same clean-up as Ctrl-C ran (nothing half-started, locks released);
    the exit code is 143 (128 + SIGTERM), as a shell and a supervisor expect."""

    exit_code = 143


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
    143: "terminated (SIGTERM): cleaned up as after Ctrl-C",
}
