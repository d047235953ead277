"""The facts a fit is computed from, and where they come from.

:class:`ModelFacts` holds a model's ``config.json`` and what its checkpoint stores (:class:`WeightsFacts`), or the
reasons either is unknown. A :class:`ModelSource` produces them: ``hub.HubModelSource`` asks the Hugging Face
hub (headers only, never weights); :class:`DirectoryModelSource` reads a folder laid out like
``fixtures/fit/<org>__<name>/`` (``config.json`` + ``weights.json``), which is what tests and the benchmark use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.runtimes.fit.safetensors import (
    SOURCE_DECLARED,
    SOURCE_FILE_SIZES,
    SOURCE_HEADERS,
    WeightsFacts,
    merge_counts,
    stored_bytes,
)

#: ``weights.json`` may say the counts were derived from the published architecture rather than read from headers.
SOURCE_COMPUTED = "computed-from-architecture"
_KNOWN_SOURCES = {SOURCE_HEADERS, SOURCE_FILE_SIZES, SOURCE_DECLARED, SOURCE_COMPUTED}


@dataclass(frozen=True)
class ModelFacts:
    """What is known about one model at one revision.

    ``config`` is ``None`` and/or ``weights`` is ``None`` when that fact could not be had; ``reasons`` then say
    why (offline and not cached, no ``config.json``, ...). ``assumptions`` carry how a fact was obtained when that
    matters to its accuracy (file sizes instead of headers, a cached copy because the hub was unreachable).
    """

    model_id: str
    revision: str | None = None
    config: Mapping[str, Any] | None = None
    weights: WeightsFacts | None = None
    reasons: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    from_cache: bool = False

    @property
    def complete(self) -> bool:
        return self.config is not None and self.weights is not None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_id, "revision": self.revision, "config_known": self.config is not None,
                "weights": self.weights.to_dict() if self.weights else None, "reasons": list(self.reasons),
                "assumptions": list(self.assumptions), "from_cache": self.from_cache}


class ModelSource(Protocol):
    """Anything that can tell a model's facts: the hub, a fixture folder, a test double."""

    def facts(self, model_id: str, *, revision: str | None = None) -> ModelFacts:
        """The facts of ``model_id``; unknown parts are ``None`` with a reason — never an exception for them.

        May raise the errors a user must act on (a gated model without a token, a repository that does not
        exist): :class:`~nemoclaw_runtime.kernel.errors.MissingToken`, ``AccessDenied``, ``InvalidInput``.
        """
        ...


@dataclass
class StaticModelSource:
    """A source over facts already in memory (tests, library callers that fetched them elsewhere)."""

    known: dict[str, ModelFacts] = field(default_factory=dict)

    def facts(self, model_id: str, *, revision: str | None = None) -> ModelFacts:
        found = self.known.get(model_id)
        if found is None:
            return ModelFacts(model_id, revision, reasons=(f"no facts are recorded for {model_id}",))
        return found


@dataclass(frozen=True)
class DirectoryModelSource:
    """Facts from ``<root>/<org>__<name>/``: ``config.json`` and ``weights.json``.

    ``weights.json``: ``{"source": "safetensors-headers" | "computed-from-architecture" | "declared" |
    "file-sizes", "parameter_count": {"BF16": n, ...}}`` or ``{"source": ..., "total_bytes": n}``, with an
    optional ``"note"``.
    """

    root: Path

    def folder(self, model_id: str) -> Path:
        return self.root / model_id.replace("/", "__")

    def facts(self, model_id: str, *, revision: str | None = None) -> ModelFacts:
        folder = self.folder(model_id)
        reasons: list[str] = []
        config = _read_json(folder / "config.json")
        if config is None:
            reasons.append(f"no config.json recorded for {model_id} (in {folder})")
        weights_doc = _read_json(folder / "weights.json")
        weights = weights_from_document(weights_doc) if weights_doc is not None else None
        assumptions: list[str] = []
        if weights is None:
            reasons.append(f"no stored-bytes summary recorded for {model_id} (in {folder})")
        elif weights.source != SOURCE_HEADERS:
            assumptions.append(f"weights: {weights.source}" + (f" ({weights.note})" if weights.note else ""))
        recorded = weights_doc.get("revision") if isinstance(weights_doc, Mapping) else None
        return ModelFacts(model_id, revision or (recorded if isinstance(recorded, str) else None),
                          config, weights, tuple(reasons), tuple(assumptions))


def weights_from_document(doc: Mapping[str, Any]) -> WeightsFacts | None:
    """A :class:`WeightsFacts` from a ``weights.json`` document; ``None`` when it holds no usable figure."""
    source = str(doc.get("source") or SOURCE_HEADERS)
    if source not in _KNOWN_SOURCES:
        return None
    note = doc.get("note") if isinstance(doc.get("note"), str) else None
    files_value = doc.get("files")
    files = files_value if isinstance(files_value, int) else 0
    counts = doc.get("parameter_count")
    if isinstance(counts, Mapping) and counts:
        merged = merge_counts([{str(k): int(v) for k, v in counts.items()}])
        return WeightsFacts(stored_bytes(merged), source, merged, files, note)
    total = doc.get("total_bytes")
    if isinstance(total, int) and total > 0:
        return WeightsFacts(total, source, {}, files, note)
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: UnicodeDecodeError, JSONDecodeError, JsonTooDeep
        return None
    return data if isinstance(data, dict) else None


__all__ = ["DirectoryModelSource", "ModelFacts", "ModelSource", "StaticModelSource", "weights_from_document"]
