"""``plan``, ``up``, ``pull`` and ``stop``: one pipeline, three drivers.

preflight (the driver's plan: model, extra args, GPU, tokens) → engine reachable → port (free / ours / adopt /
refuse) → per-name lock → reuse fast path → driver.prepare (access check, disk, weights) → digest-pinned image →
container → readiness → driver.after_ready → validation. Every side effect lives here or in a driver hook called
with ``Services``; a driver's ``plan`` is pure. Ctrl-C or a ``CancelToken`` at any point leaves no half-started
container and releases the lock; a container that fails readiness is stopped but kept for ``logs``. The engine
and the HTTP clients come from ``runtimes/wiring.py`` unless the caller injects them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import (
    Cancelled,
    InvalidInput,
    NemoclawError,
    NoSuchContainer,
    PortInUse,
    PreflightRefused,
    RuntimeNotReady,
)
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.threads import interrupts_deferred, run_together
from nemoclaw_runtime.registry.entries import RUNTIMES
from nemoclaw_runtime.runtimes import lockfile, wiring
from nemoclaw_runtime.runtimes.docker.containers import check_gpu_runtime, engine_is_local
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_IMAGE_DIGEST,
    LABEL_PORT,
    LABEL_RUNTIME,
    LABEL_SPEC_HASH,
    url_host,
)
from nemoclaw_runtime.runtimes.drivers.contract import (
    GpuPlacement,
    Plan,
    RuntimeDriver,
    Served,
    Services,
    UpRequest,
    UpResult,
    make_request,
)
from nemoclaw_runtime.runtimes.drivers.steps import effective_context_window

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.runtimes.docker.port import ContainerManager, DockerPort, PulledImage
    from nemoclaw_runtime.runtimes.docker.registry_login import PromptSecret
    from nemoclaw_runtime.runtimes.fit import ModelSource


#: Hosts a port may be published on without exposing the server to the network.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The share of a GPU a managed container without a utilisation label is taken to hold (vLLM's default).
DEFAULT_UTILIZATION = 0.9

# Kept here for callers of ``pipeline.open_services``: the engine is opened in ``runtimes/wiring.py`` only.
open_services = wiring.open_services


def driver_for(runtime: str) -> RuntimeDriver:
    if runtime == "vllm":
        from nemoclaw_runtime.runtimes.drivers.vllm import VllmDriver

        return VllmDriver()
    if runtime == "nim":
        from nemoclaw_runtime.runtimes.drivers.nim import NimDriver

        return NimDriver()
    if runtime == "ollama":
        from nemoclaw_runtime.runtimes.drivers.ollama import OllamaDriver

        return OllamaDriver()
    raise InvalidInput(f"Unknown runtime {runtime!r}", remedy=f"use one of: {', '.join(RUNTIMES)}")


# --- plan ----------------------------------------------------------------------------------------------------------


def plan(request: UpRequest, *, settings: Settings | None = None, inventory: GpuInventory | None = None,
         events: EventSink = discard, model_source: ModelSource | None = None) -> Plan:
    """Everything ``up`` would do, with the preflight checks that need no download and no engine — and the fit
    (vLLM), whose facts come from ``model_source`` (default: the hub's config and safetensors headers, cached)."""
    settings = settings if settings is not None else Settings.from_env()
    for message in settings.warnings:
        events(Warning(message))
    _warn_if_exposed(request, events)
    inventory = inventory if inventory is not None else _detect(settings)
    _check_gpu_indices(request, inventory)
    driver = driver_for(request.runtime)
    the_plan = driver.plan(request, settings, inventory)
    return driver.fit(the_plan, request, settings, inventory, source=_source(settings, model_source), events=events)


def _source(settings: Settings, model_source: ModelSource | None) -> ModelSource:
    if model_source is not None:
        return model_source
    from nemoclaw_runtime.runtimes.fit import hub

    return hub.default_model_source(settings)


def gpu_placement(containers: ContainerManager, name: str, inventory: GpuInventory) -> GpuPlacement:
    """What our managed containers hold, from their labels: every other running one's GPUs and utilisation, and
    those of the container called ``name`` (``up`` replaces or reuses it)."""
    from nemoclaw_runtime.runtimes.docker.containers import gpu_indices_label, utilization_label

    everyone = tuple(g.index for g in inventory.gpus)
    held: dict[int, list[tuple[str, float]]] = {}
    own: tuple[int, ...] = ()
    own_share: float | None = None
    for info in containers.list_managed():
        if info.state.status not in ("running", "restarting", "created"):
            continue
        gpus = gpu_indices_label(info.labels)
        if gpus is None:  # no label: a vLLM of an older version may use any GPU; NIM and Ollama are left to the
            gpus = everyone if info.labels.get(LABEL_RUNTIME) == "vllm" else ()  # free-memory check of the fit
        share = utilization_label(info.labels) or DEFAULT_UTILIZATION
        container = info.name.lstrip("/")
        if container == name:
            # its GPUs are preferred either way, but only a running one holds memory that replacing it frees:
            # a restarting or created one holds nothing, and adding its share back would be a false "fits"
            own, own_share = gpus, (share if info.state.status == "running" else None)
            continue
        for index in gpus:
            held.setdefault(index, []).append((container, share))
    return GpuPlacement({i: tuple(h) for i, h in held.items()}, own, own_share)


def _check_gpu_indices(request: UpRequest, inventory: GpuInventory) -> None:
    """``--gpus 0,3``: every index must be a GPU of this host (exit 2 otherwise, before anything starts)."""
    if request.gpus.mode != "indices" or not inventory.gpus:
        return  # no GPU at all is the driver's refusal (exit 3), with its own remedy
    known = sorted(gpu.index for gpu in inventory.gpus)
    unknown = [index for index in request.gpus.indices if index not in known]
    if unknown:
        raise InvalidInput(
            f"Invalid --gpus {request.gpus}: this host has no GPU {', '.join(map(str, unknown))} (its GPUs are "
            f"{', '.join(map(str, known))})",
            remedy="pass indices listed by `nemoclaw-runtime gpus`, or --gpus all",
            details={"option": "--gpus", "unknown": unknown, "gpus": known})


def _warn_if_exposed(request: UpRequest, events: EventSink) -> None:
    if request.host not in LOOPBACK_HOSTS:
        events(Warning(f"publishing on {request.host}: the server will be reachable from other machines, "
                       "without a key"))


# --- pull ----------------------------------------------------------------------------------------------------------


def pull(runtime: str, *, settings: Settings | None = None, model: str | None = None, image: str | None = None,
         inventory: GpuInventory | None = None, events: EventSink = discard, cancel: CancelToken | None = None,
         prompt_secret: PromptSecret | None = None, save_login: bool = False, docker: DockerPort | None = None,
         clock: Clock | None = None) -> PulledImage:
    """``nemoclaw-runtime pull``: pre-pull the image ``up runtime`` would run, pinned to this platform's digest.

    The driver names the image, exactly as for ``up``; no token is needed for the model itself (a gated model's
    image can be pulled before its licence is accepted), only for the registry. ``docker`` is used as given (else
    an engine is connected, and closed afterwards); ``prompt_secret`` may ask for a registry key (never by itself).
    """
    from nemoclaw_runtime.runtimes.transfer.image_pull import pull_image

    settings = settings if settings is not None else Settings.from_env()
    for message in settings.warnings:
        events(Warning(message))
    driver = driver_for(runtime)
    inventory = inventory if inventory is not None else _detect(settings)
    request = make_request(runtime, model=model, image=image)
    ref = driver.image_for(request, settings, inventory)
    with wiring.docker_session(settings, docker) as port:
        return pull_image(ref, settings, port=port, events=events, cancel=cancel, arch=inventory.machine.arch,
                          prompt_secret=prompt_secret, save_login=save_login, clock=clock)


# --- up ------------------------------------------------------------------------------------------------------------


def up(request: UpRequest, *, settings: Settings | None = None, inventory: GpuInventory | None = None,
       events: EventSink = discard, cancel: CancelToken | None = None, services: Services | None = None,
       prompt_secret: PromptSecret | None = None, docker: DockerPort | None = None, http: httpx.Client | None = None,
       clock: Clock | None = None, model_source: ModelSource | None = None, lock_path: Path | None = None,
       locked: bool = False) -> UpResult:
    """Bring the requested runtime up and return once it answers (and, unless disabled, passed validation).

    ``prompt_secret`` (a masked prompt, interactive callers only) asks for a NIM key the environment lacks, and lets
    a registry login ask once more after a rejected key; without it a missing or rejected key is a refusal with the
    remedy. ``services`` (all collaborators), or ``docker`` / ``http`` / ``clock`` one by one, are used as given
    and left open; what is not given is made in ``runtimes/wiring.py`` and closed before returning.

    The fit (vLLM) runs under the name's lock, before any download: it refuses (exit 3) a model that cannot fit,
    sizes ``--max-model-len auto``, and places the model on GPUs our other managed containers leave room on.
    ``model_source`` tells the model's facts (default: the hub's config and safetensors headers).

    The lock (``lock_path``, default ``<state_dir>/locks/<container-name>.json``): a started or reused container's
    image digest, weights revision, argv and registry entry version are written there. With ``locked`` it is read
    instead (missing or invalid → exit 2, before any engine call) and served exactly: the image by the locked digest,
    the weights at the locked revision; an argv, image or registry entry that differs from it → exit 3.
    """
    settings = settings if settings is not None else Settings.from_env()
    cancel = cancel or CancelToken()
    events(PhaseChanged("preflight", "Checking the request, the GPUs and the engine"))
    for message in settings.warnings:
        events(Warning(message))
    _warn_if_exposed(request, events)
    driver = driver_for(request.runtime)
    settings = _ask_for_key(request.runtime, settings, prompt_secret)
    inventory = inventory if inventory is not None else _detect(settings)
    _check_gpu_indices(request, inventory)
    the_plan = driver.plan(request, settings, inventory)
    path = lock_path if lock_path is not None else lockfile.default_lock_path(settings, the_plan.spec.name)
    pinned = lockfile.read_lock(path, request.runtime) if locked else None
    with contextlib.ExitStack() as stack:
        svc = services or stack.enter_context(wiring.services_session(
            settings, docker=docker, http=http, clock=clock, arch=inventory.machine.arch,
            prompt_secret=prompt_secret))
        try:
            started = svc.clock.monotonic()
            svc.docker.ping()
            result = _adopt(driver, the_plan, svc, events, cancel)
            if result is not None and pinned is not None:
                raise PreflightRefused(
                    f"Not serving with --locked: port {the_plan.port} is held by a server this lock did not start "
                    f"({result.served_model_id})", remedy="stop that server, or pass --port",
                    details={"lock": str(path), "port": the_plan.port})
            if result is None:
                with svc.containers.lock(the_plan.spec.name, events=events):
                    placement = gpu_placement(svc.containers, the_plan.spec.name, inventory)
                    the_plan = driver.fit(the_plan, request, settings, inventory, events=events,
                                          source=_source(settings, model_source), placement=placement)
                    cancel.raise_if_cancelled()
                    if pinned is not None:
                        the_plan = _pin_to_lock(the_plan, pinned, path, events)
                    result = _up_locked(driver, the_plan, svc, events, cancel)
                    if pinned is None and result.name is not None:
                        _write_lock(the_plan, result, path, events)
            return dataclasses.replace(result, elapsed_s=svc.clock.monotonic() - started)
        except KeyboardInterrupt as exc:
            raise Cancelled("Cancelled by Ctrl-C; nothing half-started was left behind") from exc


def _pin_to_lock(the_plan: Plan, pinned: lockfile.Lock, path: Path, events: EventSink) -> Plan:
    """``up --locked``: refuse what differs from the lock (exit 3), then pin the plan's image to the locked digest
    and (vLLM) its weights to the locked revision."""
    from nemoclaw_runtime.registry import load_registry

    version = lockfile.registry_entry_version(load_registry(), the_plan.runtime, the_plan.model)
    lockfile.check_against(pinned, argv=the_plan.spec.command, image=the_plan.spec.image, entry_version=version,
                           path=path)
    command = the_plan.spec.command
    if the_plan.runtime == "vllm" and pinned.weights_revision and \
            _argv_revision(command) != pinned.weights_revision:
        from nemoclaw_runtime.runtimes.drivers.vllm import set_flag

        command = set_flag(command, "--revision", pinned.weights_revision)
    events(Info(f"Serving what {path} locks: image digest {pinned.image_digest}"
                + (f", weights revision {pinned.weights_revision}" if pinned.weights_revision else "")))
    spec = dataclasses.replace(the_plan.spec, command=command, image_digest=pinned.image_digest)
    return dataclasses.replace(the_plan, spec=spec)


def _argv_revision(argv: tuple[str, ...]) -> str | None:
    from nemoclaw_runtime.runtimes.fit import ServeOptions

    return ServeOptions.from_argv(argv).revision


def plan_lock(the_plan: Plan, *, image_digest: str | None, weights_revision: str | None) -> lockfile.Lock:
    """The lock of ``the_plan`` with what was resolved for it."""
    from nemoclaw_runtime.registry import load_registry

    return lockfile.make_lock(
        runtime=the_plan.runtime, model=the_plan.model, image=the_plan.spec.image, image_digest=image_digest,
        weights_revision=weights_revision, argv=the_plan.spec.command,
        registry_entry_version=lockfile.registry_entry_version(load_registry(), the_plan.runtime, the_plan.model))


def _write_lock(the_plan: Plan, result: UpResult, path: Path, events: EventSink) -> None:
    revision = result.weights_revision or (_argv_revision(the_plan.spec.command)
                                           if the_plan.runtime == "vllm" else None)
    lockfile.write_lock(plan_lock(the_plan, image_digest=result.digest, weights_revision=revision), path)
    events(Info(f"Wrote the lock {path} (`up --locked` serves exactly this)"))


# --- lock ----------------------------------------------------------------------------------------------------------


def lock(request: UpRequest, *, settings: Settings | None = None, inventory: GpuInventory | None = None,
         events: EventSink = discard, model_source: ModelSource | None = None, services: Services | None = None,
         docker: DockerPort | None = None, clock: Clock | None = None) -> lockfile.Lock:
    """``nemoclaw-runtime lock``: what ``up`` would serve, resolved without serving or pulling: the plan (with the
    fit), this platform's image digest through the registry's manifest API, and (vLLM with prefetch) the weights
    revision: the registry's pinned ``hf_revision`` when it has one (no network), else the hub's commit now."""
    from nemoclaw_runtime.runtimes.docker.port import DigestResolver

    settings = settings if settings is not None else Settings.from_env()
    inventory = inventory if inventory is not None else _detect(settings)
    the_plan = plan(request, settings=settings, inventory=inventory, events=events, model_source=model_source)
    with contextlib.ExitStack() as stack:
        svc = services or stack.enter_context(wiring.services_session(
            settings, docker=docker, clock=clock, arch=inventory.machine.arch))
        if not isinstance(svc.images, DigestResolver):
            raise InvalidInput("This image store cannot resolve digests without pulling",
                               remedy="pass services whose images resolve digests")
        events(PhaseChanged("resolve", f"Resolving {the_plan.spec.image} to this platform's digest"))
        digest = svc.images.resolve_digest(the_plan.spec.image, events=events)
    revision = _argv_revision(the_plan.spec.command) if the_plan.runtime == "vllm" else None
    if revision is None and the_plan.runtime == "vllm" and the_plan.prefetch:
        from nemoclaw_runtime.runtimes.transfer import weights

        token = settings.hf_token_value()
        events(PhaseChanged("resolve", f"Resolving the revision of {the_plan.model_id} on the hub"))
        revision = weights.resolve_revision(the_plan.model_id, token[1] if token else None, settings)
    return plan_lock(the_plan, image_digest=digest, weights_revision=revision)


def _ask_for_key(runtime: str, settings: Settings, prompt_secret: PromptSecret | None) -> Settings:
    """NIM with no key in the settings and a prompt to ask with: ask once; the key then serves the registry login
    and the container. Without a prompt nothing is asked (the plan refuses with the remedy)."""
    if runtime != "nim" or prompt_secret is None or settings.ngc_key_value() is not None:
        return settings
    from nemoclaw_runtime.kernel.secret import Secret

    key = prompt_secret("  NGC API Key: ").strip()
    return settings.replace(ngc_api_key=Secret(key)) if key else settings


# --- stop ----------------------------------------------------------------------------------------------------------


def stop(names: Iterable[str] = (), *, all: bool = False, runtime: str | None = None,
         settings: Settings | None = None, events: EventSink = discard, docker: DockerPort | None = None,
         http: httpx.Client | None = None) -> list[str]:
    """Stop and remove managed containers (images and weights stay); returns the names stopped.

    A managed Ollama first unloads its models (``keep_alive: 0``, through ``http`` when given) so GPU memory is handed
    back before the container goes; other runtimes are stopped directly.
    """
    from nemoclaw_runtime.runtimes.docker.containers import stop_managed
    from nemoclaw_runtime.runtimes.drivers.ollama import unload_before_stop

    settings = settings if settings is not None else Settings.from_env()
    with wiring.docker_session(settings, docker) as port:
        return stop_managed(settings, names, all=all, runtime=runtime, docker=port, events=events,
                            before_stop=unload_before_stop(http=http, events=events))


def _adopt(driver: RuntimeDriver, the_plan: Plan, svc: Services, events: EventSink,
           cancel: CancelToken) -> UpResult | None:
    """Free port, or held by our container of this name → None (go on). Held by another container of ours →
    PortInUse. Held by something else → the driver adopts it or refuses."""
    from nemoclaw_runtime.runtimes.server.host_ports import port_listening

    if not port_listening(the_plan.port):
        return None
    for info in svc.containers.list_managed():
        if info.labels.get(LABEL_PORT) == str(the_plan.port):
            if info.name == the_plan.spec.name:
                return None
            raise PortInUse(f"Port {the_plan.port} is held by our container {info.name}",
                            remedy=f"stop it with `nemoclaw-runtime stop {info.name}`, or pass --port")
    served = driver.adopt(the_plan, svc, events, cancel)
    if served is None:
        return None
    base = f"http://{url_host(the_plan.host)}:{the_plan.port}"
    validated = driver.validate(the_plan, served, base, svc, events, cancel)
    return _result(the_plan, svc, served, events, name=None, image=None, digest=None, adopted=True,
                   validated=validated)


def _up_locked(driver: RuntimeDriver, the_plan: Plan, svc: Services, events: EventSink,
               cancel: CancelToken) -> UpResult:
    reused = _reuse_if_same(driver, the_plan, svc, events, cancel)
    if reused is not None:
        return reused
    if the_plan.spec.gpus.mode != "none":  # before any download: an engine that cannot give GPUs is exit 3 now
        check_gpu_runtime(svc.docker, local_engine=engine_is_local(svc.settings.docker_host))
    revision = driver.prepare(the_plan, svc, events, cancel)
    cancel.raise_if_cancelled()
    fetched, pulled = _download(driver, the_plan, svc, events, cancel)
    revision = fetched or revision
    spec = driver.bind_image(the_plan, pulled)
    cancel.raise_if_cancelled()
    outcome = svc.containers.ensure_running(spec, events=events)  # removes what it created if interrupted
    try:
        served, validated = _serve(driver, the_plan, svc, events, cancel)
    except RuntimeNotReady:
        events(Info(f"Stopping {spec.name}; it is kept so `nemoclaw-runtime logs {spec.name}` shows what happened"))
        with interrupts_deferred(_still_cleaning(events, spec.name)):
            _stop_quietly(svc, spec.name, remove=False)
        raise
    except BaseException as exc:
        if outcome.action != "reused":  # a reused container ran before we came: it is left as it was
            _clean_up(svc, spec.name, events, exc)  # Ctrl-C / cancel: leave nothing half-started, or say what is left
        raise
    return _result(the_plan, svc, served, events, name=spec.name, image=spec.image, digest=pulled.digest,
                   reused=outcome.action == "reused", container_id=outcome.container.id, revision=revision,
                   validated=validated)


#: How long a failure, a cancel or Ctrl-C waits for the other download to stop and clean up before ``up`` goes on
#: without it (it still stops: its cancel token is set).
DOWNLOAD_STOP_WAIT_S = 30.0



def _download(driver: RuntimeDriver, the_plan: Plan, svc: Services, events: EventSink,
              cancel: CancelToken) -> tuple[str | None, PulledImage]:
    """The weights (``driver.fetch_weights``) and the image (``svc.images.ensure_image``): from different places
    and neither needs the other, so they run at the same time (:func:`run_together`: the first failure cancels the
    other and is the error raised; the caller's cancel or Ctrl-C cancels both; each cleans up as it does alone,
    within ``DOWNLOAD_STOP_WAIT_S``). Progress is keyed by its task (``weights`` / ``image``). A driver with no
    weights to fetch: the pull alone, here.
    """
    pull_phase = PhaseChanged("pull", f"Pulling {the_plan.spec.image} (pinned to this platform's digest)")
    if not driver.fetches_weights(the_plan):
        events(pull_phase)
        return None, svc.images.ensure_image(the_plan.spec.image_ref, events=events, cancel=cancel)

    def pull(token: CancelToken, sink: EventSink) -> PulledImage:
        sink(pull_phase)
        return svc.images.ensure_image(the_plan.spec.image_ref, events=sink, cancel=token)

    def fetch(token: CancelToken, sink: EventSink) -> str | None:
        return driver.fetch_weights(the_plan, svc, sink, token)

    revision, pulled = run_together([("nemoclaw-weights", fetch), ("nemoclaw-pull", pull)], cancel, events,
                                    stop_wait_s=DOWNLOAD_STOP_WAIT_S, what="downloads")
    return revision, pulled


def _reuse_if_same(driver: RuntimeDriver, the_plan: Plan, svc: Services, events: EventSink,
                   cancel: CancelToken) -> UpResult | None:
    """The fast path: our container of this name runs exactly this spec (same pinned digest) → reuse it, with no
    download and no engine write."""
    existing = svc.containers.get(the_plan.spec.name)
    if existing is None or not existing.state.running:
        return None
    digest = existing.labels.get(LABEL_IMAGE_DIGEST) or None
    # The hash was taken with the pinned digest, or with none when the image had to be pulled by tag (the digest
    # label then only records what the tag pointed at).
    hashes = {dataclasses.replace(the_plan.spec, image_digest=candidate).spec_hash() for candidate in (digest, None)}
    if existing.labels.get(LABEL_SPEC_HASH) not in hashes:
        return None
    events(Info(f"{existing.name} already runs this exact spec: reusing it"))
    served, validated = _serve(driver, the_plan, svc, events, cancel)
    return _result(the_plan, svc, served, events, name=existing.name, image=the_plan.spec.image, digest=digest,
                   reused=True, container_id=existing.id, validated=validated)


def _serve(driver: RuntimeDriver, the_plan: Plan, svc: Services, events: EventSink,
           cancel: CancelToken) -> tuple[Served, str | None]:
    from nemoclaw_runtime.runtimes.server.readiness import ManagedContainerTarget, wait_ready

    events(PhaseChanged("wait", f"Waiting for {the_plan.spec.name} on {the_plan.base_url}"))
    target = ManagedContainerTarget(svc.containers, the_plan.spec.name, the_plan.port, url_host(the_plan.host))
    ready = wait_ready(target, driver.readiness_probe(the_plan), timeout_s=the_plan.ready_timeout_s,
                       clock=svc.clock, cancel=cancel, events=events, http=svc.http)
    base = f"http://{url_host(the_plan.host)}:{the_plan.port}"
    served = driver.after_ready(the_plan, ready, base, svc, events, cancel)
    return served, driver.validate(the_plan, served, base, svc, events, cancel)


def _result(the_plan: Plan, svc: Services, served: Served, events: EventSink, *, name: str | None,
            image: str | None, digest: str | None, reused: bool = False, adopted: bool = False,
            container_id: str | None = None, revision: str | None = None, validated: str | None = None) -> UpResult:
    return UpResult(
        runtime=the_plan.runtime, name=name, model=served.model or the_plan.model,
        served_model_id=served.served_model_id, base_url=the_plan.base_url, image=image, digest=digest,
        context_window=effective_context_window(svc.settings, served.context_window, events), reused=reused,
        adopted=adopted, container_id=container_id, weights_revision=revision, validated_api=validated)


#: How long a clean-up waits for a half-started server to stop before it is killed and removed.
CLEANUP_STOP_TIMEOUT_S = 3.0


def _still_cleaning(events: EventSink, name: str) -> Callable[[], None]:
    def notice() -> None:
        events(Warning(f"Still cleaning up {name}; it takes a few seconds more (this Ctrl-C will not interrupt it)"))
    return notice


def _clean_up(svc: Services, name: str, events: EventSink, exc: BaseException) -> None:
    """Stop and remove the container ``up`` started, saying so while it waits; a second Ctrl-C cannot cut it
    short. After Ctrl-C or a cancel, raise :class:`Cancelled` stating exactly what was done or what was left."""
    interrupted = isinstance(exc, (KeyboardInterrupt, Cancelled))
    why = "Cancelled" if interrupted else "The start failed"
    events(Info(f"{why}: stopping and removing container {name} so nothing half-started is left (a few seconds; "
                "a second Ctrl-C will not interrupt it)"))
    with interrupts_deferred(_still_cleaning(events, name)):
        problem = _remove_now(svc, name)
    if problem is None:
        events(Info(f"Removed container {name}"))
        if interrupted:
            raise Cancelled(f"Cancelled; the container {name} was stopped and removed, nothing half-started was left "
                            "behind", remedy="run the command again") from exc
        return
    remedy = f"remove it with `nemoclaw-runtime stop {name}` (or `docker rm -f {name}`)"
    if interrupted:
        raise Cancelled(f"Cancelled; the container {name} could not be removed and is still there ({problem})",
                        remedy=remedy, details={"left_behind": [name]}) from exc
    events(Warning(f"The container {name} could not be removed ({problem}): {remedy}"))


def _remove_now(svc: Services, name: str) -> str | None:
    """Stop (briefly) and force-remove our container ``name``; None when it is gone, else why not."""
    try:
        info = svc.containers.get(name)
        if info is None:
            return None
        with contextlib.suppress(NemoclawError):
            svc.docker.stop_container(info.id, timeout=CLEANUP_STOP_TIMEOUT_S)
        svc.docker.remove_container(info.id, force=True)
        return None if svc.containers.get(name) is None else "the engine still lists it"
    except NoSuchContainer:
        return None
    except NemoclawError as error:
        return error.message
    except Exception as error:  # noqa: BLE001 - report what is left rather than mask the original error
        return type(error).__name__


def _stop_quietly(svc: Services, name: str, *, remove: bool) -> None:
    try:
        svc.containers.stop(name, remove=remove)
    except Exception:  # noqa: BLE001 - cleanup must not mask the error being raised
        pass



def _detect(settings: Settings) -> GpuInventory:
    from nemoclaw_runtime.gpu import detect_gpus

    return detect_gpus(settings)


__all__ = [
    "DEFAULT_UTILIZATION", "Services", "driver_for", "gpu_placement", "lock", "make_request", "open_services", "plan",
    "plan_lock", "pull", "stop", "up",
]
