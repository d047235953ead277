"""The one way a size reaches a user: binary units (KiB, MiB, GiB, TiB), picked by magnitude.

Every user-facing message that states a size (disk, memory, a layer's progress, a download) goes through
:func:`format_bytes`, so one message never mixes decimal and binary units and a non-zero size never reads
``0.0 GiB``. Machine-readable output (``--json``, ``details``) keeps the exact integers.

The one exception is the GPU summary of ``gpu/summary.py``, which reproduces NemoClaw's text ("NVIDIA GPU detected
(NAME, 81559 MB)") character for character.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

_UNITS: tuple[tuple[str, int], ...] = (("B", 1), ("KiB", KIB), ("MiB", MIB), ("GiB", GIB), ("TiB", TIB))


def format_bytes(n: float | None, *, unknown: str = "?") -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 KiB``, ``23.6 GiB``, ``637 GiB``, ``1.2 TiB``; ``unknown`` for None.

    The unit is the largest one the size reaches, so the number is at least 1 and a non-zero size never reads
    ``0.0``; below 100 of the unit one decimal is shown, from 100 on none. A size that would show as 1024 of a unit
    is shown as 1.0 of the next one.
    """
    if n is None:
        return unknown
    sign = "-" if n < 0 else ""
    size = abs(float(n))
    index = 0
    while index + 1 < len(_UNITS) and size >= _UNITS[index + 1][1]:
        index += 1
    if index + 1 < len(_UNITS) and round(size / _UNITS[index][1]) >= KIB:
        index += 1
    name, factor = _UNITS[index]
    value = size / factor
    if factor == 1:
        return f"{sign}{round(value)} B"
    return f"{sign}{value:.1f} {name}" if round(value, 1) < 100 else f"{sign}{value:.0f} {name}"


def format_mib(mib: float | None, *, unknown: str = "?") -> str:
    """A size in MiB (how NVML, the host and the registry data count memory), formatted by :func:`format_bytes`."""
    return unknown if mib is None else format_bytes(mib * MIB)


__all__ = ["GIB", "KIB", "MIB", "TIB", "format_bytes", "format_mib"]
