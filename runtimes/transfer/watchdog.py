"""The phase-aware pull watchdog: pure logic over the engine's pull events and an injected clock.

A pull is *stalled* when nothing moved for ``stall_timeout`` seconds while bytes are expected (some layer is
queued or downloading). When every byte is in and the engine is extracting or verifying — phases in which it may
send nothing for minutes on a large layer (NemoClaw issue 6399) — the longer ``quiet_timeout`` applies. Anything
that moves counts as progress: one more byte, a new layer, a new status. ``max_timeout`` caps the whole pull.

The watchdog never touches the stream; :mod:`runtimes.transfer.image_pull` feeds it events, asks
:meth:`PullWatchdog.verdict` and acts (aborts the stream). The same table of layers gives the aggregated byte progress.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nemoclaw_runtime.kernel.clock import Clock
from nemoclaw_runtime.kernel.units import format_bytes

#: Statuses in which the engine still expects bytes for a layer from the registry.
BYTES_EXPECTED = ("Pulling fs layer", "Waiting", "Downloading", "Retrying")
#: Statuses after which a layer's bytes are all in.
DOWNLOADED = ("Verifying Checksum", "Download complete", "Extracting", "Pull complete", "Already exists")
#: Statuses that end a layer.
COMPLETE = ("Pull complete", "Already exists")
LAYER_STATUSES = BYTES_EXPECTED + DOWNLOADED

RATE_WINDOW_S = 5.0
MAX_LAYERS = 4096  # a bound on the table: no real image has this many layers


@dataclass
class Layer:
    id: str
    status: str
    current: int = 0  # download bytes, from Downloading events
    total: int | None = None
    extracted: int = 0  # extraction bytes, from Extracting events

    @property
    def expects_bytes(self) -> bool:
        if not self.status.startswith(BYTES_EXPECTED):
            return False
        return self.total is None or self.current < self.total

    @property
    def complete(self) -> bool:
        return self.status in COMPLETE

    @property
    def downloaded_bytes(self) -> int:
        if self.status == "Already exists":
            return 0
        if self.status in DOWNLOADED and self.total is not None:
            return self.total
        return self.current

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "current": self.current, "total": self.total}


@dataclass(frozen=True)
class Verdict:
    kind: Literal["stalled", "timed-out"]
    window_s: float  # the window that ran out
    idle_s: float  # seconds since the last progress
    phase: Literal["bytes", "quiet"]
    layers: tuple[dict[str, Any], ...]  # the layers that were stuck, with their bytes


@dataclass(frozen=True)
class ProgressSnapshot:
    done_bytes: int
    total_bytes: int | None
    layers_done: int
    layers_total: int
    rate_bytes_per_s: float | None


class PullWatchdog:
    """Feed :meth:`observe` every pull event; ask :meth:`verdict` whenever you like (events or timer)."""

    def __init__(self, clock: Clock, *, stall_timeout: float, quiet_timeout: float, max_timeout: float) -> None:
        self.clock = clock
        self.stall_timeout = stall_timeout
        self.quiet_timeout = max(quiet_timeout, stall_timeout)  # the quiet window is never the shorter one
        self.max_timeout = max_timeout
        self.started = clock.monotonic()
        self.last_progress = self.started
        self.layers: dict[str, Layer] = {}
        self._other_statuses: set[str] = set()
        self._samples: deque[tuple[float, int]] = deque(maxlen=256)

    # --- input ---------------------------------------------------------------------------------------------------

    def observe(self, event: Mapping[str, Any]) -> bool:
        """Record one engine event; True when it counts as progress."""
        status = str(event.get("status") or "")
        layer_id = event.get("id")
        moved = False
        if layer_id and status.startswith(LAYER_STATUSES):
            moved = self._observe_layer(str(layer_id), status, event.get("progressDetail") or {})
        elif status and len(self._other_statuses) < MAX_LAYERS:
            key = f"{layer_id}:{status}" if layer_id else status  # "Pulling from x", "Digest: …", "Status: …"
            moved = key not in self._other_statuses
            self._other_statuses.add(key)
        if moved:
            self.last_progress = self.clock.monotonic()
            self._samples.append((self.last_progress, self.done_bytes()))
        return moved

    def _observe_layer(self, layer_id: str, status: str, detail: Mapping[str, Any]) -> bool:
        layer = self.layers.get(layer_id)
        if layer is None:
            if len(self.layers) >= MAX_LAYERS:
                return False
            layer = self.layers[layer_id] = Layer(layer_id, status)
            moved = True
        else:
            moved = layer.status != status
            layer.status = status
        current, total = _int(detail.get("current")), _int(detail.get("total"))
        if status == "Downloading":
            if total is not None and total > 0:
                layer.total = total
            if current is not None and current > layer.current:
                layer.current = current
                moved = True
        elif status == "Extracting" and current is not None and current > layer.extracted:
            layer.extracted = current
            moved = True
        return moved

    # --- state ---------------------------------------------------------------------------------------------------

    def expecting_bytes(self) -> bool:
        """True while bytes are due from the registry (also before any layer is known: the manifest phase)."""
        if not self.layers:
            return True
        return any(layer.expects_bytes for layer in self.layers.values())

    def window(self) -> float:
        return self.stall_timeout if self.expecting_bytes() else self.quiet_timeout

    def seconds_left(self) -> float:
        """Seconds until the nearest deadline (stall or overall cap), never negative."""
        now = self.clock.monotonic()
        return max(0.0, min(self.last_progress + self.window(), self.started + self.max_timeout) - now)

    def verdict(self) -> Verdict | None:
        """``None`` while the pull is healthy; else why it must stop."""
        now = self.clock.monotonic()
        idle = now - self.last_progress
        phase: Literal["bytes", "quiet"] = "bytes" if self.expecting_bytes() else "quiet"
        window = self.stall_timeout if phase == "bytes" else self.quiet_timeout
        if idle >= window:
            return Verdict("stalled", window, idle, phase, self.stuck_layers())
        if now - self.started >= self.max_timeout:
            return Verdict("timed-out", self.max_timeout, idle, phase, self.stuck_layers())
        return None

    def stuck_layers(self) -> tuple[dict[str, Any], ...]:
        """The unfinished layers (those still expecting bytes first), with their byte counters."""
        pending = [layer for layer in self.layers.values() if not layer.complete]
        pending.sort(key=lambda layer: not layer.expects_bytes)
        return tuple(layer.snapshot() for layer in pending)

    def done_bytes(self) -> int:
        return sum(layer.downloaded_bytes for layer in self.layers.values())

    def progress(self) -> ProgressSnapshot:
        totals = [layer.total for layer in self.layers.values() if layer.total is not None]
        done = self.done_bytes()
        return ProgressSnapshot(
            done_bytes=done,
            total_bytes=sum(totals) if totals else None,
            layers_done=sum(1 for layer in self.layers.values() if layer.complete),
            layers_total=len(self.layers),
            rate_bytes_per_s=self._rate(done),
        )

    def _rate(self, done: int) -> float | None:
        now = self.clock.monotonic()
        recent = [(t, b) for t, b in self._samples if now - t <= RATE_WINDOW_S]
        if not recent:
            return None
        t0, b0 = recent[0]
        elapsed = now - t0
        return (done - b0) / elapsed if elapsed > 0.2 else None


def describe_stuck(layers: tuple[dict[str, Any], ...], limit: int = 4) -> str:
    """``layer 3f1a2b… Downloading at 4.8 MiB of 286 MiB, …`` for a stall message."""
    parts = []
    for layer in layers[:limit]:
        total = f" of {format_bytes(layer['total'])}" if layer.get("total") else ""
        parts.append(f"layer {str(layer['id'])[:12]} {layer['status']} at {format_bytes(layer['current'])}{total}")
    if len(layers) > limit:
        parts.append(f"{len(layers) - limit} more")
    return ", ".join(parts) if parts else "no layer had started"


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


__all__ = ["PullWatchdog", "Verdict", "describe_stuck"]
