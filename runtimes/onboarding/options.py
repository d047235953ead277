"""The local inference options of this host: the menu an onboarding wizard shows, with NemoClaw's rules.

    menu = local_options(settings)             # probes: GPUs, the vLLM port, the engine, Ollama
    menu.options / menu.absent / menu.suggested
    choice = select_option(menu, settings)     # runtimes/onboarding/selection.py: NEMOCLAW_PROVIDER / *_MODEL, or a key

Rules (NemoClaw's ``vllm-menu.ts``, ``onboard.ts`` and the Ollama helpers, so its users see the same menu):

- a vLLM already answering ``/v1/models`` on the vLLM port → ``vllm``, "Local vLLM [experimental] (localhost:N) —
  running (suggested)", and no install entry;
- otherwise ``install-vllm`` — on DGX Spark / DGX Station by default, on other NVIDIA hosts only with
  ``NEMOCLAW_EXPERIMENTAL=1`` or ``NEMOCLAW_PROVIDER=install-vllm``; "Start vLLM (<profile>)" when the image is
  already present, "Install vLLM (<profile>)" otherwise;
- ``nim`` only with ``NEMOCLAW_EXPERIMENTAL=1`` and a GPU that fits at least one catalog model;
- ``ollama`` when Ollama answers on its port, or is installed (found on PATH; never run).

Every entry that is not offered is listed in ``absent`` with a stable reason code and a sentence. Nothing here
prints, starts or downloads anything: the probes are one HTTP request each and one engine inspect per image.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.errors import NemoclawError, UnsupportedRuntime
from nemoclaw_runtime.kernel.events import Event, Warning
from nemoclaw_runtime.kernel.names import PROFILE_NONE
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.units import format_bytes, format_mib
from nemoclaw_runtime.runtimes.onboarding.menu import (
    DEFAULT_ON_PROFILES,
    KEY_INSTALL_VLLM,
    KEY_NIM,
    KEY_OLLAMA,
    KEY_VLLM,
    NO_VLLM_PROFILE,
    REASON_NO_GPU,
    REASON_NO_USABLE_GPU,
    REASON_NOT_EXPERIMENTAL,
    REASON_NOT_RUNNING,
    REASON_OLLAMA_NOT_INSTALLED,
    REASON_OLLAMA_TOO_OLD,
    REASON_PORT_HELD,
    REASON_VLLM_RUNNING,
    REASON_VRAM_TOO_SMALL,
    AbsentOption,
    LocalOption,
    LocalOptions,
    ModelChoice,
)
from nemoclaw_runtime.runtimes.wiring import http_session

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.registry import NimModel, Registry, VllmModel, VllmProfile
    from nemoclaw_runtime.runtimes.docker.port import DockerPort
    from nemoclaw_runtime.runtimes.fit import ModelSource
    from nemoclaw_runtime.runtimes.fit.verdicts import FitVerdict
    from nemoclaw_runtime.runtimes.server.probes import ExistingServer

#: ``local_options(docker=AUTO)`` connects to the engine named by the settings; ``None`` means unreachable.
AUTO = "auto"

WhichFunction = Callable[[str], "str | None"]


# --- local_options -------------------------------------------------------------------------------------------


@dataclass
class _Probe:
    """What one ``local_options`` call learnt, shared by the per-runtime builders."""

    settings: Settings
    inventory: GpuInventory
    registry: Registry
    http: httpx.Client
    engine: DockerPort | None
    which: WhichFunction
    notes: list[str] = dataclasses.field(default_factory=list)
    model_source: ModelSource | None = None

    def collect(self, event: Event) -> None:
        """An event sink that keeps warnings as notes (library code never prints)."""
        if isinstance(event, Warning):
            self.notes.append(event.message)

    def image_present(self, ref: str) -> bool | None:
        if self.engine is None:
            return None
        try:
            return self.engine.image_inspect(ref) is not None
        except NemoclawError:
            return None


def local_options(settings: Settings | None = None, *, inventory: GpuInventory | None = None,
                  http: httpx.Client | None = None, docker: DockerPort | str | None = AUTO,
                  which: WhichFunction = shutil.which, registry: Registry | None = None,
                  model_source: ModelSource | None = None) -> LocalOptions:
    """The local inference options of this host, suggested first by NemoClaw's rules, and why others are absent.

    Every probe is injectable: ``inventory`` (else :func:`~nemoclaw_runtime.gpu.detect_gpus`), ``http`` (an
    ``httpx.Client``; else one is made and closed), ``docker`` (a ``DockerPort``; ``None`` when the engine is
    unreachable; :data:`AUTO` connects from the settings), ``which`` (finds the ``ollama`` binary; it is never run).
    An unreachable engine leaves the vLLM and NIM entries listed with ``image_present`` unknown and a note.
    Managed-vLLM models carry ``fits`` from the fit engine (facts from ``model_source``, else the HF cache, then
    the hub within a few seconds; null with ``fit_reason`` when unknown).
    """
    settings = settings if settings is not None else Settings.from_env()
    if registry is None:
        from nemoclaw_runtime.registry import load_registry

        registry = load_registry()
    if inventory is None:
        from nemoclaw_runtime.gpu import detect_gpus

        inventory = detect_gpus(settings)
    with http_session(http) as client, _engine(docker, settings) as (engine, engine_error):
        probe = _Probe(settings, inventory, registry, client, engine, which, notes=list(settings.warnings),
                       model_source=model_source)
        options: list[LocalOption] = []
        absent: list[AbsentOption] = []
        for build in (_vllm_entries, _nim_entries, _ollama_entries):
            offered, missing = build(probe)
            options.extend(offered)
            absent.extend(missing)
    if engine_error:
        probe.notes.append(f"Docker engine not reachable ({engine_error}): image presence is unknown, and "
                           "installing or starting vLLM or NIM needs a running engine")
    return LocalOptions(
        options=_mark_suggested(options), absent=tuple(absent), gpu_profile=inventory.profile,
        gpu_summary=tuple(inventory.summary_lines), memory_budget_mib=inventory.memory_budget_mib,
        experimental=settings.experimental, provider=settings.provider, engine_reachable=engine is not None,
        engine_error=engine_error, notes=tuple(probe.notes))


@contextmanager
def _engine(docker: DockerPort | str | None, settings: Settings) -> Iterator[tuple[DockerPort | None, str | None]]:
    """The engine if it answers a ping, else ``(None, why)``; an engine we connected to is closed afterwards."""
    port, error = _connect_engine(docker, settings)
    try:
        yield port, error
    finally:
        if isinstance(docker, str) and port is not None:
            port.close()


def _connect_engine(docker: DockerPort | str | None, settings: Settings) -> tuple[DockerPort | None, str | None]:
    if docker is None:
        return None, "no engine"
    port: DockerPort | None = None
    try:
        if isinstance(docker, str):
            from nemoclaw_runtime.runtimes.wiring import open_docker

            port = open_docker(settings)
        else:
            port = docker
        port.ping()
    except NemoclawError as exc:
        if isinstance(docker, str) and port is not None:
            port.close()
        return None, exc.message
    return port, None


def _mark_suggested(options: list[LocalOption]) -> tuple[LocalOption, ...]:
    """Exactly one suggestion: a running vLLM, else a running Ollama, else managed vLLM, else an installed Ollama.

    Labels stay NemoClaw's: the running vLLM's already says "(suggested)", the install entry never does.
    """
    ranked = sorted(options, key=_suggestion_rank)
    best = ranked[0] if ranked and _suggestion_rank(ranked[0]) < _NEVER else None
    result: list[LocalOption] = []
    for option in options:
        if best is not None and option is best and not option.suggested:
            label = f"{option.label} (suggested)" if option.key == KEY_OLLAMA else option.label
            option = dataclasses.replace(option, suggested=True, label=label)
        result.append(option)
    return tuple(result)


_NEVER = 99


def _suggestion_rank(option: LocalOption) -> int:
    if option.key == KEY_VLLM:
        return 0
    if option.key == KEY_OLLAMA and option.running:
        return 1
    if option.key == KEY_INSTALL_VLLM:
        return 2
    if option.key == KEY_OLLAMA:
        return 3
    return _NEVER  # local NIM is experimental: offered, never suggested


# --- vLLM ------------------------------------------------------------------------------------------------------

_Entries = tuple[list[LocalOption], list[AbsentOption]]


def _vllm_entries(probe: _Probe) -> _Entries:
    from nemoclaw_runtime.runtimes.server.probes import probe_existing_vllm

    port = probe.settings.vllm_port
    existing = probe_existing_vllm(probe.http, port)
    if existing is not None and existing.is_vllm:
        superseded = AbsentOption(KEY_INSTALL_VLLM, REASON_VLLM_RUNNING,
                                  f"A vLLM already answers on localhost:{port}: it is offered instead of an install")
        return [_running_vllm(probe, existing)], [superseded]
    if existing is None:
        missing = AbsentOption(KEY_VLLM, REASON_NOT_RUNNING, f"No vLLM answers on localhost:{port}",
                               remedy="start one, or choose install-vllm")
    else:
        missing = AbsentOption(KEY_VLLM, REASON_PORT_HELD,
                               f"Port {port} answers, but not like vLLM (HTTP {existing.status_code} on /v1/models)",
                               remedy="stop that server, or set NEMOCLAW_VLLM_PORT to the port your vLLM uses")
    offered, absent = _install_vllm(probe, port_held=existing is not None)
    return offered, [missing, *absent]


def _running_vllm(probe: _Probe, existing: ExistingServer) -> LocalOption:
    from nemoclaw_runtime.runtimes.drivers.steps import effective_context_window

    port = existing.port
    default = _served_default(probe, existing.model_ids)
    models = tuple(ModelChoice(i, i, default=i == default, context_window=existing.max_model_len.get(i))
                   for i in existing.model_ids)
    reported = existing.max_model_len.get(default) if default else None
    window = effective_context_window(probe.settings, reported, probe.collect)
    notes = () if existing.model_ids else (f"The vLLM on localhost:{port} lists no model it can serve",)
    return LocalOption(
        key=KEY_VLLM, runtime="vllm", label=f"Local vLLM [experimental] (localhost:{port}) — running (suggested)",
        suggested=True, running=True, experimental=True, models=models, default_model=default,
        base_url=f"http://127.0.0.1:{port}/v1", port=port, context_window=window, notes=notes)


def _served_default(probe: _Probe, served: tuple[str, ...]) -> str | None:
    """NEMOCLAW_VLLM_MODEL when the server serves it (by id, slug or HF id), else the first served model."""
    wanted = probe.settings.vllm_model
    if wanted:
        match = served_match(served, wanted, probe.registry)
        if match is not None:
            return match
    return served[0] if served else None


def served_match(served: tuple[str, ...], wanted: str, registry: Registry) -> str | None:
    """The served id that ``wanted`` names: the id itself (any case), or a registry slug / HF id serving as it."""
    text = wanted.strip().lower()
    by_lower = {s.lower(): s for s in served}
    if text in by_lower:
        return by_lower[text]
    model = registry.find_vllm_model(wanted)
    if model is not None:
        for candidate in (model.served_model_id(), model.hf_id):
            if candidate.lower() in by_lower:
                return by_lower[candidate.lower()]
    return None


def _install_vllm(probe: _Probe, *, port_held: bool) -> _Entries:
    from nemoclaw_runtime.gpu import has_usable_gpu

    inv, settings = probe.inventory, probe.settings
    profile = probe.registry.vllm_profile_for(inv.profile)
    if profile is None:
        return [], [AbsentOption(KEY_INSTALL_VLLM, REASON_NO_GPU, NO_VLLM_PROFILE,
                                 remedy=f"managed vLLM needs a DGX Spark, DGX Station or Linux NVIDIA GPU host"
                                        f" ({inv.reason or 'no NVIDIA GPU found'})")]
    if not has_usable_gpu(inv):
        return [], [AbsentOption(KEY_INSTALL_VLLM, REASON_NO_USABLE_GPU,
                                 f"No usable NVIDIA GPU for vLLM ({inv.reason or 'MIG enabled with no instances'})",
                                 remedy="check `nemoclaw-runtime gpus`")]
    default_on = inv.profile in DEFAULT_ON_PROFILES
    if not (default_on or settings.experimental or settings.provider == KEY_INSTALL_VLLM):
        return [], [AbsentOption(KEY_INSTALL_VLLM, REASON_NOT_EXPERIMENTAL,
                                 f"Managed vLLM on {profile.name} is experimental",
                                 remedy="set NEMOCLAW_EXPERIMENTAL=1 (or NEMOCLAW_PROVIDER=install-vllm)")]
    image = settings.vllm_image or profile.image
    present = probe.image_present(image)
    default = _vllm_default(probe, profile)
    models = _vllm_models(probe, profile, default)
    notes = []
    if port_held:
        notes.append(f"Port {settings.vllm_port} is held by another server: set NEMOCLAW_VLLM_PORT to a free port")
    if present is None:
        notes.append("The Docker engine is not reachable: whether the image is present is unknown")
    token = settings.hf_token_value()
    return [LocalOption(
        key=KEY_INSTALL_VLLM, runtime="vllm", label=f"{'Start' if present else 'Install'} vLLM ({profile.name})",
        experimental=not default_on, models=models, default_model=default.slug, needs_token=default.gated,
        token_variables=default.token_variables, token_set=token is not None,
        base_url=f"http://127.0.0.1:{settings.vllm_port}/v1", port=settings.vllm_port,
        context_window=default.max_model_len, image=image, image_present=present, profile=profile.name,
        notes=tuple(notes))], []


def _vllm_default(probe: _Probe, profile: VllmProfile) -> VllmModel:
    """NEMOCLAW_VLLM_MODEL when it names a registry entry (it bypasses the platform filter), else the profile's."""
    if probe.settings.vllm_model:
        found = probe.registry.find_vllm_model(probe.settings.vllm_model)
        if found is not None:
            return found
        probe.notes.append(f"NEMOCLAW_VLLM_MODEL='{probe.settings.vllm_model}' is not a registry slug or HF id:"
                           " selecting managed vLLM will refuse it")
    return probe.registry.resolve_vllm_model(None, profile=profile)


