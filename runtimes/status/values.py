"""The values ``status`` returns: frozen, with ``to_dict()`` giving the stable JSON document.

``status --json`` (and each line of ``status --watch --json``) is :meth:`StatusReport.to_dict`; schema 1::

    {"schema": 1, "sample": 1, "sampled_at": "2026-05-01T12:00:00.123Z", "elapsed_s": 0.21,
     "gpu": {"reason": str | null, "unified_memory": bool},             # why no server has a GPU figure, if so
     "servers": [{
        "name": "nemoclaw-vllm" | "local:8000",  "managed": bool,     # false: not our container (port discovery)
        "runtime": "vllm" | "nim" | "ollama" | null,  "container_id": str | null,
        "state": "running" | "exited" | … | null,  "exit_code": int | null,
        "uptime_s": float | null,  "restart_count": int | null,
        "health": "healthy" | "starting" | "unhealthy" | "unresponsive" | "stopped" | "restarting" | "paused"
                  | "unknown",
        "health_reason": str | null,  "last_log_line": str | null,    # the log line only when not healthy
        "model": str | null,  "served_model": str | null,  "context_window": int | null,  "base_url": str | null,
        "gpu": {"gpus": [int], "memory_mib": int | null, "source": "nvml" | "rss" | null, "reason": str | null,
                "processes": int},
        "metrics": EngineMetrics.to_dict() | null,  "metrics_reason": str | null,      # vLLM, NIM
        "ollama": {"version": str | null, "loaded_models": [{"name", "size_bytes", "size_vram_bytes",
                   "expires_at", "context_length"}] | null, "reason": str | null} | null,
        "notes": [str]}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemoclaw_runtime.runtimes.status.gpu_usage import GpuUsage
from nemoclaw_runtime.runtimes.status.metrics import EngineMetrics
from nemoclaw_runtime.runtimes.status.probe import HEALTHY, OllamaState

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ServerStatus:
    """One server: a managed container, or a local server on a known port that is not ours (``managed`` False)."""

    name: str
    managed: bool
    runtime: str | None
    health: str
    health_reason: str | None = None
    container_id: str | None = None
    state: str | None = None
    exit_code: int | None = None
    uptime_s: float | None = None
    restart_count: int | None = None
    last_log_line: str | None = None
    model: str | None = None
    served_model: str | None = None
    context_window: int | None = None
    base_url: str | None = None
    gpu: GpuUsage = field(default_factory=GpuUsage)
    metrics: EngineMetrics | None = None
    metrics_reason: str | None = None
    ollama: OllamaState | None = None
    notes: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.health == HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "managed": self.managed, "runtime": self.runtime, "container_id": self.container_id,
            "state": self.state, "exit_code": self.exit_code,
            "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 1),
            "restart_count": self.restart_count, "health": self.health, "health_reason": self.health_reason,
            "last_log_line": self.last_log_line, "model": self.model, "served_model": self.served_model,
            "context_window": self.context_window, "base_url": self.base_url, "gpu": self.gpu.to_dict(),
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
            "metrics_reason": self.metrics_reason,
            "ollama": None if self.ollama is None else self.ollama.to_dict(), "notes": list(self.notes),
        }


@dataclass(frozen=True)
class StatusReport:
    """One sample of every server. ``sample`` counts from 1 in a watch; ``elapsed_s`` is what the sample took."""

    servers: tuple[ServerStatus, ...]
    sampled_at: str
    elapsed_s: float
    sample: int = 1
    gpu_reason: str | None = None
    unified_memory: bool = False

    def server(self, name: str) -> ServerStatus | None:
        return next((s for s in self.servers if s.name == name), None)

    @property
    def all_healthy(self) -> bool:
        return all(s.healthy for s in self.servers)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "sample": self.sample, "sampled_at": self.sampled_at,
                "elapsed_s": round(self.elapsed_s, 3),
                "gpu": {"reason": self.gpu_reason, "unified_memory": self.unified_memory},
                "servers": [s.to_dict() for s in self.servers]}


__all__ = ["ServerStatus", "StatusReport"]
