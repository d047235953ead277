"""Choosing one local option without a prompt: ``NEMOCLAW_PROVIDER``, ``NEMOCLAW_MODEL`` / ``NEMOCLAW_VLLM_MODEL``,
an explicit key, or the suggested entry of :func:`~nemoclaw_runtime.runtimes.onboarding.options.local_options`.

Input that names nothing known is exit 2; a choice this host cannot serve is exit 3 with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.onboarding.menu import (
    KEY_INSTALL_VLLM,
    KEY_VLLM,
    KEYS,
    NO_VLLM_PROFILE,
    REASON_NO_GPU,
    REASON_NO_USABLE_GPU,
    LocalOption,
    LocalOptions,
    ModelChoice,
)
from nemoclaw_runtime.runtimes.onboarding.options import served_match

if TYPE_CHECKING:
    from nemoclaw_runtime.registry import Registry


@dataclass(frozen=True)
class Selection:
    """The option and model chosen for this host; ``source`` says what chose it (a variable, a key, the suggestion)."""

    key: str
    runtime: str
    model: str | None
    option: LocalOption
    source: str  # NEMOCLAW_PROVIDER | key | suggested | only
    model_source: str  # NEMOCLAW_VLLM_MODEL | NEMOCLAW_MODEL | default | served
    notes: tuple[str, ...] = ()

    @property
    def install(self) -> bool:
        return self.key == KEY_INSTALL_VLLM

    @property
    def running(self) -> bool:
        return self.option.running

    @property
    def base_url(self) -> str | None:
        return self.option.base_url

    def up_request(self, **options: Any) -> Any:
        """The :class:`~nemoclaw_runtime.runtimes.drivers.contract.UpRequest` that brings this selection up (vLLM, NIM).

        ``options`` are :func:`~nemoclaw_runtime.runtimes.drivers.contract.make_request`'s (``gpus``, ``port``, ...).
        A running vLLM maps to the registry entry it serves (``up`` then adopts it); a running Ollama is used as it
        is by ``up ollama`` (which pulls and warms up the model).
        """
        from nemoclaw_runtime.kernel.errors import InvalidInput
        from nemoclaw_runtime.runtimes.drivers.contract import make_request

        model = self.model
        if self.key == KEY_VLLM:
            from nemoclaw_runtime.registry import load_registry

            entry = load_registry().find_vllm_model(model or "")
            if entry is None:
                raise InvalidInput(f"The running vLLM serves {model!r}, which is not a registry model: nothing to"
                                   " start", remedy=f"use it as it is at {self.base_url}")
            model = entry.slug
        return make_request(self.runtime, model=model, **options)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "runtime": self.runtime, "model": self.model, "install": self.install,
                "running": self.running, "base_url": self.base_url, "source": self.source,
                "model_source": self.model_source, "notes": list(self.notes), "option": self.option.to_dict()}


def select_option(options: LocalOptions, settings: Settings | None = None, *, key: str | None = None,
                  registry: Registry | None = None, check_token: bool = True) -> Selection:
    """Choose non-interactively: ``key`` (a wizard's pick), else ``NEMOCLAW_PROVIDER``, else the suggested option.

    ``vllm`` never installs; ``install-vllm`` uses a vLLM that already answers (with a note). The model comes from
    ``NEMOCLAW_VLLM_MODEL`` (vLLM) or ``NEMOCLAW_MODEL`` (NIM, Ollama), else the option's default.

    Raises:
        InvalidInput: an unknown key (exit 2); UnknownModel: a model name no registry entry knows (exit 2).
        PreflightRefused: the choice does not fit this host — nothing running, no profile, not experimental, a
            model too big or not served (exit 3); MissingToken when ``check_token`` and the model needs a token.
    """
    from nemoclaw_runtime.kernel.errors import InvalidInput

    settings = settings if settings is not None else Settings.from_env()
    if registry is None:
        from nemoclaw_runtime.registry import load_registry

        registry = load_registry()
    wanted, source = (key, "key") if key else (settings.provider, "NEMOCLAW_PROVIDER")
    if wanted is not None and wanted not in KEYS:
        raise InvalidInput(f"Unknown local option {wanted!r}", remedy=f"use one of: {', '.join(KEYS)}",
                           details={"key": wanted, "known": list(KEYS)})
    option, notes = _pick(options, wanted, source, settings)
    if wanted is None:
        source = "suggested" if option.suggested else "only"
    model, model_source = _pick_model(option, settings, registry, options.memory_budget_mib)
    chosen = option.model(model) if model else None
    if check_token:
        _require_token(option, chosen)
    return Selection(option.key, option.runtime, model, option, source, model_source, tuple(notes))


def _pick(options: LocalOptions, wanted: str | None, source: str, settings: Settings) -> tuple[LocalOption, list[str]]:
    from nemoclaw_runtime.kernel.errors import PreflightRefused

    if wanted is None:
        chosen = options.suggested or (options.options[0] if options.options else None)
        if chosen is None:
            reasons = "; ".join(f"{a.key}: {a.message}" for a in options.absent)
            raise PreflightRefused("No local inference option is available on this host",
                                   remedy=f"see `nemoclaw-runtime options` ({reasons})")
        return chosen, []
    said = f"NEMOCLAW_PROVIDER={wanted}" if source == "NEMOCLAW_PROVIDER" else f"option {wanted!r}"
    running = options.get(KEY_VLLM)
    if wanted == KEY_INSTALL_VLLM and running is not None:
        return running, [f"A vLLM already answers on localhost:{running.port}: using it instead of installing one"]
    chosen = options.get(wanted)
    if chosen is not None:
        return chosen, []
    if wanted == KEY_VLLM:
        raise PreflightRefused(f"{said}, but no vLLM answers on localhost:{settings.vllm_port}",
                               remedy="start your vLLM on that port (or set NEMOCLAW_VLLM_PORT), or use install-vllm"
                                      " to have one installed", details={"key": wanted})
    why = options.why_absent(wanted)
    if wanted == KEY_INSTALL_VLLM and why is not None and why.reason in (REASON_NO_GPU, REASON_NO_USABLE_GPU):
        raise PreflightRefused(NO_VLLM_PROFILE, remedy=why.remedy, details={"key": wanted, "reason": why.reason})
    message = why.message if why is not None else f"{wanted} is not offered on this host"
    raise PreflightRefused(f"{said} does not fit this host: {message}", remedy=why.remedy if why else None,
                           details={"key": wanted, "reason": why.reason if why else None})


def _pick_model(option: LocalOption, settings: Settings, registry: Registry,
                budget_mib: int | None) -> tuple[str | None, str]:
    if option.runtime == "vllm":
        return _pick_vllm_model(option, settings, registry)
    wanted = settings.model.strip() if settings.model and settings.model.strip() else None
    if wanted is None:
        return option.default_model, "default"
    if option.runtime == "nim":
        return registry.resolve_nim_model(wanted, budget_mib=budget_mib).name, "NEMOCLAW_MODEL"
    from nemoclaw_runtime.runtimes.drivers.ollama import check_tag

    return check_tag(wanted, "NEMOCLAW_MODEL"), "NEMOCLAW_MODEL"  # Ollama pulls any tag its library has


def _pick_vllm_model(option: LocalOption, settings: Settings, registry: Registry) -> tuple[str | None, str]:
    from nemoclaw_runtime.kernel.errors import PreflightRefused

    wanted = settings.vllm_model.strip() if settings.vllm_model and settings.vllm_model.strip() else None
    if option.key == KEY_INSTALL_VLLM:
        if wanted is None:
            return option.default_model, "default"
        return registry.resolve_vllm_model(wanted, profile=None).slug, "NEMOCLAW_VLLM_MODEL"  # unknown → exit 2
    served = tuple(m.id for m in option.models)
    if wanted is None:
        return option.default_model, "served"
    match = served_match(served, wanted, registry)
    if match is None:
        raise PreflightRefused(
            f"NEMOCLAW_VLLM_MODEL='{wanted}' is not served by the vLLM on localhost:{option.port}"
            f" (it serves {', '.join(served) or 'nothing'})",
            remedy="unset NEMOCLAW_VLLM_MODEL to use what it serves, or restart that vLLM with the model",
            details={"variable": "NEMOCLAW_VLLM_MODEL", "value": wanted, "served": list(served)})
    return match, "NEMOCLAW_VLLM_MODEL"


def _require_token(option: LocalOption, chosen: ModelChoice | None) -> None:
    from nemoclaw_runtime.kernel.errors import MissingToken

    variables = chosen.token_variables if chosen is not None and chosen.gated else ()
    if option.runtime == "nim":
        variables = option.token_variables
    if variables and not option.token_set:
        what = f"Model '{chosen.id}'" if chosen is not None else f"{option.label}"
        raise MissingToken(f"{what} needs a token: one of {', '.join(variables)} is required",
                           remedy=f"export {variables[0]}=<your token>, then run again",
                           details={"key": option.key, "variables": list(variables)})


__all__ = ["Selection", "select_option"]
