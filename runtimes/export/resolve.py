"""From the options of ``export kubernetes`` to an :class:`ExportPlan`: every input checked (one line and a remedy,
exit 2), the model resolved through the registry as ``up`` resolves it, the image pinned when a digest is known.

A cluster has no host profile, so nothing is chosen for the user that ``up`` would pick from the host: the model
must be named (``--model``, else ``NEMOCLAW_VLLM_MODEL`` / ``NEMOCLAW_MODEL`` as ``up`` reads them) and the GPUs per
pod default to one. The vLLM image is ``--image``, else the lock's, else ``NEMOCLAW_VLLM_IMAGE``, else the
registry's generic Linux image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.names import PROFILE_LINUX_NVIDIA, RUNTIME_NIM, RUNTIME_VLLM
from nemoclaw_runtime.kernel.secret import is_secret_flag
from nemoclaw_runtime.kernel.text import shown
from nemoclaw_runtime.registry import load_registry, parse_extra_args
from nemoclaw_runtime.runtimes.drivers.vllm import set_flag
from nemoclaw_runtime.runtimes.export.common import ImageRef, check_name, check_namespace, derive_name, gibibytes
from nemoclaw_runtime.runtimes.export.plan import (
    FORMAT_AUTO,
    FORMAT_DEPLOYMENT,
    FORMAT_LEADERWORKERSET,
    FORMAT_NIM_OPERATOR,
    ExportPlan,
)
from nemoclaw_runtime.runtimes.lockfile import Lock, read_lock

if TYPE_CHECKING:
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes.fit import ModelSource

FORMATS: dict[str, tuple[str, ...]] = {
    RUNTIME_VLLM: (FORMAT_AUTO, FORMAT_DEPLOYMENT, FORMAT_LEADERWORKERSET),
    RUNTIME_NIM: (FORMAT_AUTO, FORMAT_NIM_OPERATOR, FORMAT_DEPLOYMENT),
}
MAX_GPUS = 64
MAX_NODES = 64
DEFAULT_CACHE = "100Gi"
CACHE_HEADROOM = 1.2  # the weights estimate times this: room for the tokenizer, config and a second revision
#: A Service name is 63 at most; the LWS leader Service adds ``-leader`` and LWS pods ``-G-W`` to the name.
LWS_NAME_CHARS = 63 - len("-leader")


@dataclass
class Request:
    """The options as given (``None``: not given)."""

    runtime: str
    model: str | None
    gpus: int | None
    nodes: int
    namespace: str
    name: str | None
    format: str
    image: str | None
    lock_path: Path | None
    notes: list[str] = field(default_factory=list)


def resolve(request: Request, settings: Settings, model_source: ModelSource | None = None) -> ExportPlan:
    """The plan, or :class:`InvalidInput` naming the first bad input (the registry's own error for a model)."""
    runtime = _runtime(request.runtime)
    namespace = check_namespace(request.namespace)
    gpus = _count(request.gpus if request.gpus is not None else 1, "--gpus", MAX_GPUS)
    nodes = _count(request.nodes, "--nodes", MAX_NODES)
    form = _format(runtime, request.format, nodes)
    image = checks.check_image_reference(request.image) if request.image is not None else None
    lock = read_lock(request.lock_path, runtime) if request.lock_path is not None else None
    build = _vllm if runtime == RUNTIME_VLLM else _nim
    return build(request, settings, lock, image, form, namespace, gpus, nodes, model_source)


def _runtime(value: str) -> str:
    if value not in FORMATS:
        raise InvalidInput(f"export kubernetes supports vllm and nim, not {shown(value)}",
                           remedy="run `nemoclaw-runtime export kubernetes vllm --model M` (or nim); Ollama serves "
                                  "one host")
    return value


def _count(value: object, what: str, high: int) -> int:
    return checks.check_int(value, what, low=1, high=high, remedy=f"pass a whole number between 1 and {high}")


def _format(runtime: str, value: str, nodes: int) -> str:
    allowed = FORMATS[runtime]
    if value not in allowed:
        raise InvalidInput(f"Invalid --format {shown(value)} for {runtime}: one of {', '.join(allowed)}",
                           remedy=f"pass --format {allowed[1]}, or leave it out (auto)")
    if value == FORMAT_AUTO:
        if runtime == RUNTIME_NIM:
            return FORMAT_NIM_OPERATOR
        return FORMAT_LEADERWORKERSET if nodes > 1 else FORMAT_DEPLOYMENT
    if value == FORMAT_DEPLOYMENT and nodes > 1:
        spread = FORMAT_LEADERWORKERSET if runtime == RUNTIME_VLLM else FORMAT_NIM_OPERATOR
        raise InvalidInput(f"--format deployment runs on one node, not --nodes {nodes}",
                           remedy=f"pass --format {spread} (or leave --format out) for {nodes} nodes")
    if value == FORMAT_LEADERWORKERSET and nodes < 2:
        raise InvalidInput("--format leaderworkerset spreads one server over several nodes: it needs --nodes 2 or "
                           "more", remedy="pass --nodes N, or --format deployment for one node")
    return value


def _named(request: Request, fallback: str | None, variable: str) -> tuple[str, str]:
    """The model asked for and where from: ``--model``, else the lock's, else the setting ``up`` reads; else a
    refusal."""
    if request.model is not None and request.model.strip():
        return checks.check_plain_text(request.model, "--model"), "--model"
    if fallback:
        return fallback, variable
    raise InvalidInput("export kubernetes needs a model: a cluster has no host profile to choose a default",
                       remedy=f"pass --model SLUG (see `nemoclaw-runtime models --runtime {request.runtime} --all`)")


def _vllm(request: Request, settings: Settings, lock: Lock | None, image: str | None, form: str, namespace: str,
          gpus: int, nodes: int, model_source: ModelSource | None) -> ExportPlan:
    registry = load_registry()
    text, source = _named(request, lock.model if lock else settings.vllm_model,
                          "the lock" if lock else "NEMOCLAW_VLLM_MODEL")
    model = registry.resolve_vllm_model(text, profile=None, source=source)
    _same_model(lock, lambda other: registry.resolve_vllm_model(other, profile=None).slug == model.slug, model.slug)
    argv = model.serve_argv(parse_extra_args(settings.vllm_extra_args_json))
    _no_secret_flags(argv)
    if lock is not None and lock.weights_revision and not model.hf_revision:
        argv = set_flag(argv, "--revision", lock.weights_revision)  # the lock pins what the registry does not
    fallback = registry.vllm_profile_for(PROFILE_LINUX_NVIDIA)
    default = settings.vllm_image or (fallback.image if fallback else None)
    ref = _image(request, lock, image, default)
    if model.adhoc:
        request.notes.append(f"{model.hf_id} is not a registry entry: whether it is gated is the hub's to say, so "
                             "the hf-token Secret is optional")
    return ExportPlan(runtime=RUNTIME_VLLM, format=form, name=_name(request, model.slug, form), namespace=namespace,
                      model=model.slug, gpus=gpus, nodes=nodes, image=ref, argv=argv,
                      cache_size=_cache_size(request, model.hf_id, model.hf_revision, model_source),
                      ready_timeout_s=settings.vllm_ready_timeout, token_optional=not model.gated)


def _nim(request: Request, settings: Settings, lock: Lock | None, image: str | None, form: str, namespace: str,
         gpus: int, nodes: int, model_source: ModelSource | None) -> ExportPlan:
    registry = load_registry()
    text, source = _named(request, lock.model if lock else settings.model, "the lock" if lock else "NEMOCLAW_MODEL")
    model = registry.resolve_nim_model(text, budget_mib=None, source=source)  # the cluster's GPUs are unknown here
    _same_model(lock, lambda other: registry.resolve_nim_model(other, budget_mib=None).name == model.name, model.name)
    ref = _image(request, lock, image, settings.nim_image or model.image)
    request.notes.append(f"{model.name} needs at least {model.min_vram_mib // 1024} GiB of GPU memory in all: "
                         f"--gpus {gpus} per pod must hold it")
    return ExportPlan(runtime=RUNTIME_NIM, format=form, name=_name(request, model.name, form), namespace=namespace,
                      model=model.name, gpus=gpus, nodes=nodes, image=ref, argv=(), cache_size=_nim_cache(request),
                      ready_timeout_s=settings.nim_ready_timeout, token_optional=False)


def _same_model(lock: Lock | None, same: Callable[[str], bool], model: str) -> None:
    if lock is not None and not same(lock.model):
        raise InvalidInput(f"The lock is for the model {shown(lock.model)}, not {model}",
                           remedy="drop --model to export the locked model, or write a new lock with "
                                  "`nemoclaw-runtime lock RUNTIME --model M -o PATH`")


def _no_secret_flags(argv: tuple[str, ...]) -> None:
    """A manifest is shared and committed: a credential in argv (``--api-key`` in the extra args) must not go in."""
    found = [token.split("=", 1)[0] for token in argv if is_secret_flag(token)]
    if found:
        raise InvalidInput(f"The vLLM arguments carry a credential ({found[0]}): a manifest must not hold it",
                           remedy="remove it from NEMOCLAW_VLLM_EXTRA_ARGS_JSON; give the server its key from a "
                                  "Secret (VLLM_API_KEY) after exporting")


def _image(request: Request, lock: Lock | None, image: str | None, default: str | None) -> ImageRef:
    """``--image``, else the lock's, else ``default``; pinned by the digest it carries or the lock records."""
    if image is not None and lock is not None and ImageRef.parse(image).tagged != ImageRef.parse(lock.image).tagged:
        raise InvalidInput(f"--image {shown(image)} is not the lock's image {shown(lock.image)}",
                           remedy="drop --image to export the locked image, or write a new lock with "
                                  "`nemoclaw-runtime lock RUNTIME --image IMAGE -o PATH`")
    chosen = image or (lock.image if lock else None) or default
    if chosen is None:
        raise InvalidInput("No image for this runtime", remedy="pass --image REPOSITORY:TAG")
    ref = ImageRef.parse(chosen).pinned(lock.image_digest if lock else None)
    if ref.digest is None:
        request.notes.append(f"the image {ref.tagged} is not pinned: pass --lock PATH (from `nemoclaw-runtime lock`) "
                             "or --image REPOSITORY@sha256:… so every node runs the same bytes")
    return ref


def _name(request: Request, model: str, form: str) -> str:
    limit = LWS_NAME_CHARS if form == FORMAT_LEADERWORKERSET else 63
    if request.name is not None:
        return check_name(request.name, limit=limit)
    return check_name(derive_name(request.runtime, model), limit=limit)


def _cache_size(request: Request, hf_id: str, revision: str | None, source: ModelSource | None) -> str:
    """The HF cache claim: the weights × :data:`CACHE_HEADROOM` when a source knows their size, else 100Gi."""
    weights = source.facts(hf_id, revision=revision).weights if source is not None else None
    if weights is not None and weights.total_bytes > 0:
        return gibibytes(weights.total_bytes, CACHE_HEADROOM)
    request.notes.append(f"the size of {hf_id} is not known here: the cache volume asks for {DEFAULT_CACHE}; "
                         "edit its storage request if the weights are larger")
    return DEFAULT_CACHE


def _nim_cache(request: Request) -> str:
    request.notes.append(f"the NIM cache asks for {DEFAULT_CACHE} (the catalog records GPU memory, not the download "
                         "size); edit its size if the model's profiles are larger")
    return DEFAULT_CACHE


__all__ = ["DEFAULT_CACHE", "FORMATS", "MAX_GPUS", "MAX_NODES", "Request", "resolve"]
