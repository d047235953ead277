"""``fits`` for a list of registry models on this host: what ``models`` and ``options`` show beside each vLLM entry.

Bounded and quiet: the questions that need no facts (no GPU, a GPU below the model's compute capability) are
answered from the inventory alone; the rest read their facts from the HF cache first (facts read once are reused,
no network), then — only for what the cache lacks — from the hub, every model in parallel, with short timeouts
and one deadline. An answer not had in time, offline, or refused by the hub is ``fits: null`` with the reason;
nothing here raises for one model's trouble.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.gpu.inventory import GpuInventory
from nemoclaw_runtime.kernel.errors import NemoclawError
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry.entries import VllmModel
from nemoclaw_runtime.runtimes.fit.engine import (
    DECISION_REFUSED,
    DECISION_UNKNOWN,
    FitResult,
    plan_fit,
)
from nemoclaw_runtime.runtimes.fit.facts import ModelFacts, ModelSource
from nemoclaw_runtime.runtimes.fit.options import ServeOptions

#: Per request (config.json, one safetensors header) and for the whole listing.
LISTING_REQUEST_TIMEOUT_S = 4.0
LISTING_DEADLINE_S = 8.0


@dataclass(frozen=True)
class FitVerdict:
    """One model's answer for a listing: ``fits`` True / False, or None with ``reason``."""

    model: str
    fits: bool | None
    reason: str | None
    decision: str
    max_model_len_fit: int | None = None
    tensor_parallel_size: int | None = None
    gpus: tuple[int, ...] = ()

    @classmethod
    def of(cls, result: FitResult) -> FitVerdict:
        reason = result.reasons[0] if result.reasons else None
        if result.decision == DECISION_UNKNOWN:
            why = "; ".join(r for r in result.reasons[1:]) or reason
            return cls(result.model, None, why, result.decision)
        longest = result.max_model_len_fit if result.max_model_len_fit > 0 else None
        return cls(result.model, result.fits, reason, result.decision, longest,
                   result.tensor_parallel_size or None, tuple(result.gpus))

    @classmethod
    def unknown(cls, model: str, reason: str) -> FitVerdict:
        return cls(model, None, reason, DECISION_UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "reason": self.reason, "decision": self.decision,
                "max_model_len_fit": self.max_model_len_fit, "tensor_parallel_size": self.tensor_parallel_size,
                "gpus": list(self.gpus)}


def judge_models(models: Sequence[VllmModel], inventory: GpuInventory, settings: Settings, *,
                 extra: tuple[str, ...] = (), source: ModelSource | None = None,
                 timeout_s: float = LISTING_DEADLINE_S) -> dict[str, FitVerdict]:
    """``{slug: FitVerdict}`` for ``models`` with their registry flags (and ``extra`` args) on ``inventory``.

    ``source`` is used as given; without it the HF cache is read first, then the hub (the settings' endpoint,
    token and ``HF_HUB_OFFLINE``) for what the cache lacks, within ``timeout_s`` in all.
    """
    verdicts: dict[str, FitVerdict] = {}
    pending: dict[str, tuple[VllmModel, ServeOptions]] = {}
    for model in models:
        try:
            options = ServeOptions.from_argv(model.serve_argv(extra))
            blank = plan_fit(ModelFacts(model.hf_id), inventory, options,
                             min_compute_capability=model.min_compute_capability)
        except NemoclawError as exc:
            verdicts[model.slug] = FitVerdict.unknown(model.hf_id, exc.message)
            continue
        if blank.decision == DECISION_REFUSED:  # no GPU, or every GPU below its compute capability: no facts needed
            verdicts[model.slug] = FitVerdict.of(blank)
        else:
            pending[model.slug] = (model, options)
    if not pending:
        return verdicts
    if source is not None:
        sources: list[ModelSource] = [source]
    else:
        from nemoclaw_runtime.runtimes.fit import hub

        sources = [hub.HubModelSource(settings, offline=True),
                   hub.default_model_source(settings, timeout_s=min(timeout_s, LISTING_REQUEST_TIMEOUT_S))]
    facts: dict[str, ModelFacts] = {}
    failures: dict[str, str] = {}
    for each in sources:
        wanted = {slug: entry for slug, entry in pending.items() if slug not in facts or not facts[slug].complete}
        if not wanted:
            break
        for slug, value in _gather(each, wanted, timeout_s).items():
            if isinstance(value, str):
                failures[slug] = value
                continue
            before = facts.get(slug)
            facts[slug] = value if before is None or value.complete else dataclasses.replace(
                value, config=value.config or before.config, weights=value.weights or before.weights)
    for slug, (model, options) in pending.items():
        known = facts.get(slug)
        if known is None or (not known.complete and slug in failures):
            verdicts[slug] = FitVerdict.unknown(model.hf_id, failures.get(slug, "no facts could be had"))
            continue
        try:
            result = plan_fit(known, inventory, options, min_compute_capability=model.min_compute_capability)
        except NemoclawError as exc:
            verdicts[slug] = FitVerdict.unknown(model.hf_id, exc.message)
            continue
        verdicts[slug] = FitVerdict.of(result)
    return {model.slug: verdicts[model.slug] for model in models}


def _gather(source: ModelSource, wanted: dict[str, tuple[VllmModel, ServeOptions]],
            timeout_s: float) -> dict[str, ModelFacts | str]:
    """Each model's facts in parallel; a model whose source raised or did not answer in time gets the reason.

    Daemon threads, not a pool: one the deadline gave up on must not hold the process open at exit."""
    out: dict[str, ModelFacts | str] = {}
    lock = threading.Lock()
    threads = []

    def one(slug: str, model: VllmModel, options: ServeOptions) -> None:
        try:
            value: ModelFacts | str = source.facts(model.hf_id, revision=options.revision)
        except NemoclawError as exc:
            value = exc.message
        except Exception as exc:  # noqa: BLE001 - one model's trouble is its reason, never a traceback
            value = f"reading its facts failed: {exc}"
        with lock:
            out[slug] = value

    for slug, (model, options) in wanted.items():
        thread = threading.Thread(target=one, args=(slug, model, options), name=f"nemoclaw-fit-{slug}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        done = dict(out)
    return {slug: done.get(slug, f"the hub did not answer within {timeout_s:g} s") for slug in wanted}


__all__ = ["LISTING_DEADLINE_S", "LISTING_REQUEST_TIMEOUT_S", "FitVerdict", "judge_models"]
