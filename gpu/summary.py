"""The GPU summary lines, in NemoClaw's exact format (``formatNvidiaGpuPreflightLines``, #2669).

    NVIDIA GPU detected (NVIDIA GB300, 284208 MB)
    NVIDIA GPU detected (2x NVIDIA H100 80GB HBM3, 163840 MB)
    NVIDIA GPU detected: 3 GPUs, 204800 MB VRAM
        - 2x NVIDIA H100 80GB HBM3 (163840 MB)
        - 1x NVIDIA A100 40GB (40960 MB)
    NVIDIA GPU detected: 2 GPU(s), 163840 MB VRAM          (every name blank)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["summary_lines"]

NO_GPU_LINE = "No NVIDIA GPU detected"


@dataclass(frozen=True)
class GpuGroup:
    name: str
    count: int
    memory_mib: int


def group_by_name(gpus: Sequence[tuple[str, int]]) -> tuple[GpuGroup, ...]:
    """``(name, memory)`` rows grouped by whitespace-normalised name, first-seen order, blank names dropped."""
    order: list[str] = []
    counts: dict[str, int] = {}
    memory: dict[str, int] = {}
    for raw_name, mib in gpus:
        name = " ".join(raw_name.split())
        if not name:
            continue
        if name not in counts:
            order.append(name)
            counts[name] = 0
            memory[name] = 0
        counts[name] += 1
        memory[name] += mib
    return tuple(GpuGroup(name, counts[name], memory[name]) for name in order)


def summary_lines(gpus: Sequence[tuple[str, int]], total_mib: int) -> tuple[str, ...]:
    """The detection lines for GPUs given as ``(name, memory MiB)``; ``total_mib`` is the summed budget."""
    count = len(gpus)
    if count == 0:
        return (NO_GPU_LINE,)
    groups = group_by_name(gpus)
    if not groups:
        return (f"NVIDIA GPU detected: {count} GPU(s), {total_mib} MB VRAM",)
    if len(groups) == 1 and groups[0].count == count:
        label = groups[0].name if count == 1 else f"{count}x {groups[0].name}"
        return (f"NVIDIA GPU detected ({label}, {total_mib} MB)",)
    prefixed = any(group.count > 1 for group in groups)
    lines = [f"NVIDIA GPU detected: {count} GPUs, {total_mib} MB VRAM"]
    for group in groups:
        label = f"{group.count}x {group.name}" if prefixed else group.name
        lines.append(f"    - {label} ({group.memory_mib} MB)")
    return tuple(lines)
