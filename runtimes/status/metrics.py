"""vLLM's ``/metrics`` (and NIM's, where exposed): Prometheus text reduced to the figures ``status`` shows.

:func:`parse_metrics` reads one scrape with prometheus-client's parser into a :class:`MetricsSample` (each known
figure summed over its label sets: engines, models); :func:`engine_metrics` turns the latest sample, and the one
before it, into :class:`EngineMetrics` — gauges as they are, counters as totals and as rates over the interval
between the two samples.

Names understood, first found wins (fit-and-scale.md §4; NIM for LLMs exports the same figures without the
``vllm:`` prefix at ``/v1/metrics``)::

    requests running / waiting   vllm:num_requests_running / vllm:num_requests_waiting     (NIM: no prefix)
    KV cache usage (0–1)         vllm:kv_cache_usage_perc; deprecated vllm:gpu_cache_usage_perc   (NIM: gpu_…)
    prompt / generation tokens   vllm:prompt_tokens_total / vllm:generation_tokens_total   (NIM: no prefix)
    preemptions                  vllm:num_preemptions_total
    prefix cache                 vllm:prefix_cache_queries_total + vllm:prefix_cache_hits_total;
                                 deprecated vllm:gpu_prefix_cache_queries_total + …_hits_total, and V0's
                                 vllm:gpu_prefix_cache_hit_rate gauge

A body that is not Prometheus text raises :class:`MetricsUnreadable` (with a one-line reason, never a traceback);
one that parses but holds none of these names gives a sample with no values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# figure -> ((sample name, deprecated?), ...) in order of preference
_NAMES: dict[str, tuple[tuple[str, bool], ...]] = {
    "requests_running": (("vllm:num_requests_running", False), ("num_requests_running", False)),
    "requests_waiting": (("vllm:num_requests_waiting", False), ("num_requests_waiting", False)),
    "kv_cache_usage": (("vllm:kv_cache_usage_perc", False), ("vllm:gpu_cache_usage_perc", True),
                       ("gpu_cache_usage_perc", False)),
    "prompt_tokens": (("vllm:prompt_tokens_total", False), ("vllm:prompt_tokens", False),
                      ("prompt_tokens_total", False)),
    "generation_tokens": (("vllm:generation_tokens_total", False), ("vllm:generation_tokens", False),
                          ("generation_tokens_total", False)),
    "preemptions": (("vllm:num_preemptions_total", False), ("vllm:num_preemptions", False)),
    "prefix_queries": (("vllm:prefix_cache_queries_total", False), ("vllm:gpu_prefix_cache_queries_total", True)),
    "prefix_hits": (("vllm:prefix_cache_hits_total", False), ("vllm:gpu_prefix_cache_hits_total", True)),
    "prefix_hit_rate": (("vllm:gpu_prefix_cache_hit_rate", True),),
}
#: Ratios are not summed over engines: the fullest KV cache is the one that matters.
_MAX_OVER_SERIES = frozenset({"kv_cache_usage", "prefix_hit_rate"})
_WANTED = {name for candidates in _NAMES.values() for name, _ in candidates}
EXCERPT_CHARS = 80


class MetricsUnreadable(ValueError):
    """The body is not Prometheus text; ``str()`` is a one-line reason fit for a user."""


@dataclass(frozen=True)
class MetricsSample:
    """One scrape: each known figure (summed over label sets), the deprecated names it was read from, and
    ``at`` — the clock's ``monotonic()`` when the answer arrived (rates divide by the difference)."""

    at: float
    values: Mapping[str, float] = field(default_factory=dict)
    deprecated_names: tuple[str, ...] = ()
    series: int = 0  # how many samples the body held in all


