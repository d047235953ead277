"""Stored weight bytes from safetensors headers: the dtype table, the header parser and :class:`WeightsFacts`.

A safetensors file starts with an 8-byte little-endian header length ``N`` and ``N`` bytes of JSON mapping each
tensor name to ``{"dtype", "shape", "data_offsets"}`` (plus an optional ``__metadata__``). The weight bytes of a
checkpoint are the sum of its tensors' *stored* bytes: elements × the size of the stored dtype. Quantised
checkpoints are counted as stored — packed 4-bit weights kept as ``U8``/``I8`` count one byte per stored element,
scale tensors count — never as parameters × ``torch_dtype``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nemoclaw_runtime.kernel.text import loads_json

#: Bits per stored element of each safetensors dtype (the format's own names).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

#: safetensors refuses headers above 100 MB; anything larger is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000

SOURCE_HEADERS = "safetensors-headers"
SOURCE_FILE_SIZES = "file-sizes"
SOURCE_DECLARED = "declared"


class HeaderError(ValueError):
    """Bytes that are not a safetensors header; the message says why."""


def dtype_bytes(dtype: str, elements: int) -> int:
    """Stored bytes of ``elements`` elements of safetensors ``dtype`` (rounded up for sub-byte dtypes)."""
    bits = DTYPE_BITS.get(dtype.upper())
    if bits is None:
        raise HeaderError(f"unknown safetensors dtype {dtype!r}")
    return math.ceil(elements * bits / 8)


def stored_bytes(parameter_count: Mapping[str, int]) -> int:
    """Total stored bytes of a ``{dtype: elements}`` count (huggingface_hub's ``parameter_count`` shape)."""
    return sum(dtype_bytes(dtype, count) for dtype, count in parameter_count.items())


def header_length(prefix: bytes) -> int:
    """The JSON header length from a file's first 8 bytes; raises :class:`HeaderError` when implausible."""
    if len(prefix) < 8:
        raise HeaderError(f"the file is {len(prefix)} bytes long, shorter than a safetensors prefix")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length <= 1 or length > MAX_HEADER_BYTES:
        raise HeaderError(f"implausible safetensors header length {length}")
    return int(length)


def parse_header(raw: bytes) -> dict[str, int]:
    """``{dtype: elements}`` of one safetensors JSON header (the bytes after the 8-byte length)."""
    try:
        header = loads_json(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, JsonTooDeep
        raise HeaderError(f"the safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise HeaderError("the safetensors header is not a JSON object")
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(tensor, dict) or not isinstance(tensor.get("dtype"), str):
            raise HeaderError(f"tensor {name!r} has no dtype")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise HeaderError(f"tensor {name!r} has no valid shape")
        dtype = tensor["dtype"].upper()
        if dtype not in DTYPE_BITS:
            raise HeaderError(f"tensor {name!r} has the unknown dtype {dtype!r}")
        counts[dtype] = counts.get(dtype, 0) + math.prod(shape)
    return counts


def merge_counts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for dtype, count in part.items():
            total[dtype] = total.get(dtype, 0) + int(count)
    return dict(sorted(total.items()))


@dataclass(frozen=True)
class WeightsFacts:
    """What the checkpoint stores. ``source`` says how it was learnt:

    - ``safetensors-headers``: ``parameter_count`` (stored elements per dtype) read from the headers — exact;
    - ``file-sizes``: the sum of the repo's weight files (headers unreadable) — includes the headers, a slight
      over-estimate;
    - ``declared``: a size someone published (fixtures only), with ``note`` naming where.
    """

    total_bytes: int
    source: str
    parameter_count: Mapping[str, int] = field(default_factory=dict)
    files: int = 0
    note: str | None = None

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], *, files: int = 0, note: str | None = None) -> WeightsFacts:
        merged = merge_counts([counts])
        return cls(stored_bytes(merged), SOURCE_HEADERS, merged, files, note)

    @property
    def exact(self) -> bool:
        return self.source == SOURCE_HEADERS

    def to_dict(self) -> dict[str, Any]:
        return {"total_bytes": self.total_bytes, "source": self.source,
                "parameter_count": dict(self.parameter_count), "files": self.files, "note": self.note}


__all__ = [
    "DTYPE_BITS", "HeaderError", "SOURCE_DECLARED", "SOURCE_FILE_SIZES", "SOURCE_HEADERS", "WeightsFacts",
    "header_length", "merge_counts", "parse_header", "stored_bytes",
]
