"""The fit engine's facts through huggingface_hub against the fake hub on 127.0.0.1: config.json lands in the HF
cache, the stored bytes come from the safetensors headers by range requests, and no byte of tensor data is
fetched (the fake counts every byte served past each file's header). No Docker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import MissingToken
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.fit import HubModelSource, ServeOptions, plan_fit
from tests.fake_servers.fake_hf import FakeHub, safetensors_file, sharded_safetensors_repo

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
SHARDED = "acme/fit-sharded"
SINGLE = "acme/fit-single"
GATED = "acme/fit-gated"

CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000,
    "max_position_embeddings": 8192, "torch_dtype": "bfloat16",
}
# Two shards, several stored dtypes: an FP8 checkpoint with F32 scales and a U8-packed 4-bit tensor.
SHARDS: list[dict[str, tuple[str, list[int]]]] = [
    {"model.embed_tokens.weight": ("BF16", [1000, 256]), "model.layers.0.mlp.up_proj.weight": ("F8_E4M3", [512, 256]),
     "model.layers.0.mlp.up_proj.weight_scale": ("F32", [4, 2])},
    {"model.layers.1.mlp.up_proj.weight": ("U8", [512, 128]),
     "model.layers.1.mlp.up_proj.weight_scale": ("F8_E4M3", [512, 16]), "lm_head.weight": ("BF16", [1000, 256]),
     "model.norm.weight": ("F32", [256])},
]
EXPECTED_COUNTS = {"BF16": 512_000, "F8_E4M3": 131_072 + 8_192, "F32": 8 + 256, "U8": 65_536}
EXPECTED_BYTES = 512_000 * 2 + 139_264 + 264 * 4 + 65_536


def settings_for(hub: FakeHub, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(hf_endpoint=hub.url, home_override=tmp_path / "home", hf_home_override=tmp_path / "hf",
                    xdg_cache_home=tmp_path / "cache", **changes)


@pytest.fixture
def hub(fake_hf: FakeHub) -> FakeHub:
    fake_hf.add_repo(SHARDED, sharded_safetensors_repo(SHARDS, CONFIG))
    fake_hf.add_repo(SINGLE, {"config.json": json.dumps(CONFIG).encode(),
                              "model.safetensors": safetensors_file({**SHARDS[0], **SHARDS[1]})})
    fake_hf.add_repo(GATED, sharded_safetensors_repo(SHARDS, CONFIG), gated=True)
    return fake_hf


def safetensors_gets(hub: FakeHub, repo: str) -> list[Any]:
    return [r for r in hub.requests_to(repo, "GET") if r.path.endswith(".safetensors")]


def test_sharded_repo_facts_come_from_headers_without_a_weight_byte(hub: FakeHub, tmp_path: Path) -> None:
    settings = settings_for(hub, tmp_path)
    facts = HubModelSource(settings).facts(SHARDED)

    assert facts.config == CONFIG
    assert facts.weights is not None
    assert facts.weights.source == "safetensors-headers"
    assert dict(facts.weights.parameter_count) == EXPECTED_COUNTS
    assert facts.weights.total_bytes == EXPECTED_BYTES
    assert facts.weights.files == 2
    assert facts.reasons == ()
    assert facts.revision == hub.repos[SHARDED].sha
    # through huggingface_hub: config.json and the index are in the HF cache, under the commit's snapshot
    snapshot = tmp_path / "hf" / "hub" / "models--acme--fit-sharded" / "snapshots" / hub.repos[SHARDED].sha
    assert json.loads((snapshot / "config.json").read_text()) == CONFIG
    assert (snapshot / "model.safetensors.index.json").is_file()
    # headers only: every safetensors GET is a Range request, and not one byte of tensor data was served
    gets = safetensors_gets(hub, SHARDED)
    assert len(gets) == 4 and all(r.range for r in gets)
    assert hub.bytes_beyond_headers(SHARDED) == 0


def test_single_file_repo(hub: FakeHub, tmp_path: Path) -> None:
    facts = HubModelSource(settings_for(hub, tmp_path)).facts(SINGLE)

    assert facts.weights is not None and facts.weights.total_bytes == EXPECTED_BYTES
    assert facts.weights.files == 1
    assert hub.bytes_beyond_headers(SINGLE) == 0


def test_gated_repo_needs_the_token_and_sends_it(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(MissingToken):
        HubModelSource(settings_for(hub, tmp_path)).facts(GATED)

    facts = HubModelSource(settings_for(hub, tmp_path, hf_token=Secret(hub.token))).facts(GATED)
    assert facts.weights is not None and facts.weights.total_bytes == EXPECTED_BYTES
    assert all(r.token_valid for r in safetensors_gets(hub, GATED))
    assert hub.bytes_beyond_headers(GATED) == 0


def test_offline_uses_the_cached_config_and_header_summary(hub: FakeHub, tmp_path: Path) -> None:
    settings = settings_for(hub, tmp_path)
    online = HubModelSource(settings).facts(SHARDED)
    hub.reset()  # forget the requests (and the repo: offline must not need it)

    offline = HubModelSource(settings.replace(environ={"HF_HUB_OFFLINE": "1"})).facts(SHARDED)

    assert hub.requests == []
    assert offline.from_cache
    assert offline.config == CONFIG
    assert offline.weights == online.weights
    assert any("HF cache" in a for a in offline.assumptions)


def test_offline_with_nothing_cached_is_unknown_with_reasons(hub: FakeHub, tmp_path: Path) -> None:
    facts = HubModelSource(settings_for(hub, tmp_path), offline=True).facts(SHARDED)

    assert hub.requests == []
    assert facts.config is None and facts.weights is None
    assert any("config.json unknown" in r and "HF_HUB_OFFLINE" in r for r in facts.reasons)
    assert any("stored weight bytes unknown" in r for r in facts.reasons)


def test_unreadable_headers_fall_back_to_file_sizes(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("acme/fit-broken", {"config.json": json.dumps(CONFIG).encode(),
                                     "model.safetensors": b"\xff" * 8 + b"not a header" * 100})
    facts = HubModelSource(settings_for(hub, tmp_path)).facts("acme/fit-broken")

    assert facts.weights is not None
    assert facts.weights.source == "file-sizes"
    assert facts.weights.total_bytes == 8 + 1200
    assert any("file sizes" in a for a in facts.assumptions)


def test_an_unreachable_hub_uses_the_cache(hub: FakeHub, tmp_path: Path) -> None:
    settings = settings_for(hub, tmp_path)
    HubModelSource(settings).facts(SHARDED)
    dead = settings.replace(hf_endpoint="http://127.0.0.1:9")  # discard port: connection refused

    facts = HubModelSource(dead, timeout_s=2).facts(SHARDED)

    # huggingface_hub itself answers from the cache when the endpoint cannot be reached
    assert facts.config == CONFIG and facts.weights is not None
    assert facts.reasons == ()


def test_hub_facts_drive_a_fit(hub: FakeHub, tmp_path: Path) -> None:
    facts = HubModelSource(settings_for(hub, tmp_path)).facts(SHARDED)
    inventory = GpuInventory.from_snapshot(json.loads((GPU_FIXTURES / "rtx_4090.json").read_text()))

    result = plan_fit(facts, inventory, ServeOptions.from_argv(["--max-model-len", "8192"]))

    assert result.fits and result.gpus == (0,)
    assert result.weights_bytes == EXPECTED_BYTES
    assert result.kv_bytes_per_token == 4 * 2 * 2 * 32 * 2  # layers × K,V × kv heads × head_dim × bf16
