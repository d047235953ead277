"""nemoclaw-runtime: serve a model on this NVIDIA machine with vLLM, NIM or Ollama.

The public library API lives here. Names are imported on first use so that ``import nemoclaw_runtime`` (and the
CLI's ``--help``) never loads docker-py, httpx or NVML.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime._version import __version__

# Library warnings (an NVML reading that failed, say) go to whoever configured logging, never straight to stderr
# where they would break `--json` output.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Settings": "nemoclaw_runtime.kernel.settings",
    "Secret": "nemoclaw_runtime.kernel.secret",
    "CancelToken": "nemoclaw_runtime.kernel.clock",
    "SystemClock": "nemoclaw_runtime.kernel.clock",
    "ContainerSpec": "nemoclaw_runtime.runtimes.docker.spec",
    "GpuRequest": "nemoclaw_runtime.runtimes.docker.spec",
}
for _name in ("detect_gpus", "models", "local_options", "select_option", "plan", "up", "pull", "list_managed",
              "stop", "logs", "validate", "status", "watch_status", "fit", "lock", "write_lock", "export_kubernetes"):
    _EXPORTS[_name] = "nemoclaw_runtime.api"
for _name in ("FitResult", "ModelFacts", "ModelSource", "DirectoryModelSource", "HubModelSource", "StaticModelSource",
              "refusal"):
    _EXPORTS[_name] = "nemoclaw_runtime.runtimes.fit"
_EXPORTS.update({
    "GpuInventory": "nemoclaw_runtime.gpu",
    "Plan": "nemoclaw_runtime.runtimes.drivers.contract",
    "UpResult": "nemoclaw_runtime.runtimes.drivers.contract",
    "UpRequest": "nemoclaw_runtime.runtimes.drivers.contract",
    "PulledImage": "nemoclaw_runtime.runtimes.docker.port",
    "Lock": "nemoclaw_runtime.runtimes.lockfile",
    "ManagedContainerView": "nemoclaw_runtime.runtimes.docker.containers",
    "ValidationResult": "nemoclaw_runtime.runtimes.server.validate",
    "load_registry": "nemoclaw_runtime.registry",
    "LocalOptions": "nemoclaw_runtime.runtimes.onboarding.menu",
    "LocalOption": "nemoclaw_runtime.runtimes.onboarding.menu",
    "AbsentOption": "nemoclaw_runtime.runtimes.onboarding.menu",
    "ModelChoice": "nemoclaw_runtime.runtimes.onboarding.menu",
    "Selection": "nemoclaw_runtime.runtimes.onboarding.selection",
    "StatusReport": "nemoclaw_runtime.runtimes.status.values",
    "ServerStatus": "nemoclaw_runtime.runtimes.status.values",
    "EngineMetrics": "nemoclaw_runtime.runtimes.status.metrics",
    "ClusterPlan": "nemoclaw_runtime.runtimes.cluster",
    "KubernetesExport": "nemoclaw_runtime.runtimes.export",
    "GroupFit": "nemoclaw_runtime.runtimes.fit",
})
for _name in ("Event", "EventSink", "PhaseChanged", "Progress", "Heartbeat", "LogLine", "Info", "Warning",
              "event_to_dict"):
    _EXPORTS[_name] = "nemoclaw_runtime.kernel.events"
for _name in ("NemoclawError", "InvalidInput", "UnknownModel", "InvalidSetting", "PreflightRefused", "MissingToken",
              "AccessDenied", "NoSuitableGpu", "DockerUnavailable", "PortInUse", "InsufficientResources", "NameTaken",
              "UnsupportedRuntime", "DownloadFailed", "PullStalled", "PullTimedOut", "ImageNotFound",
              "RegistryAuthFailed", "RuntimeNotReady", "ContainerExited", "ReadinessTimeout", "ValidationFailed",
              "NoSuchContainer", "Cancelled"):
    _EXPORTS[_name] = "nemoclaw_runtime.kernel.errors"

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemoclaw_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from nemoclaw_runtime.api import (
        detect_gpus,
        export_kubernetes,
        fit,
        list_managed,
        local_options,
        lock,
        logs,
        models,
        plan,
        pull,
        select_option,
        status,
        stop,
        up,
        validate,
        watch_status,
        write_lock,
    )
    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
    from nemoclaw_runtime.kernel.errors import *  # noqa: F403
    from nemoclaw_runtime.kernel.events import *  # noqa: F403
    from nemoclaw_runtime.kernel.secret import Secret
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.registry import load_registry
    from nemoclaw_runtime.runtimes.cluster import ClusterPlan
    from nemoclaw_runtime.runtimes.docker.containers import ManagedContainerView
    from nemoclaw_runtime.runtimes.docker.port import PulledImage
    from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest
    from nemoclaw_runtime.runtimes.drivers.contract import Plan, UpRequest, UpResult
    from nemoclaw_runtime.runtimes.export import KubernetesExport
    from nemoclaw_runtime.runtimes.fit import (
        DirectoryModelSource,
        FitResult,
        GroupFit,
        HubModelSource,
        ModelFacts,
        ModelSource,
        StaticModelSource,
        refusal,
    )
    from nemoclaw_runtime.runtimes.lockfile import Lock
    from nemoclaw_runtime.runtimes.onboarding.menu import AbsentOption, LocalOption, LocalOptions, ModelChoice
    from nemoclaw_runtime.runtimes.onboarding.selection import Selection
    from nemoclaw_runtime.runtimes.server.validate import ValidationResult
    from nemoclaw_runtime.runtimes.status.metrics import EngineMetrics
    from nemoclaw_runtime.runtimes.status.values import ServerStatus, StatusReport