def _vllm_models(probe: _Probe, profile: VllmProfile, default: VllmModel) -> tuple[ModelChoice, ...]:
    models = list(probe.registry.vllm_picker_order(profile))
    if default in models:
        models.remove(default)
    chosen = (default, *models)
    verdicts = _fits(probe, chosen)
    return tuple(_vllm_choice(m, m is default, verdicts.get(m.slug)) for m in chosen)


def _fits(probe: _Probe, models: tuple[VllmModel, ...]) -> dict[str, FitVerdict]:
    """The fit engine's verdict per model (bounded; never raises: an unknown is null with its reason)."""
    from nemoclaw_runtime.registry import parse_extra_args
    from nemoclaw_runtime.runtimes.fit.verdicts import judge_models

    try:
        extra = parse_extra_args(probe.settings.vllm_extra_args_json)
    except NemoclawError as exc:
        probe.notes.append(f"fit not judged: {exc.message}")
        return {}
    return judge_models(models, probe.inventory, probe.settings, extra=extra, source=probe.model_source)


def _vllm_choice(model: VllmModel, default: bool, verdict: FitVerdict | None = None) -> ModelChoice:
    notes = [n for n, on in (("recommended, default", default), ("gated; requires HF token", model.gated)) if on]
    label = model.slug + (f" ({'; '.join(notes)})" if notes else "")
    return ModelChoice(model.slug, label, default=default, gated=model.gated, token_variables=model.token_variables,
                       context_window=model.max_model_len, detail=model.hf_id,
                       fits=verdict.fits if verdict else None, fit_reason=verdict.reason if verdict else None)


