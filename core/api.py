"""The library's front door: keyword functions an onboarding wizard calls instead of parsing CLI text.

Each function takes an optional :class:`Settings` (built from ``os.environ`` only when omitted), an ``events``
callback for progress (:mod:`nemoclaw_runtime.kernel.events`) and, for long operations, a
:class:`CancelToken` that may be set from another thread. Results and errors are typed values with ``to_dict()``.

The CLI is a skin over these functions: it renders what they return and never reaches past them.

Collaborators are injectable, keyword-only and optional: ``docker`` (a ``DockerPort``), ``http`` (an
``httpx.Client``), ``clock`` and ``inventory`` (a :class:`GpuInventory`). What is given is used as is and left
open; what is omitted is made in one place (``runtimes/wiring.py``) and closed before the call returns. The library
never prompts by itself: ``up`` and ``pull`` ask for a key only through the ``prompt_secret`` callback they are given.

Heavy modules (docker-py, httpx, NVML) are imported inside the functions, so importing this module stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.events import EventSink, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry.entries import RUNTIMES

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.kernel.secret import Secret
    from nemoclaw_runtime.registry import Registry
    from nemoclaw_runtime.runtimes.cluster import ClusterPlan
    from nemoclaw_runtime.runtimes.docker.containers import ManagedContainerView
    from nemoclaw_runtime.runtimes.docker.port import DockerPort, PulledImage
    from nemoclaw_runtime.runtimes.docker.registry_login import PromptSecret
    from nemoclaw_runtime.runtimes.drivers.contract import Plan, UpResult
    from nemoclaw_runtime.runtimes.export import KubernetesExport
    from nemoclaw_runtime.runtimes.fit import FitResult, ModelSource
    from nemoclaw_runtime.runtimes.lockfile import Lock
    from nemoclaw_runtime.runtimes.onboarding.menu import LocalOptions
    from nemoclaw_runtime.runtimes.onboarding.selection import Selection
    from nemoclaw_runtime.runtimes.server.validate import ValidationResult
    from nemoclaw_runtime.runtimes.status.values import StatusReport


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings.from_env()


def check_runtime(runtime: str) -> str:
    """``runtime`` when it is one of :data:`RUNTIMES`, else :class:`InvalidInput` (exit 2) naming the choices."""
    if runtime not in RUNTIMES:
        raise InvalidInput(f"Unknown runtime {runtime!r}", remedy=f"use one of: {', '.join(RUNTIMES)}")
    return runtime


def _check_filter(runtime: str | None) -> None:
    if runtime is not None:
        check_runtime(runtime)


# --- the host --------------------------------------------------------------------------------------------------------


def detect_gpus(settings: Settings | None = None) -> GpuInventory:
    """The GPUs and host profile (NVML, or the ``NEMOCLAW_GPU_SNAPSHOT`` replay)."""
    from nemoclaw_runtime.gpu import detect_gpus as _detect

    return _detect(_settings(settings))


def models(runtime: str | None = None, *, include_all: bool = False, settings: Settings | None = None,
           inventory: GpuInventory | None = None, model_source: ModelSource | None = None,
           fit: bool = True) -> dict[str, Any]:
    """The models each runtime (or only ``runtime``) can serve on this host, as ``nemoclaw-runtime models`` lists
    them: ``{"host": {...}, "all": bool, "<runtime>": {"entries": [...], "note": ...}}``; with ``include_all``
    every registry entry, not only those for this host.

    Each vLLM entry carries ``fits`` (true / false, or null with ``fit_reason``) judged by the fit engine for this
    host with its registry flags: facts from the HF cache first, then the hub (``model_source`` when given), in
    parallel within a few seconds; offline or unreachable → null with the reason. ``fit=False`` skips it."""
    from nemoclaw_runtime.registry import load_registry
    from nemoclaw_runtime.registry.listing import HostView, model_listing

    _check_filter(runtime)
    settings = _settings(settings)
    inventory = inventory if inventory is not None else detect_gpus(settings)
    host = HostView(gpu_profile=inventory.profile, memory_budget_mib=inventory.memory_budget_mib,
                    compute_constrained=bool(inventory.compute_constrained), reason=inventory.reason,
                    available_memory_mib=inventory.available_memory_mib)
    registry = load_registry()
    listing = model_listing(registry, host, runtime=runtime, include_all=include_all)
    if fit and "vllm" in listing:
        _add_fits(listing["vllm"]["entries"], registry, inventory, settings, model_source)
    return listing


def _add_fits(entries: list[dict[str, Any]], registry: Registry, inventory: GpuInventory, settings: Settings,
              model_source: ModelSource | None) -> None:
    from nemoclaw_runtime.kernel.errors import NemoclawError
    from nemoclaw_runtime.registry import parse_extra_args
    from nemoclaw_runtime.runtimes.fit.verdicts import judge_models

    chosen = [registry.vllm_model(entry["slug"]) for entry in entries]
    try:
        extra = parse_extra_args(settings.vllm_extra_args_json)
    except NemoclawError as exc:
        for entry in entries:
            entry.update(fits=None, fit_reason=exc.message, fit=None)
        return
    verdicts = judge_models(chosen, inventory, settings, extra=extra, source=model_source)
    for entry in entries:
        verdict = verdicts[entry["slug"]]
        entry.update(fits=verdict.fits, fit_reason=verdict.reason, fit=verdict.to_dict())


def fit(model: str | None = None, *, gpus: str = "all", max_model_len: int | str | None = None,
        gpu_memory_utilization: float | None = None, kv_cache_dtype: str | None = None,
        settings: Settings | None = None, inventory: GpuInventory | None = None,
        model_source: ModelSource | None = None) -> FitResult:
    """Will ``model`` (a registry slug, ``ORG/NAME`` or ``hf:ORG/NAME``; default ``NEMOCLAW_VLLM_MODEL``, else the
    host's default) fit this host with vLLM, and where? Judged before any download from the model's
    ``config.json`` and safetensors headers (``model_source``, default the hub, cached) and the GPU inventory,
    with the registry's flags (and ``NEMOCLAW_VLLM_EXTRA_ARGS_JSON``), then these overrides:

    ``gpus`` (``all`` or indices such as ``0,1``), ``max_model_len`` (a token count, or ``auto``: the largest that
    fits — read ``max_model_len_fit``), ``gpu_memory_utilization`` and ``kv_cache_dtype``. Returns the
    :class:`~nemoclaw_runtime.runtimes.fit.FitResult` (``to_dict()`` gives the stable names); ``refusal(result)``
    is the exit-3 error ``up`` would raise. Bad input → ``InvalidInput`` (exit 2); a gated model without a token →
    ``MissingToken`` (exit 3).
    """
    from nemoclaw_runtime.runtimes.drivers.vllm_fit_query import fit_on_this_host

    return fit_on_this_host(model, gpus=gpus, max_model_len=max_model_len,
                            gpu_memory_utilization=gpu_memory_utilization, kv_cache_dtype=kv_cache_dtype,
                            settings=_settings(settings), inventory=inventory, model_source=model_source)


def local_options(settings: Settings | None = None, *, inventory: GpuInventory | None = None,
                  http: httpx.Client | None = None, docker: DockerPort | None = None,
                  which: Callable[[str], str | None] | None = None,
                  model_source: ModelSource | None = None) -> LocalOptions:
    """The local inference options of this host (running servers, managed vLLM, NIM, Ollama), the suggested one
    marked, and why others are absent. Without ``docker`` the engine is connected (an unreachable one is reported
    in the result, not raised); ``which`` finds the ``ollama`` binary (default ``shutil.which``)."""
    from nemoclaw_runtime.runtimes.onboarding import options

    settings = _settings(settings)
    extra: dict[str, Any] = {} if which is None else {"which": which}
    return options.local_options(settings, inventory=inventory, http=http,
                                 docker=docker if docker is not None else options.AUTO, model_source=model_source,
                                 **extra)


def select_option(options: LocalOptions, settings: Settings | None = None, *, key: str | None = None) -> Selection:
    """Choose non-interactively among ``options``: ``key``, else ``NEMOCLAW_PROVIDER``, else the suggested entry."""
    from nemoclaw_runtime.runtimes.onboarding.selection import select_option as _select

    return _select(options, _settings(settings), key=key)


# --- serving ---------------------------------------------------------------------------------------------------------


def plan(runtime: str = "vllm", *, settings: Settings | None = None, events: EventSink = discard,
         inventory: GpuInventory | None = None, model_source: ModelSource | None = None,
         **options: Any) -> Plan | ClusterPlan:
    """What ``up`` would do (the dry run: no download, no container, no engine), with the fit under ``fit``
    (vLLM: the model's config and safetensors headers from ``model_source``, default the hub). ``options`` are
    those of :func:`up` (model, port, gpus, image, name, host, prefetch, timeout_s, validate, allow_no_tools,
    max_model_len, fit_check; ``nodes`` and ``nic`` for several nodes: then the :class:`ClusterPlan`)."""
    from nemoclaw_runtime.runtimes import pipeline

    check_runtime(runtime)
    nodes, nic = options.pop("nodes", None), options.pop("nic", None)
    request = pipeline.make_request(runtime, **options)
    if nodes is not None:
        from nemoclaw_runtime.runtimes import cluster

        return cluster.plan(request, nodes, nic=nic, settings=_settings(settings), inventory=inventory,
                            events=events, model_source=model_source)
    _refuse_nic_alone(nic)
    return pipeline.plan(request, settings=_settings(settings), inventory=inventory, events=events,
                         model_source=model_source)


def _refuse_nic_alone(nic: str | None) -> None:
    if nic is not None:
        raise InvalidInput("--nic applies to a deployment over several nodes", remedy="pass --nodes as well, or "
                                                                                  "leave --nic out")


def up(runtime: str = "vllm", *, model: str | None = None, port: int | None = None, gpus: str = "all",
       image: str | None = None, name: str | None = None, host: str = "127.0.0.1", prefetch: bool = True,
       timeout_s: float | None = None, validate: bool = True, allow_no_tools: bool = False,
       max_model_len: int | str | None = None, fit_check: bool = True, model_source: ModelSource | None = None,
       settings: Settings | None = None, events: EventSink = discard, cancel: CancelToken | None = None,
       inventory: GpuInventory | None = None, prompt_secret: PromptSecret | None = None,
       docker: DockerPort | None = None, http: httpx.Client | None = None, clock: Clock | None = None,
       lock_path: str | os.PathLike[str] | None = None, locked: bool = False,
       nodes: str | Sequence[str] | None = None, nic: str | None = None) -> UpResult:
    """Serve a model and return once it answers (see ``nemoclaw-runtime up --help`` for each option).

    ``prompt_secret`` (interactive callers only) is asked for an NGC key when NIM has none in the settings, and
    once more after a registry rejects a key; without it a missing key is a refusal with the remedy.

    vLLM: before any download the fit judges the model against this host (facts from ``model_source``, default
    the hub) and refuses (exit 3, the numbers and the remedy) one that cannot fit; ``max_model_len`` (a token
    count, or ``"auto"``: the largest that fits) replaces the registry's; ``fit_check=False`` only warns.

    The lock: what was served (image digest, weights revision, argv, registry entry version) is written to
    ``lock_path`` (default ``<state_dir>/locks/<container-name>.json``). ``locked=True`` reads it instead and serves
    exactly that (image by the locked digest, weights at the locked revision): a missing or invalid lock is
    ``InvalidInput`` (exit 2), an argv, image or registry entry that differs from it ``PreflightRefused`` (exit 3).

    ``nodes`` (vLLM: ``"local,ssh://user@host2"``, the head first) serves one model over several machines with
    vLLM's Ray executor: the group fit picks tensor × pipeline parallelism, every node runs the same digest, and
    a failure or Ctrl-C leaves nothing on any node. ``nic`` names the interface between the nodes.
    """
    from nemoclaw_runtime.runtimes import pipeline

    check_runtime(runtime)
    if not isinstance(locked, bool):
        raise InvalidInput(f"Invalid --locked value {locked!r}: must be true or false", remedy="pass a bool")
    request = pipeline.make_request(runtime, model=model, port=port, gpus=gpus, image=image, name=name, host=host,
                                    prefetch=prefetch, timeout_s=timeout_s, validate=validate,
                                    allow_no_tools=allow_no_tools, max_model_len=max_model_len, fit_check=fit_check)
    if nodes is not None:
        if lock_path is not None or locked:
            raise InvalidInput("--lock and --locked are for one host, not --nodes",
                               remedy="leave --lock/--locked out with --nodes")
        from nemoclaw_runtime.runtimes import cluster

        return cluster.up(request, nodes, nic=nic, settings=_settings(settings), inventory=inventory,
                          events=events, cancel=cancel, model_source=model_source, http=http, clock=clock)
    _refuse_nic_alone(nic)
    return pipeline.up(request, settings=_settings(settings), inventory=inventory, events=events, cancel=cancel,
                       prompt_secret=prompt_secret, docker=docker, http=http, clock=clock, model_source=model_source,
                       lock_path=_lock_path(lock_path), locked=locked)


def _lock_path(path: str | os.PathLike[str] | None) -> Path | None:
    return None if path is None else checks.check_file_path(path, "--lock")


def lock(runtime: str = "vllm", *, model: str | None = None, image: str | None = None, name: str | None = None,
         gpus: str = "all", prefetch: bool = True, max_model_len: int | str | None = None,
         model_source: ModelSource | None = None, settings: Settings | None = None, events: EventSink = discard,
         inventory: GpuInventory | None = None, docker: DockerPort | None = None,
         clock: Clock | None = None) -> Lock:
    """What ``up`` would serve, resolved without serving or pulling, as a :class:`Lock` (``to_dict()``: schema 1).

    The image's platform digest is read through the registry's manifest API (no pull); the vLLM weights revision is
    the registry's pinned ``hf_revision`` when it has one (no network), else the hub's commit of the model now.
    Write it with ``Lock.to_dict()`` (or ``nemoclaw-runtime lock -o PATH``) and serve it with ``up(locked=True)``.
    """
    from nemoclaw_runtime.runtimes import pipeline

    check_runtime(runtime)
    request = pipeline.make_request(runtime, model=model, image=image, name=name, gpus=gpus, prefetch=prefetch,
                                    max_model_len=max_model_len)
    return pipeline.lock(request, settings=_settings(settings), inventory=inventory, events=events,
                         model_source=model_source, docker=docker, clock=clock)


def write_lock(value: Lock, path: str | os.PathLike[str]) -> Path:
    """Write a :class:`Lock` to ``path`` atomically (temporary file + rename), mode 0644; returns the path."""
    from nemoclaw_runtime.runtimes import lockfile

    target = checks.check_output_file(path, "--output")
    try:
        return lockfile.write_lock(value, target)
    except OSError as exc:  # a folder that cannot be created or written
        raise InvalidInput(f"Cannot write {target}: {exc.strerror or exc}",
                           remedy="pass -o FILE in a folder you can write") from None


def pull(runtime: str, *, model: str | None = None, image: str | None = None, settings: Settings | None = None,
         events: EventSink = discard, cancel: CancelToken | None = None, inventory: GpuInventory | None = None,
         prompt_secret: PromptSecret | None = None, save_login: bool = False, docker: DockerPort | None = None,
         clock: Clock | None = None) -> PulledImage:
    """Pre-pull the image ``up runtime`` would run, pinned to this platform's digest.

    Registry keys come from the docker config, then the settings, then ``prompt_secret`` when given; ``save_login``
    writes a key that worked to the docker config (mode 0600).
    """
    from nemoclaw_runtime.runtimes import pipeline

    check_runtime(runtime)
    return pipeline.pull(runtime, settings=_settings(settings), model=model, image=image, inventory=inventory,
                         events=events, cancel=cancel, prompt_secret=prompt_secret, save_login=save_login,
                         docker=docker, clock=clock)


def export_kubernetes(runtime: str, *, model: str | None = None, gpus: int | None = None, nodes: int = 1,
                      namespace: str = "default", name: str | None = None, format: str = "auto",
                      image: str | None = None, lock_path: str | os.PathLike[str] | None = None,
                      settings: Settings | None = None, events: EventSink = discard,
                      model_source: ModelSource | None = None) -> KubernetesExport:
    """Kubernetes manifests serving ``model`` with ``runtime`` (``vllm`` or ``nim``), from the registry entry ``up``
    serves: vLLM as a Deployment + Service + PVC (one node) or a LeaderWorkerSet (``nodes`` > 1, Ray leader/worker,
    tensor parallel within a node, pipeline parallel across); NIM as the NIM Operator's NIMCache + NIMService
    (``format="nim-operator"``, the default) or a Deployment (``format="deployment"``). ``gpus`` per pod (default 1);
    ``lock_path`` (a ``lock`` file) pins the image digest, model and weights revision; ``model_source`` sizes the
    cache volume from the weights (default: 100Gi, no network). Tokens are Secret references only, never values.
    Returns a :class:`~nemoclaw_runtime.runtimes.export.KubernetesExport` (``to_yaml()``, ``to_dict()``,
    ``write(path)``). Bad input → ``InvalidInput`` (exit 2); an unknown model → ``UnknownModel``.
    """
    from nemoclaw_runtime.runtimes.export import export_kubernetes as _export

    return _export(runtime, model=model, gpus=gpus, nodes=nodes, namespace=namespace, name=name, format=format,
                   image=image, lock_path=lock_path, settings=_settings(settings), events=events,
                   model_source=model_source)


# --- the managed containers ------------------------------------------------------------------------------------------


def list_managed(*, runtime: str | None = None, settings: Settings | None = None,
                 docker: DockerPort | None = None) -> list[ManagedContainerView]:
    """Every container nemoclaw-runtime manages (selected by our label only), optionally of one runtime."""
    from nemoclaw_runtime.runtimes import wiring
    from nemoclaw_runtime.runtimes.cluster import ops
    from nemoclaw_runtime.runtimes.docker.containers import list_managed as _list

    _check_filter(runtime)
    settings = _settings(settings)
    with wiring.docker_session(settings, docker) as port:
        views = _list(settings, docker=port, runtime=runtime)
    if runtime not in (None, "vllm"):
        return views
    groups = ops.list_groups(settings)  # a deployment over several nodes is one entry, with its nodes
    named = {group.name for group in groups}
    return sorted([v for v in views if v.group not in named] + groups, key=lambda view: view.name)


def stop(names: Iterable[str] = (), *, all: bool = False, runtime: str | None = None,
         settings: Settings | None = None, events: EventSink = discard, docker: DockerPort | None = None,
         http: httpx.Client | None = None) -> list[str]:
    """Stop and remove managed containers (images and weights stay); returns the names stopped.

    Unknown or foreign names → ``NoSuchContainer``, nothing touched. A managed Ollama unloads its models first (so
    GPU memory is handed back before the container goes), through ``http`` when given.
    """
    from nemoclaw_runtime.runtimes import pipeline
    from nemoclaw_runtime.runtimes.cluster import ops, records

    _check_filter(runtime)
    settings = _settings(settings)
    wanted = list(dict.fromkeys(names))
    if all == bool(wanted):
        raise InvalidInput("Name the containers to stop, or pass --all (not both)",
                           remedy="run `nemoclaw-runtime stop NAME…` or `nemoclaw-runtime stop --all`")
    # deployments over several nodes: every node's containers go, through the record of the nodes
    groups = [r.name for r in records.read_records(settings)] if all else \
        [name for name in wanted if records.read_record(settings, name) is not None]
    groups = groups if runtime in (None, "vllm") else []
    stopped = ops.stop_groups(settings, groups, events=events) if groups else []
    rest = [name for name in wanted if name not in groups]
    if all or rest:
        stopped += pipeline.stop(rest, all=all, runtime=runtime, settings=settings, events=events, docker=docker,
                                 http=http)
    return stopped


def logs(name: str, *, tail: int = 80, follow: bool = False, settings: Settings | None = None,
         docker: DockerPort | None = None, node: str | None = None) -> Iterator[str]:
    """A managed container's log lines (stdout and stderr), oldest first; with ``follow``, then every new line until
    the container stops. An engine connected here is closed when the iterator ends or is closed.

    A deployment over several nodes: its server's log (on the head), or with ``node`` (an index or an engine
    address) that node's Ray container's."""
    from nemoclaw_runtime.runtimes import wiring
    from nemoclaw_runtime.runtimes.cluster import ops, records
    from nemoclaw_runtime.runtimes.docker.containers import managed_logs

    settings = _settings(settings)
    if records.read_record(settings, checks.check_container_name(name, "NAME")) is not None:
        lines, closing = ops.group_logs(settings, name, node=node, tail=tail, follow=follow)
        return _ClosingLines(lines, closing)
    if node is not None:
        raise InvalidInput(f"--node applies to a deployment over several nodes; {name} is not one",
                           remedy="leave --node out, or name a deployment listed with nodes by `nemoclaw-runtime ps`")
    stack = ExitStack()
    try:
        port = stack.enter_context(wiring.docker_session(settings, docker))
        lines = managed_logs(settings, name, tail=tail, follow=follow, docker=port)
    except BaseException:
        stack.close()
        raise
    return _ClosingLines(lines, stack)


class _ClosingLines(Iterator[str]):
    """Log lines that close the engine connected for them when they end, on ``close()``, on leaving a ``with``
    block, or when dropped: also when the caller never iterates them (a generator never started runs no finally)."""

    def __init__(self, lines: Iterator[str], stack: ExitStack) -> None:
        self._lines = lines
        self._stack = stack

    def __iter__(self) -> _ClosingLines:
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except BaseException:  # the end (StopIteration) or a failure: nothing more will be read
            self.close()
            raise

    def close(self) -> None:
        """Close the lines and the engine; closing again does nothing."""
        lines, self._lines = self._lines, iter(())
        try:
            close = getattr(lines, "close", None)
            if close is not None:
                close()
        finally:
            self._stack.close()

    def __enter__(self) -> _ClosingLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()


def status(names: Iterable[str] = (), *, runtime: str | None = None, settings: Settings | None = None,
           docker: DockerPort | None = None, http: httpx.Client | None = None, clock: Clock | None = None,
           **options: Any) -> StatusReport:
    """One sample of every managed server (or just ``names``) and of local servers on the known ports: state,
    health, model, GPU memory and load. ``options`` are those of ``runtimes/status/collect.py`` ``collect_status``."""
    from nemoclaw_runtime.runtimes.status.collect import collect_status

    _check_filter(runtime)
    return collect_status(_settings(settings), names, runtime=runtime, docker=docker, http=http, clock=clock,
                          **options)


def watch_status(names: Iterable[str] = (), *, runtime: str | None = None, settings: Settings | None = None,
                 docker: DockerPort | None = None, http: httpx.Client | None = None, clock: Clock | None = None,
                 **options: Any) -> Generator[StatusReport, None, None]:
    """A :func:`status` sample every ``interval_s`` seconds (``count`` of them, or until ``cancel`` or the caller
    stops iterating). ``options`` are those of ``runtimes/status/collect.py`` ``watch_status``."""
    from nemoclaw_runtime.runtimes.status.collect import watch_status as _watch

    _check_filter(runtime)
    return _watch(_settings(settings), names, runtime=runtime, docker=docker, http=http, clock=clock, **options)


# --- endpoints -------------------------------------------------------------------------------------------------------


def validate(base_url: str, model: str, *, api: str | None = None, api_key: Secret | None = None,
             settings: Settings | None = None, events: EventSink = discard, cancel: CancelToken | None = None,
             http: httpx.Client | None = None, clock: Clock | None = None) -> ValidationResult:
    """Prove an OpenAI-compatible endpoint answers a real request (with a tool-calling probe)."""
    from nemoclaw_runtime.runtimes.server.validate import validate_endpoint

    return validate_endpoint(base_url, model, settings=_settings(settings), api=api, events=events, cancel=cancel,
                             api_key=api_key, http=http, clock=clock)


__all__ = [
    "RUNTIMES", "check_runtime", "detect_gpus", "export_kubernetes", "fit", "list_managed", "local_options", "lock",
    "logs", "models", "plan", "pull", "select_option", "status", "stop", "up", "validate", "watch_status",
    "write_lock",
]
