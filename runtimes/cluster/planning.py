"""``up vllm --nodes …`` planned: the nodes, the interface, the split (tensor × pipeline parallel) chosen by the
group fit, and every node's containers — before any engine is asked or anything is downloaded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import InvalidInput, NemoclawError
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.cluster.layout import ClusterPlan, Layout, build_cluster_plan
from nemoclaw_runtime.runtimes.cluster.nodes import (
    Interface,
    Node,
    check_interface_name,
    choose_interface,
    head_address,
    is_loopback,
    parse_nodes,
)
from nemoclaw_runtime.runtimes.docker.spec import GpuRequest
from nemoclaw_runtime.runtimes.drivers.contract import Plan, UpRequest
from nemoclaw_runtime.runtimes.drivers.vllm import VllmDriver, set_flag
from nemoclaw_runtime.runtimes.fit import ModelSource, ServeOptions

__all__ = ["Interfaces", "default_layout", "plan_cluster"]

#: This machine's interfaces: (IPv4 addresses by name, up by name); injected by tests.
Interfaces = Callable[[], tuple[Mapping[str, Sequence[str]], Mapping[str, bool]]]


def plan_cluster(request: UpRequest, nodes: str | Sequence[str], *, nic: str | None, settings: Settings,
                 inventory: GpuInventory, source: ModelSource, events: EventSink,
                 interfaces: Interfaces | None = None) -> ClusterPlan:
    """Check the request for several nodes and plan it (exit 2 for bad input, 3 when the group cannot hold it)."""
    if request.runtime != "vllm":
        raise InvalidInput(f"--nodes serves vLLM only, not {request.runtime}",
                           remedy="use `nemoclaw-runtime up vllm --nodes …`; for a multi-node NIM, "
                                  "`nemoclaw-runtime export kubernetes nim --nodes N` hands it to the NIM Operator")
    group = parse_nodes(nodes)
    head = group[0]
    _check_request(request, group, settings)
    interface = _interface(group, nic, interfaces, events)  # bad input (exit 2) before the host's GPUs (exit 3)
    address = head_address(head, interface)
    if is_loopback(address) and any(node.hostname is not None for node in group):
        raise InvalidInput(f"The Ray head's address {address} is a loopback address: the other machines cannot reach "
                           "it", remedy="pass --nic with the interface of the link between the nodes (not lo), or "
                                        "name the head by an address the nodes resolve")
    base = VllmDriver().plan(request, settings, inventory)
    events(Warning(f"Ray listens on every interface of each node ({address}:{settings.ray_port} on the head): only "
                   "the private link between the nodes should reach them"))
    layout, fit, base = _split(base, request, inventory, len(group), source, events)
    notes = [f"{len(group)} nodes: tensor parallel {layout.tensor_parallel_size} × pipeline parallel "
             f"{layout.pipeline_parallel_size}; the Ray head listens on {address}:{settings.ray_port}, which every "
             "node must reach (keep the link between the nodes private)"]
    if any(not node.is_local for node in group):
        notes.append("weights are downloaded on this machine and copied into the nemoclaw-hf-cache volume of the "
                     "other nodes; the token never leaves this machine")
    return build_cluster_plan(base, group, interface=interface, head_address=address, ray_port=settings.ray_port,
                              layout=layout, hf_home=str(settings.hf_home), fit=fit, notes=notes)


def _check_request(request: UpRequest, group: Sequence[Node], settings: Settings) -> None:
    """What several nodes cannot do, refused before anything (exit 2)."""
    head = group[0]
    if head.hostname is not None and is_loopback(request.host):
        raise InvalidInput(f"The head {head.address} is another machine: a server on its loopback cannot be reached "
                           "from here", remedy="run the command on the head (--nodes local,…), or pass --host "
                                               "with the head's address")
    if not request.prefetch:
        raise InvalidInput("--no-prefetch with --nodes would hand the Hugging Face token to every node's container",
                           remedy="leave --no-prefetch out: the weights are downloaded here once and copied to the "
                                  "nodes")
    port = request.port or settings.vllm_port
    if port == settings.ray_port:
        raise InvalidInput(f"Port {port} is the Ray head's (NEMOCLAW_RAY_PORT): both listen on the head's network",
                           remedy="pass another --port, or set NEMOCLAW_RAY_PORT to another port")


def _interface(group: Sequence[Node], nic: str | None, interfaces: Interfaces | None,
               events: EventSink) -> Interface | None:
    """The link's interface: checked on this machine when the head is this machine; named only (each node has
    one of that name, as in the recipes) when the head is elsewhere."""
    if group[0].hostname is not None:
        return Interface(check_interface_name(nic), "", detected=False) if nic else None
    from nemoclaw_runtime.runtimes.cluster.nodes import local_interfaces

    addresses, up = (interfaces or local_interfaces)()
    chosen = choose_interface(nic, addresses, up)
    if chosen.detected:
        events(Info(f"Using the interface {chosen.name} ({chosen.address}) for Ray, NCCL and Gloo; pass --nic to "
                    "choose another"))
    return chosen


def default_layout(options: ServeOptions, gpus_per_node: int, nodes: int) -> Layout:
    """The split without a fit: the group fit's own rule (``fit.choose_layout``) with the model's heads unknown."""
    from nemoclaw_runtime.runtimes.fit import choose_layout

    return Layout(*choose_layout(options, nodes, gpus_per_node))


def _split(base: Plan, request: UpRequest, inventory: GpuInventory, nodes: int, source: ModelSource,
           events: EventSink) -> tuple[Layout, object, Plan]:
    options = ServeOptions.from_argv(base.spec.command)
    if request.gpus.mode == "none":
        layout = default_layout(options, 1, nodes)
        return layout, None, _with_note(base, "fit not judged: --gpus none gives the containers no GPU")
    from nemoclaw_runtime.runtimes.fit import group_refusal, min_compute_capability_for, plan_group_fit

    events(PhaseChanged("fit", f"Checking that {base.model_id} fits {nodes} nodes like this one"))
    try:
        facts = source.facts(base.model_id, revision=options.revision)
    except NemoclawError:
        if request.fit_check:
            raise
        facts = None
    if facts is None:
        layout = default_layout(options, len(inventory.gpus), nodes)
        return layout, None, _with_note(base, "fit not judged: the model's facts could not be read")
    fit = plan_group_fit(facts, inventory, nodes, options,
                         min_compute_capability=min_compute_capability_for(base.model_id))
    # the group fit chooses the split whatever it decides (unknown facts included: GPUs of one model, heads)
    layout = Layout(fit.tensor_parallel_size, fit.pipeline_parallel_size)
    base = _on_gpus(base, fit.gpus, inventory)
    if fit.decision == "unknown":
        events(Warning(f"{'; '.join(fit.reasons[:2])}; going on"))
        return layout, fit, base
    if not fit.fits:
        error = group_refusal(fit)
        assert error is not None
        if request.fit_check:
            raise error
        events(Warning(f"--no-fit-check: starting {base.model_id} although {error.message}"))
        return layout, fit, base
    events(Info(fit.reasons[0]))
    command = base.spec.command
    context = fit.max_model_len_fit if fit.decision == "reduce-context" else fit.max_model_len
    if context and (fit.decision == "reduce-context" or options.max_model_len is None):
        command = set_flag(command, "--max-model-len", str(context))
    return layout, fit, dataclasses.replace(base, spec=dataclasses.replace(base.spec, command=command))


def _on_gpus(base: Plan, gpus: Sequence[int], inventory: GpuInventory) -> Plan:
    """Each node's containers get the GPUs the fit chose (a host's other GPUs, of another model, stay out of the
    Ray cluster); the request as it was when the fit took them all."""
    if not gpus or sorted(gpus) == sorted(g.index for g in inventory.gpus):
        return base
    spec = dataclasses.replace(base.spec, gpus=GpuRequest("indices", tuple(sorted(gpus))))
    return dataclasses.replace(base, spec=spec)


def _with_note(base: Plan, note: str) -> Plan:
    return dataclasses.replace(base, notes=(*base.notes, note))