def parse_metrics(text: str, at: float) -> MetricsSample:
    """Read Prometheus text. Raises :class:`MetricsUnreadable` when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, list[float]] = {}
    series = 0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series += 1
                if sample.name in _WANTED and isinstance(sample.value, (int, float)) and math.isfinite(sample.value):
                    found.setdefault(sample.name, []).append(float(sample.value))
    except Exception as exc:  # noqa: BLE001 - foreign input: the parser raises ValueError, and worse on odd bytes
        raise MetricsUnreadable(f"not Prometheus text ({_reason(exc)}): {_excerpt(text)!r}") from None
    values: dict[str, float] = {}
    deprecated: list[str] = []
    for figure, candidates in _NAMES.items():
        for name, is_deprecated in candidates:
            if name in found:
                numbers = found[name]
                values[figure] = max(numbers) if figure in _MAX_OVER_SERIES else sum(numbers)
                if is_deprecated:
                    deprecated.append(name)
                break
    return MetricsSample(at=at, values=values, deprecated_names=tuple(deprecated), series=series)


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:EXCERPT_CHARS]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


# --- figures and rates ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineMetrics:
    """What the engine is doing. Stable JSON names (``to_dict``); ``None`` where the server does not say.

    - ``requests_running`` / ``requests_waiting``: gauges.
    - ``kv_cache_usage_pct``: KV cache in use, 0–100.
    - ``prompt_tokens_total`` / ``generation_tokens_total`` / ``preemptions_total``: counters since start.
    - ``prompt_tokens_per_s`` / ``generation_tokens_per_s``: over ``interval_s``, the time between this sample
      and the previous one (``None`` on a first sample, or when the counters went back: a restarted server).
    - ``preemptions_in_interval``: preemptions between the two samples.
    - ``prefix_cache_hit_rate``: 0–1, over the interval when there is one with queries, else since start.
    - ``deprecated_names``: deprecated metric names the figures were read from (an older vLLM).
    - ``note``: why rates are missing, if they are.
    """

    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage_pct: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    prefix_cache_hit_rate: float | None = None
    preemptions_total: float | None = None
    preemptions_in_interval: float | None = None
    interval_s: float | None = None
    deprecated_names: tuple[str, ...] = ()
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_running": _number(self.requests_running),
            "requests_waiting": _number(self.requests_waiting),
            "kv_cache_usage_pct": _number(self.kv_cache_usage_pct, 2),
            "prompt_tokens_total": _number(self.prompt_tokens_total),
            "generation_tokens_total": _number(self.generation_tokens_total),
            "prompt_tokens_per_s": _number(self.prompt_tokens_per_s, 2),
            "generation_tokens_per_s": _number(self.generation_tokens_per_s, 2),
            "prefix_cache_hit_rate": _number(self.prefix_cache_hit_rate, 4),
            "preemptions_total": _number(self.preemptions_total),
            "preemptions_in_interval": _number(self.preemptions_in_interval),
            "interval_s": _number(self.interval_s, 3),
            "deprecated_names": list(self.deprecated_names),
            "note": self.note,
        }


def _number(value: float | None, digits: int = 3) -> float | int | None:
    if value is None:
        return None
    if float(value).is_integer() and abs(value) < 2**53:
        return int(value)
    return round(value, digits)


FIRST_SAMPLE_NOTE = "rates need two samples (use --watch)"
RESET_NOTE = "counters went back (the server restarted): rates resume at the next sample"


def engine_metrics(current: MetricsSample, previous: MetricsSample | None = None) -> EngineMetrics:
    """The figures of ``current``, with rates against ``previous`` (the same server's sample before it)."""
    now = current.values
    kv = now.get("kv_cache_usage")
    interval = current.at - previous.at if previous is not None else None
    rates_ok = previous is not None and interval is not None and interval > 0
    note = None if rates_ok else FIRST_SAMPLE_NOTE
    before = previous.values if previous is not None else {}

    def delta(figure: str) -> float | None:
        if not rates_ok or figure not in now or figure not in before:
            return None
        return now[figure] - before[figure]

    deltas = {figure: delta(figure) for figure in ("prompt_tokens", "generation_tokens", "preemptions",
                                                    "prefix_queries", "prefix_hits")}
    if any(d is not None and d < 0 for d in deltas.values()):
        deltas = dict.fromkeys(deltas)
        note = RESET_NOTE

    def rate(figure: str) -> float | None:
        d = deltas[figure]
        return d / interval if d is not None and interval else None

    return EngineMetrics(
        requests_running=now.get("requests_running"),
        requests_waiting=now.get("requests_waiting"),
        kv_cache_usage_pct=None if kv is None else kv * 100.0,
        prompt_tokens_total=now.get("prompt_tokens"),
        generation_tokens_total=now.get("generation_tokens"),
        prompt_tokens_per_s=rate("prompt_tokens"),
        generation_tokens_per_s=rate("generation_tokens"),
        prefix_cache_hit_rate=_hit_rate(now, deltas),
        preemptions_total=now.get("preemptions"),
        preemptions_in_interval=deltas["preemptions"],
        interval_s=interval if rates_ok else None,
        deprecated_names=current.deprecated_names,
        note=note,
    )


def _hit_rate(now: Mapping[str, float], deltas: Mapping[str, float | None]) -> float | None:
    queries, hits = deltas["prefix_queries"], deltas["prefix_hits"]
    if queries and hits is not None and queries > 0:
        return min(max(hits / queries, 0.0), 1.0)
    total_queries, total_hits = now.get("prefix_queries"), now.get("prefix_hits")
    if total_queries and total_hits is not None and total_queries > 0:
        return min(max(total_hits / total_queries, 0.0), 1.0)
    return now.get("prefix_hit_rate")


__all__ = [
    "EngineMetrics", "FIRST_SAMPLE_NOTE", "MetricsSample", "MetricsUnreadable", "RESET_NOTE", "engine_metrics",
    "parse_metrics",
]
