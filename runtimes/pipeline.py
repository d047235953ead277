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
from collections.abc import Iterable
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken, Clock
from nemoclaw_runtime.kernel.errors import Cancelled, InvalidInput, PortInUse, RuntimeNotReady
from nemoclaw_runtime.kernel.events import EventSink, Info, PhaseChanged, Warning, discard
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry.entries import RUNTIMES
from nemoclaw_runtime.runtimes import wiring
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_IMAGE_DIGEST,
    LABEL_PORT,
    LABEL_SPEC_HASH,
    url_host,
)
from nemoclaw_runtime.runtimes.drivers.contract import (
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
    from nemoclaw_runtime.runtimes.docker.port import DockerPort, PulledImage
    from nemoclaw_runtime.runtimes.docker.registry_login import PromptSecret


#: Hosts a port may be published on without exposing the server to the network.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

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
         events: EventSink = discard) -> Plan:
    """Everything ``up`` would do, with the preflight checks that need no network and no download."""
    settings = settings if settings is not None else Settings.from_env()
    for message in settings.warnings:
        events(Warning(message))
    _warn_if_exposed(request, events)
    inventory = inventory if inventory is not None else _detect(settings)
    return driver_for(request.runtime).plan(request, settings, inventory)


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
       clock: Clock | None = None) -> UpResult:
    """Bring the requested runtime up and return once it answers (and, unless disabled, passed validation).

    ``prompt_secret`` (a masked prompt, interactive callers only) asks for a NIM key the environment lacks, and lets
    a registry login ask once more after a rejected key; without it a missing or rejected key is a refusal with the
    remedy. ``services`` (all collaborators), or ``docker`` / ``http`` / ``clock`` one by one, are used as given
    and left open; what is not given is made in ``runtimes/wiring.py`` and closed before returning.
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
    the_plan = driver.plan(request, settings, inventory)
    with contextlib.ExitStack() as stack:
        svc = services or stack.enter_context(wiring.services_session(
            settings, docker=docker, http=http, clock=clock, arch=inventory.machine.arch,
            prompt_secret=prompt_secret))
        try:
            started = svc.clock.monotonic()
            svc.docker.ping()
            result = _adopt(driver, the_plan, svc, events, cancel)
            if result is None:
                with svc.containers.lock(the_plan.spec.name, events=events):
                    result = _up_locked(driver, the_plan, svc, events, cancel)
            return dataclasses.replace(result, elapsed_s=svc.clock.monotonic() - started)
        except KeyboardInterrupt as exc:
            raise Cancelled("Cancelled by Ctrl-C; nothing half-started was left behind") from exc


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
    revision = driver.prepare(the_plan, svc, events, cancel)
    cancel.raise_if_cancelled()
    events(PhaseChanged("pull", f"Pulling {the_plan.spec.image} (pinned to this platform's digest)"))
    pulled = svc.images.ensure_image(the_plan.spec.image, events=events, cancel=cancel)
    spec = driver.bind_image(the_plan, pulled)
    cancel.raise_if_cancelled()
    outcome = svc.containers.ensure_running(spec, events=events)  # removes what it created if interrupted
    try:
        served, validated = _serve(driver, the_plan, svc, events, cancel)
    except RuntimeNotReady:
        _stop_quietly(svc, spec.name, remove=False)  # keep it so `logs` shows what happened
        raise
    except BaseException:
        if outcome.action != "reused":
            _stop_quietly(svc, spec.name, remove=True)  # Ctrl-C / cancel: leave nothing half-started
        raise
    return _result(the_plan, svc, served, events, name=spec.name, image=spec.image, digest=pulled.digest,
                   reused=outcome.action == "reused", container_id=outcome.container.id, revision=revision,
                   validated=validated)


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


def _stop_quietly(svc: Services, name: str, *, remove: bool) -> None:
    try:
        svc.containers.stop(name, remove=remove)
    except Exception:  # noqa: BLE001 - cleanup must not mask the error being raised
        pass



def _detect(settings: Settings) -> GpuInventory:
    from nemoclaw_runtime.gpu import detect_gpus

    return detect_gpus(settings)


__all__ = ["Services", "driver_for", "make_request", "open_services", "plan", "pull", "stop", "up"]