# --- NIM -------------------------------------------------------------------------------------------------------


def _nim_entries(probe: _Probe) -> _Entries:
    from nemoclaw_runtime.gpu import has_usable_gpu

    inv, settings = probe.inventory, probe.settings
    if not has_usable_gpu(inv):
        why = inv.reason or "none usable"
        return [], [AbsentOption(KEY_NIM, REASON_NO_GPU, f"Local NIM needs an NVIDIA GPU ({why})",
                                 remedy="check `nemoclaw-runtime gpus`")]
    fitting = probe.registry.nim_models_fitting(inv.memory_budget_mib)
    if not fitting:
        return [], [AbsentOption(KEY_NIM, REASON_VRAM_TOO_SMALL, "Local NIM unavailable — GPU VRAM too small",
                                 remedy="see `nemoclaw-runtime models --runtime nim --all` for each model's minimum")]
    if not settings.experimental:
        return [], [AbsentOption(KEY_NIM, REASON_NOT_EXPERIMENTAL, "Local NIM is experimental",
                                 remedy="set NEMOCLAW_EXPERIMENTAL=1")]
    default = _nim_default(probe, fitting)
    image = settings.nim_image or default.image
    present = probe.image_present(image)
    key = settings.ngc_key_value()
    models = tuple(ModelChoice(m.name, f"{m.name} (min {format_mib(m.min_vram_mib)})", default=m is default, gated=True,
                               token_variables=m.token_variables, fits=True, detail=m.image) for m in fitting)
    notes = ("The Docker engine is not reachable: whether the image is present is unknown",) if present is None else ()
    return [LocalOption(
        key=KEY_NIM, runtime="nim", label="Local NVIDIA NIM [experimental]", experimental=True, models=models,
        default_model=default.name, needs_token=True, token_variables=default.token_variables,
        token_set=key is not None, base_url=f"http://127.0.0.1:{settings.vllm_port}/v1", port=settings.vllm_port,
        image=image, image_present=present, notes=notes)], []


