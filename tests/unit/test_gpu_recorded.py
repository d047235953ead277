"""A whole `gpus --json` document recorded by `nemoclaw-runtime gpus --json` on a real H100 (NVML driver 580) replays
to the same profile, totals and summary — the path a user's bug report takes."""

from __future__ import annotations

import json
from pathlib import Path

from nemoclaw_runtime.gpu import detect_gpus, has_usable_gpu
from nemoclaw_runtime.kernel.settings import Settings

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "gpu-recorded" / "h100_gpus_json.json"


def test_a_recorded_gpus_json_replays_identically() -> None:
    recorded = json.loads(RECORDED.read_text())
    inventory = detect_gpus(Settings.from_env({"NEMOCLAW_GPU_SNAPSHOT": str(RECORDED)}))
    assert inventory.profile == recorded["profile"] == "linux-nvidia"
    assert list(inventory.summary_lines) == recorded["summary"] == [
        "NVIDIA GPU detected (NVIDIA H100 80GB HBM3, 81559 MB)"]
    assert inventory.total_vram_mib == recorded["total_vram_mib"] == 81559
    assert inventory.gpus[0].compute_capability == (9, 0)
    assert has_usable_gpu(inventory) and not inventory.unified_memory
    assert inventory.snapshot() == recorded["snapshot"]
