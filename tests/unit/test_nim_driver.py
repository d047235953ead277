"""The NIM driver is pure planning: a replayed GPU snapshot in, the catalog entry that fits and an exact ContainerSpec
out. The NGC key is required before anything else and only ever travels as a container env value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.errors import InsufficientResources, MissingToken, NoSuitableGpu, UnknownModel
from nemoclaw_runtime.kernel.events import Event, Info
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.drivers.contract import Plan, make_request
from nemoclaw_runtime.runtimes.drivers.nim import NimDriver, container_name
from nemoclaw_runtime.runtimes.server.probes import NimReadyProbe, NotYet, Ready

GPU_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
KEY = "nvapi-unit-" + "k" * 24
SUPER, NANO = "nvidia/nemotron-3-super-120b-a12b", "nvidia/nemotron-3-nano-30b-a3b"


def small_gpu_snapshot(total_mib: int = 12282, name: str = "NVIDIA GeForce RTX 4070") -> dict[str, Any]:
    return {
        "schema": 1,
        "machine": {"arch": "x86_64", "product_name": "Desktop", "memory_total_mib": 65536,
                    "memory_available_mib": 60000, "tegra_device_nodes": False},
        "driver_version": "570.133.20",
        "nvml_error": None,
        "gpus": [{"index": 0, "name": name, "uuid": "GPU-small-0", "memory_total_mib": total_mib,
                  "memory_free_mib": total_mib - 300, "pci_device_id": "0x278610DE", "mig_enabled": False,
                  "compute_capability": "8.9", "mig_devices": []}],
    }


def fixture(name: str) -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads((GPU_FIXTURES / f"{name}.json").read_text()))


SMALL = GpuInventory.from_snapshot(small_gpu_snapshot())
TINY = GpuInventory.from_snapshot(small_gpu_snapshot(4096, "NVIDIA T400 4GB"))


def plan(inventory: GpuInventory, env: dict[str, str] | None = None, **request: Any) -> Plan:
    environ = {"HOME": "/home/u", "NGC_API_KEY": KEY, **(env or {})}
    return NimDriver().plan(make_request("nim", **request), Settings.from_env(environ), inventory)


# --- the VRAM filter on replayed snapshots ---------------------------------------------------------------------


def test_h100_x8_default_plan_is_exact() -> None:
    the_plan = plan(fixture("h100_x8"))
    spec = the_plan.spec
    assert (the_plan.model, the_plan.served_model_id) == (SUPER, "nvidia/nemotron-3-super-120b-a12b")
    assert spec.name == "nemoclaw-nim-nemoclaw" and spec.runtime == "nim"
    assert spec.image == "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b:latest"
    assert spec.command == () and spec.entrypoint is None  # the image starts its own server
    assert [(p.host_ip, p.host_port, p.container_port) for p in spec.ports] == [("127.0.0.1", 8000, 8000)]
    assert (spec.shm_size, spec.restart_policy, str(spec.gpus)) == ("16g", "unless-stopped", "all")
    assert [(m.source, m.target) for m in spec.mounts] == [("/home/u/.cache/nim", "/opt/nim/.cache")]
    assert spec.env_names() == ("NGC_API_KEY", "NIM_NGC_API_KEY")
    assert all(isinstance(value, Secret) and value.reveal() == KEY for _, value in spec.env)
    assert the_plan.ready_timeout_s == 1200 and the_plan.base_url == "http://127.0.0.1:8000/v1"
    assert the_plan.token_variable == "NGC_API_KEY" and the_plan.prefetch is False
    assert "this host 637 GiB" in the_plan.checks[0].detail  # 8 × 81559 MiB: the summed VRAM


def test_spark_uses_the_unified_memory_budget() -> None:
    spark = fixture("dgx_spark")
    assert spark.memory_budget_mib == 121000  # GB10 reports no VRAM of its own
    assert plan(spark).model == SUPER
    big = "nvidia/llama-3.1-nemotron-70b-instruct"
    assert plan(spark, model=big).model == plan(spark, model="llama-3.1-nemotron-70b-instruct").model == big


def test_a_small_gpu_gets_the_first_entry_that_fits() -> None:
    assert SMALL.memory_budget_mib == 12282
    the_plan = plan(SMALL)
    assert the_plan.model == NANO and the_plan.spec.image == "nvcr.io/nim/nvidia/nemotron-3-nano:latest"
    assert the_plan.served_model_id == "nvidia/nemotron-3-nano"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_model_too_big_for_the_gpu_is_refused_naming_the_shortfall(how: str) -> None:
    wanted = "meta/llama-3.1-8b-instruct"
    with pytest.raises(InsufficientResources) as raised:
        if how == "flag":
            plan(SMALL, model=wanted)
        else:
            plan(SMALL, env={"NEMOCLAW_MODEL": wanted})
    error = raised.value
    assert error.exit_code == 3
    assert "16.0 GiB" in error.message and "12.0 GiB" in error.message and wanted in error.message
    assert error.details["min_vram_mib"] == 16384 and error.details["budget_mib"] == 12282
    assert error.remedy


def test_the_flag_wins_over_the_environment() -> None:
    the_plan = plan(fixture("h100_x8"), env={"NEMOCLAW_MODEL": SUPER}, model="meta/llama-3.1-8b-instruct")
    assert the_plan.model == "meta/llama-3.1-8b-instruct"


def test_nothing_fits_a_tiny_gpu() -> None:
    with pytest.raises(NoSuitableGpu) as raised:
        plan(TINY)
    assert raised.value.exit_code == 3 and "No NIM models fit your GPU VRAM" in raised.value.message


def test_unknown_model_is_invalid_input_listing_the_catalog() -> None:
    with pytest.raises(UnknownModel) as raised:
        plan(fixture("h100_x8"), env={"NEMOCLAW_MODEL": "no-such-nim"})
    assert raised.value.exit_code == 2
    assert "NEMOCLAW_MODEL" in raised.value.message and NANO in raised.value.message


def test_no_gpu_is_refused_and_no_budget_chooses_nothing() -> None:
    no_gpu = fixture("no_gpu")
    with pytest.raises(NoSuitableGpu):
        plan(no_gpu)
    with pytest.raises(NoSuitableGpu) as raised:
        plan(no_gpu, gpus="none")  # no GPU requested, but the catalog is still filtered by a budget nobody knows
    assert "unknown" in raised.value.message


def test_the_budget_is_that_of_the_requested_gpus() -> None:
    with pytest.raises(InsufficientResources):  # 81920 MiB on one 81559 MiB H100
        plan(fixture("h100_x8"), gpus="0", model="nvidia/llama-3.1-nemotron-70b-instruct")


# --- the key, the name, the overrides --------------------------------------------------------------------------


def test_no_key_is_a_preflight_refusal_naming_every_variable() -> None:
    settings = Settings.from_env({"HOME": "/home/u"})
    with pytest.raises(MissingToken) as raised:
        NimDriver().plan(make_request("nim"), settings, fixture("h100_x8"))
    assert raised.value.exit_code == 3
    for variable in ("NGC_API_KEY", "NVIDIA_INFERENCE_API_KEY", "NVIDIA_API_KEY"):
        assert variable in raised.value.message


def test_the_key_may_come_from_a_fallback_variable_and_never_shows() -> None:
    settings = Settings.from_env({"HOME": "/home/u", "NVIDIA_API_KEY": KEY})
    the_plan = NimDriver().plan(make_request("nim"), settings, fixture("h100_x8"))
    assert the_plan.token_variable == "NVIDIA_API_KEY"
    shown = json.dumps(the_plan.to_dict()) + repr(the_plan)
    assert KEY not in shown and the_plan.to_dict()["container"]["env"] == {"NGC_API_KEY": "***",
                                                                            "NIM_NGC_API_KEY": "***"}


def test_names_ports_timeouts_and_image_overrides() -> None:
    assert container_name(None) == "nemoclaw-nim-nemoclaw"
    assert container_name("lab") == "nemoclaw-nim-lab" == container_name("nemoclaw-nim-lab")
    the_plan = plan(fixture("h100_x8"), env={"NEMOCLAW_NIM_READY_TIMEOUT": "90", "NEMOCLAW_VLLM_PORT": "8100",
                                             "NEMOCLAW_NIM_IMAGE": "mirror.local/nim/super:1"}, name="lab")
    assert the_plan.spec.name == "nemoclaw-nim-lab" and the_plan.port == 8100 and the_plan.ready_timeout_s == 90
    assert the_plan.spec.image == "mirror.local/nim/super:1" and "image overridden" in the_plan.notes
    flagged = plan(fixture("h100_x8"), image="other/img:2", port=9000, timeout_s=30, gpus="0,1")
    assert (flagged.spec.image, flagged.port, flagged.ready_timeout_s, str(flagged.spec.gpus)) == \
        ("other/img:2", 9000, 30, "0,1")


def test_the_spec_hash_ignores_the_key_value() -> None:
    first = plan(fixture("h100_x8")).spec
    second = plan(fixture("h100_x8"), env={"NGC_API_KEY": "nvapi-other-" + "x" * 20}).spec
    assert first.spec_hash() == second.spec_hash()


def test_xdg_cache_home_moves_the_nim_cache() -> None:
    the_plan = plan(fixture("h100_x8"), env={"XDG_CACHE_HOME": "/srv/cache"})
    assert [m.source for m in the_plan.spec.mounts] == ["/srv/cache/nim"]


# --- readiness and the served id -------------------------------------------------------------------------------


def nim_server(models: list[str], *, ready: bool = True) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health/ready":
            return httpx.Response(200 if ready else 503, json={"object": "health.response"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": m, "object": "model", "max_model_len": 131072} for m in models]})
        return httpx.Response(404)

    return httpx.Client(transport=httpx.MockTransport(handler))


def served_after_ready(models: list[str]) -> tuple[str, list[Event]]:
    the_plan = plan(fixture("h100_x8"))
    probe = NimDriver().readiness_probe(the_plan)
    assert isinstance(probe, NimReadyProbe) and probe.timeout_variable == "NEMOCLAW_NIM_READY_TIMEOUT"
    with nim_server(models) as http:
        outcome = probe.check(http, "http://127.0.0.1:8000")
    assert isinstance(outcome, Ready)
    events: list[Event] = []
    served = NimDriver().after_ready(the_plan, outcome, "http://127.0.0.1:8000", None, events.append, None)
    return served.served_model_id, events


def test_not_ready_until_health_ready_answers_200() -> None:
    probe = NimReadyProbe("nvidia/nemotron-3-super-120b-a12b")
    with nim_server(["nvidia/nemotron-3-super-120b-a12b"], ready=False) as http:
        outcome = probe.check(http, "http://127.0.0.1:8000")
    assert isinstance(outcome, NotYet) and "503" in outcome.reason


def test_a_safe_served_id_is_adopted_and_said() -> None:
    served, events = served_after_ready(["nvidia/super-fp8"])
    assert served == "nvidia/super-fp8"
    assert any(isinstance(e, Info) and "nvidia/super-fp8" in e.message for e in events)


def test_the_catalog_id_wins_when_listed() -> None:
    served, events = served_after_ready(["other/model", "nvidia/nemotron-3-super-120b-a12b"])
    assert served == "nvidia/nemotron-3-super-120b-a12b" and events == []


@pytest.mark.parametrize("unsafe", ["evil model;<script>", "a b", "id$(reboot)", "x\ny", "ünï"])
def test_an_unsafe_served_id_keeps_the_catalog_id_and_is_never_echoed(unsafe: str) -> None:
    served, events = served_after_ready([unsafe])
    assert served == "nvidia/nemotron-3-super-120b-a12b"
    assert unsafe not in repr(events)


# --- through the CLI, with replayed snapshots -------------------------------------------------------------------


def cli_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = run([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_models_nim_json_shows_fit_and_minimum_vram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = tmp_path / "small.json"
    snapshot.write_text(json.dumps(small_gpu_snapshot()))
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(snapshot))

    code, doc, _ = cli_json(["models", "--runtime", "nim", "--all"], capsys)

    assert code == 0
    fits = {e["name"]: (e["fits"], e["min_vram_mib"], e["default"]) for e in doc["nim"]["entries"]}
    assert fits == {
        SUPER: (False, 40960, False),
        NANO: (True, 8192, True),
        "nvidia/llama-3.1-nemotron-70b-instruct": (False, 81920, False),
        "nvidia/llama-3.3-nemotron-super-49b-v1": (False, 24576, False),
        "meta/llama-3.1-8b-instruct": (False, 16384, False),
    }
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPU_FIXTURES / "dgx_spark.json"))
    code, doc, _ = cli_json(["models", "--runtime", "nim"], capsys)
    assert code == 0 and all(e["fits"] for e in doc["nim"]["entries"]) and len(doc["nim"]["entries"]) == 5
    assert doc["nim"]["entries"][0]["name"] == SUPER and doc["nim"]["entries"][0]["default"] is True


def test_up_nim_refuses_a_model_too_big_before_touching_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPU_FIXTURES / "jetson_orin.json"))
    monkeypatch.setenv("NGC_API_KEY", KEY)
    monkeypatch.setenv("NEMOCLAW_MODEL", "nvidia/llama-3.1-nemotron-70b-instruct")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # any engine call would fail differently

    code, doc, err = cli_json(["up", "nim"], capsys)

    assert code == 3 and doc["error"] == "InsufficientResources"
    assert "80.0 GiB" in doc["message"] and "61.4 GiB" in doc["message"]
    assert KEY not in json.dumps(doc) + err


def test_up_nim_dry_run_shows_the_plan_without_the_key(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPU_FIXTURES / "dgx_spark.json"))
    monkeypatch.setenv("NGC_API_KEY", KEY)

    code, doc, err = cli_json(["up", "nim", "--dry-run", "--name", "lab"], capsys)

    assert code == 0
    assert doc["model"] == SUPER and doc["container"]["name"] == "nemoclaw-nim-lab"
    assert doc["container"]["env"] == {"NGC_API_KEY": "***", "NIM_NGC_API_KEY": "***"}
    assert doc["container"]["shm_size"] == "16g" and doc["argv"] == []
    assert KEY not in json.dumps(doc) + err
