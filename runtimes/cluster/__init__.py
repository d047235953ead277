"""One model over several machines with Docker (``up vllm --nodes HEAD,WORKER[,…]``): vLLM's own distributed
executor over Ray, driven on each node's engine. ``plan`` and ``up`` are what the public API calls; ``ops`` has
``ps``, ``stop`` and ``logs`` for such deployments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import Cancelled
from nemoclaw_runtime.kernel.events import EventSink, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.cluster.layout import ClusterPlan
from nemoclaw_runtime.runtimes.cluster.planning import Interfaces, plan_cluster
from nemoclaw_runtime.runtimes.cluster.start import Engines, start_cluster
from nemoclaw_runtime.runtimes.drivers.contract import UpRequest, UpResult

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.runtimes.fit import ModelSource

__all__ = ["ClusterPlan", "Engines", "plan", "up"]


def plan(request: UpRequest, nodes: str | Sequence[str], *, nic: str | None = None, settings: Settings | None = None,
         inventory: GpuInventory | None = None, events: EventSink = discard, model_source: ModelSource | None = None,
         interfaces: Interfaces | None = None) -> ClusterPlan:
    """Every node's containers and the split, with the group fit — no engine asked, nothing downloaded."""
    settings = settings if settings is not None else Settings.from_env()
    for message in settings.warnings:
        events(Warning(message))
    inventory = inventory if inventory is not None else _detect(settings)
    return plan_cluster(request, nodes, nic=nic, settings=settings, inventory=inventory,
                        source=_source(settings, model_source), events=events, interfaces=interfaces)


def up(request: UpRequest, nodes: str | Sequence[str], *, nic: str | None = None, settings: Settings | None = None,
       inventory: GpuInventory | None = None, events: EventSink = discard, cancel: CancelToken | None = None,
       model_source: ModelSource | None = None, engines: Engines | None = None, http: httpx.Client | None = None,
       clock: Clock | None = None, interfaces: Interfaces | None = None) -> UpResult:
    """Serve the request over ``nodes`` and return once the head answers; on any failure nothing is left on any
    node. ``engines`` opens a node's engine (default: its address, through ``runtimes/wiring.py``)."""
    settings = settings if settings is not None else Settings.from_env()
    inventory = inventory if inventory is not None else _detect(settings)
    events(PhaseChanged("preflight", "Checking the request, the nodes and the GPUs"))
    the_plan = plan(request, nodes, nic=nic, settings=settings, inventory=inventory, events=events,
                    model_source=model_source, interfaces=interfaces)
    try:
        return start_cluster(the_plan, settings=settings, events=events, cancel=cancel or CancelToken(),
                             engines=engines, http=http, clock=clock, arch=inventory.machine.arch)
    except KeyboardInterrupt as exc:  # raised before any container existed: nothing to clean up
        raise Cancelled("Cancelled by Ctrl-C; nothing half-started was left behind") from exc


def _detect(settings: Settings) -> GpuInventory:
    from nemoclaw_runtime.gpu import detect_gpus

    return detect_gpus(settings)


def _source(settings: Settings, model_source: ModelSource | None) -> ModelSource:
    if model_source is not None:
        return model_source
    from nemoclaw_runtime.runtimes.fit import hub

    return hub.default_model_source(settings)
