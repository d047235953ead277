"""The hub source's bounds: an overall deadline per facts() call for the safetensors header reads, and one
reachability probe that parallel listing threads wait for."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.fit import hub
from nemoclaw_runtime.runtimes.fit.hub import HubModelSource
from tests.fake_servers.fake_hf import FakeHub, fake_hf, fake_hf_server, safetensors_file  # noqa: F401

CONFIG = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64,
          "torch_dtype": "bfloat16", "max_position_embeddings": 4096}


def test_a_trickling_mirror_makes_the_weights_unknown_within_the_deadline(fake_hf: FakeHub,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    tensors = {f"model.layers.{i}.weight": ("BF16", [4, 4]) for i in range(400)}  # a header of ~30 KB
    fake_hf.add_repo("acme/slow", {"config.json": json.dumps(CONFIG).encode(),
                                   "model.safetensors": safetensors_file(tensors)})
    fake_hf.slow_downloads(0.05, chunk_size=256)  # ~5 KB/s: minutes for the header, each read well in time
    settings = Settings(hf_endpoint=fake_hf.url, hf_home_override=tmp_path / "hf")
    source = HubModelSource(settings, use_facts_cache=False, deadline_s=1.0)
    started = time.monotonic()
    facts = source.facts("acme/slow")
    assert time.monotonic() - started < 10
    assert facts.weights is None
    assert any("not read within 1 s" in reason for reason in facts.reasons), facts.reasons


def test_parallel_callers_wait_for_the_one_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def slow_refusal(address: Any, timeout: float | None = None) -> socket.socket:
        calls.append(address)
        time.sleep(0.3)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(hub.socket, "create_connection", slow_refusal)
    source = HubModelSource(Settings.from_env({"HF_ENDPOINT": "http://127.0.0.1:9", "HOME": str(tmp_path)}))
    answers: list[str | None] = []
    threads = [threading.Thread(target=lambda: answers.append(source._hub_unreachable())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1 and len(answers) == 6
    assert all(answer and "unreachable" in answer for answer in answers), answers