def _nim_default(probe: _Probe, fitting: tuple[NimModel, ...]) -> NimModel:
    wanted = probe.settings.model
    if wanted:
        found = next((m for m in fitting if m.matches(wanted.strip())), None)
        if found is not None:
            return found
    return fitting[0]


# --- Ollama ----------------------------------------------------------------------------------------------------


def _ollama_entries(probe: _Probe) -> _Entries:
    from nemoclaw_runtime.runtimes.server.ollama_api import ForeignListener, OllamaServer, detect_ollama

    port = probe.settings.ollama_port
    try:
        found = detect_ollama(probe.http, "127.0.0.1", port)
    except UnsupportedRuntime as exc:
        return [], [AbsentOption(KEY_OLLAMA, REASON_OLLAMA_TOO_OLD, exc.message, remedy=exc.remedy)]
    if isinstance(found, ForeignListener):
        return [], [AbsentOption(KEY_OLLAMA, REASON_PORT_HELD, found.describe(),
                                 remedy="stop that server, or set NEMOCLAW_OLLAMA_PORT to the port Ollama uses")]
    if isinstance(found, OllamaServer):
        return [_ollama_option(probe, found.model_names, running=True)], []
    path = probe.which("ollama")
    if not path:
        return [], [AbsentOption(KEY_OLLAMA, REASON_OLLAMA_NOT_INSTALLED,
                                 f"Ollama is not installed (nothing answers on localhost:{port}, no `ollama` on PATH)",
                                 remedy="install it from https://ollama.com/download")]
    option = _ollama_option(probe, (), running=False)
    note = (f"Ollama is installed ({path}) but not running on localhost:{port}: start it with `ollama serve`"
            " (`nemoclaw-runtime up ollama` would run a managed container instead)")
    return [dataclasses.replace(option, notes=(note, *option.notes))], []


