"""The library's front door: keyword functions an onboarding wizard calls instead of parsing CLI text.

Each function takes an optional :class:`Settings` (built from ``os.environ`` only when omitted), an ``events``
callback for progress (:mod:`nemoclaw_runtime.kernel.events`) and, for long operations, a
:class:`CancelToken` that may be set from another thread. Results and errors are typed values with ``to_dict()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.events import EventSink, discard
from nemoclaw_runtime.kernel.settings import Settings

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.runtimes.docker.containers import ManagedContainerView
    from nemoclaw_runtime.runtimes.docker.port import PulledImage
    from nemoclaw_runtime.runtimes.drivers.contract import Plan, UpResult
    from nemoclaw_runtime.runtimes.server.validate import ValidationResult


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings.from_env()


def detect_gpus(settings: Settings | None = None) -> GpuInventory:
    """The GPUs and host profile (NVML, or the ``NEMOCLAW_GPU_SNAPSHOT`` replay)."""
    from nemoclaw_runtime.gpu import detect_gpus as _detect

    return _detect(_settings(settings))


def plan(runtime: str = "vllm", *, settings: Settings | None = None, events: EventSink = discard,
         inventory: GpuInventory | None = None, **options: Any) -> Plan:
    """What ``up`` would do (the dry run). ``options`` are those of :func:`up`."""
    from nemoclaw_runtime.runtimes import pipeline

    return pipeline.plan(pipeline.make_request(runtime, **options), settings=_settings(settings),
                         inventory=inventory, events=events)


def up(runtime: str = "vllm", *, model: str | None = None, port: int | None = None, gpus: str = "all",
       image: str | None = None, name: str | None = None, host: str = "127.0.0.1", prefetch: bool = True,
       timeout_s: float | None = None, validate: bool = True, allow_no_tools: bool = False,
       settings: Settings | None = None, events: EventSink = discard, cancel: CancelToken | None = None,
       inventory: GpuInventory | None = None) -> UpResult:
    """Serve a model and return once it answers (see ``nemoclaw-runtime up --help`` for each option)."""
    from nemoclaw_runtime.runtimes import pipeline

    request = pipeline.make_request(runtime, model=model, port=port, gpus=gpus, image=image, name=name, host=host,
                                    prefetch=prefetch, timeout_s=timeout_s, validate=validate,
                                    allow_no_tools=allow_no_tools)
    return pipeline.up(request, settings=_settings(settings), inventory=inventory, events=events, cancel=cancel)


def pull(runtime: str, *, model: str | None = None, image: str | None = None, settings: Settings | None = None,
         events: EventSink = discard, cancel: CancelToken | None = None) -> PulledImage:
    """Pre-pull the image ``up runtime`` would run, pinned to this platform's digest."""
    from nemoclaw_runtime.runtimes import pipeline

    return pipeline.pull(runtime, settings=_settings(settings), model=model, image=image, events=events,
                         cancel=cancel)


def list_managed(*, runtime: str | None = None, settings: Settings | None = None) -> list[ManagedContainerView]:
    """Every container nemoclaw-runtime manages (selected by our label only)."""
    from nemoclaw_runtime.runtimes.docker.containers import list_managed as _list

    return _list(_settings(settings), runtime=runtime)


def stop(names: Iterable[str] = (), *, all: bool = False, runtime: str | None = None,
         settings: Settings | None = None, events: EventSink = discard) -> list[str]:
    """Stop and remove managed containers; unknown or foreign names → ``NoSuchContainer``, nothing touched."""
    from nemoclaw_runtime.runtimes.docker.containers import stop_managed

    return stop_managed(_settings(settings), list(names), all=all, runtime=runtime, events=events)


def logs(name: str, *, tail: int = 80, follow: bool = False, settings: Settings | None = None) -> Iterator[str]:
    """A managed container's log lines (stdout and stderr), oldest first."""
    from nemoclaw_runtime.runtimes.docker.containers import managed_logs

    return managed_logs(_settings(settings), name, tail=tail, follow=follow)


def validate(base_url: str, model: str, *, api: str | None = None, settings: Settings | None = None,
             events: EventSink = discard, cancel: CancelToken | None = None) -> ValidationResult:
    """Prove an OpenAI-compatible endpoint answers a real request (with a tool-calling probe)."""
    from nemoclaw_runtime.runtimes.server.validate import validate_endpoint

    return validate_endpoint(base_url, model, settings=_settings(settings), api=api, events=events, cancel=cancel)
