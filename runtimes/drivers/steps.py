"""Steps several drivers share: an OpenAI-compatible validation, cache folders, the port rule for our own servers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import PortInUse
from nemoclaw_runtime.kernel.events import EventSink
from nemoclaw_runtime.runtimes.drivers.contract import Plan, Served
from nemoclaw_runtime.runtimes.server.host_ports import port_owner


def validate_openai(plan: Plan, served: Served, svc: Any, events: EventSink, cancel: CancelToken) -> str | None:
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
