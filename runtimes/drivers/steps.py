"""Steps several drivers share: an OpenAI-compatible validation, cache folders, the port rule for our own servers,
the GPU line of a plan and the context window a result reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import PortInUse
from nemoclaw_runtime.kernel.events import EventSink, Info, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.docker.spec import GpuRequest
from nemoclaw_runtime.runtimes.drivers.contract import Plan, Served, Services
from nemoclaw_runtime.runtimes.server.host_ports import port_owner

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInventory

__all__ = ["effective_context_window", "ensure_cache_dir", "gpu_detail", "refuse_foreign_listener", "validate_openai"]


def validate_openai(plan: Plan, served: Served, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
    """A real chat-completions request (with a tool-calling probe) against ``plan.base_url``."""
    if not plan.validate:
        return None
    from nemoclaw_runtime.runtimes.server.validate import validate_endpoint

    result = validate_endpoint(plan.base_url, served.served_model_id, settings=svc.settings, http=svc.http,
                               clock=svc.clock, events=events, cancel=cancel)
    return str(result.api)


def ensure_cache_dir(path: Path, *, world_writable: bool = False) -> None:
    """Create a cache folder the container mounts, so the engine does not create it root-owned.

    A folder that already exists is the user's: it is left exactly as it is. ``world_writable`` is for images
    that run as another user (NIM runs as UID 1000), and applies only to folders we create here.
    """
    if path.exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    if world_writable:
        os.chmod(path, 0o777)  # noqa: S103 - only a folder we just created, for the container's own user


def refuse_foreign_listener(plan: Plan) -> None:
    raise PortInUse(f"Port {plan.port} is in use by {port_owner(plan.port)}",
                    remedy="stop that server, or pass --port / set NEMOCLAW_VLLM_PORT to a free port")


def gpu_detail(gpus: GpuRequest, inventory: GpuInventory) -> str:
    """The ``gpu`` check's line in a plan: what the container gets, of which GPUs."""
    if gpus.mode == "none":
        return "--gpus none: the container gets no GPU"
    lines = "; ".join(inventory.summary_lines) if inventory.summary_lines else inventory.profile
    return f"{gpus} of: {lines}"


def effective_context_window(settings: Settings, reported: int | None, events: EventSink) -> int | None:
    """``NEMOCLAW_CONTEXT_WINDOW`` (when a valid integer) wins over what the server reports."""
    if settings.context_window:
        from nemoclaw_runtime.runtimes.server.probes import MAX_MODEL_LEN_CEILING, parse_max_model_len

        configured, _ = parse_max_model_len(settings.context_window.strip())
        if configured is not None:
            events(Info(f"Keeping configured context window {configured} (NEMOCLAW_CONTEXT_WINDOW)"))
            return configured
        events(Warning(f"Ignoring NEMOCLAW_CONTEXT_WINDOW={settings.context_window!r}: not an integer in "
                       f"1..{MAX_MODEL_LEN_CEILING}"))
    return reported
