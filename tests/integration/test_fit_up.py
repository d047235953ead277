"""`up` of a model that cannot fit this host exits 3 before anything is pulled or downloaded, through the fake
Hugging Face hub on 127.0.0.1: the fit reads config.json and the safetensors header (range requests only), finds
80 GB of weights for a 24 GB card, and refuses. Once with the in-memory engine, once end to end through the CLI and
the real engine (marker docker)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.clock import SystemClock
from nemoclaw_runtime.kernel.errors import InsufficientResources
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from tests.fake_servers.fake_hf import FakeHub
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port, unique_name

GPUS = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
TOO_BIG = "acme/fit-too-big"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
          "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
          "vocab_size": 128256, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}


def header_only_safetensors(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A safetensors file whose header declares ``tensors`` but which stops right after the header: the fit only
    ever reads headers, so the declared 80 GB need not exist (a download attempt would find a short file)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = 2
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


@pytest.fixture
def hub(fake_hf: FakeHub) -> FakeHub:
    fake_hf.add_repo(TOO_BIG, {
        "config.json": json.dumps(CONFIG).encode(),
        "model.safetensors": header_only_safetensors({"model.layers.weight": ("BF16", [40_000, 1_000_000])}),
    })
    return fake_hf


class NoPulls:
    """The image store of a refused `up`: any pull is a failure of the test."""

    def image_present(self, ref: str) -> bool:
        return False

    def ensure_image(self, ref: str, *, events: Any, cancel: Any) -> PulledImage:
        raise AssertionError(f"{ref} was pulled")


def weight_gets(hub: FakeHub) -> list[str | None]:
    return [r.range for r in hub.requests_to(TOO_BIG, "GET") if r.path.endswith(".safetensors")]


def test_up_refuses_before_any_pull_or_download(hub: FakeHub, tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path), "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
                                  "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                                  "NEMOCLAW_VLLM_IMAGE": "127.0.0.1:5000/test/vllm:1"})
    engine = FakeDocker()
    inventory = GpuInventory.from_snapshot(json.loads((GPUS / "rtx_4090.json").read_text()))
    clock = SystemClock()
    with httpx.Client() as http:
        services = pipeline.Services(settings, engine, NoPulls(), DockerContainerManager(engine, settings, clock),
                                     http, clock, owned=False)
        request = pipeline.make_request("vllm", model=f"hf:{TOO_BIG}", port=free_port(), validate=False)
        with pytest.raises(InsufficientResources) as caught:
            pipeline.up(request, settings=settings, inventory=inventory, services=services)
    error = caught.value
    assert error.exit_code == 3 and "does not fit this host" in error.message and "RTX 4090" in error.message
    assert error.details["weights_bytes"] == 80_000_000_000
    assert engine.write_calls == []  # nothing pulled, nothing created
    assert weight_gets(hub) and all(weight_gets(hub))  # every weights GET was a range request for the header
    assert hub.bytes_beyond_headers(TOO_BIG) == 0
    assert not any((tmp_path / "hf" / "hub").rglob("*.safetensors"))


@pytest.mark.docker
def test_cli_up_exits_3_with_nothing_pulled_or_started(hub: FakeHub, tmp_path: Path,
                                                       docker_client: docker.DockerClient,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("nrt-fit")
    image = f"127.0.0.1:{free_port()}/nemoclaw-test/never-pulled:1"  # no registry there: a pull would fail, exit 4
    for key, value in {"NEMOCLAW_GPU_SNAPSHOT": str(GPUS / "rtx_4090.json"), "HF_ENDPOINT": hub.url,
                       "HF_HOME": str(tmp_path / "hf"), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                       "NEMOCLAW_VLLM_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    code = run(["up", "vllm", "--model", f"hf:{TOO_BIG}", "--image", image, "--name", name, "--json"])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    document = json.loads(captured.out)
    assert document["error"] == "InsufficientResources" and document["details"]["fits"] is False
    assert "--no-fit-check" in document["remedy"]
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image)
    assert hub.bytes_beyond_headers(TOO_BIG) == 0
    assert not any((tmp_path / "hf" / "hub").rglob("*.safetensors"))