def _ollama_memory(inv: GpuInventory) -> int | None:
    """NemoClaw's effective memory for Ollama: what is available when known, else the total."""
    if inv.available_memory_mib:
        return inv.available_memory_mib
    return inv.memory_budget_mib


def _ollama_option(probe: _Probe, installed: tuple[str, ...], *, running: bool) -> LocalOption:
    inv, registry, port = probe.inventory, probe.registry, probe.settings.ollama_port
    memory = _ollama_memory(inv)
    rules: dict[str, bool] = {"nvidia_known": inv.profile != PROFILE_NONE,
                              "compute_constrained": bool(inv.compute_constrained)}
    notes: list[str] = []
    default: str | None
    if installed:
        from nemoclaw_runtime.runtimes.drivers.ollama import ModelRules, choose_model

        default = choose_model(ModelRules(memory_mib=memory), installed, registry).tag  # NemoClaw's pool default
        models = tuple(ModelChoice(tag, tag, default=tag == default, installed=True,
                                   fits=_starter_fits(registry, tag, memory)) for tag in installed)
    else:
        starters = registry.fittable_ollama_starters(memory, **rules)
        chosen = registry.default_ollama_starter(memory, **rules)
        default = chosen.tag if chosen else None
        models = tuple(ModelChoice(s.tag, s.tag, default=s is chosen, installed=False, fits=s.fits(memory),
                                   detail=f"needs {format_mib(s.required_memory_mib)}; "
                                          f"{format_bytes(s.download_bytes)} download")
                       for s in starters)
        if running:
            notes.append("No local Ollama models are installed yet. Choose one to pull and load now.")
    wanted = probe.settings.model
    if wanted and wanted.strip():
        default = wanted.strip()
    state = "running" if running else "installed, not running"
    return LocalOption(
        key=KEY_OLLAMA, runtime="ollama", label=f"Local Ollama (localhost:{port}) — {state}", running=running,
        models=models, default_model=default, base_url=f"http://127.0.0.1:{port}/v1", port=port, notes=tuple(notes))


def _starter_fits(registry: Registry, tag: str, memory: int | None) -> bool | None:
    starter = registry.ollama_starter(tag) or registry.ollama_starter(tag.removesuffix(":latest"))
    return starter.fits(memory) if starter is not None and memory else None


__all__ = ["AUTO", "local_options", "served_match"]
