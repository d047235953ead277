"""The fit wired into `plan` and `up` (vLLM): the dry run shows it, `up` refuses before any download when the model
cannot fit, `--max-model-len auto` serves at the largest context that fits, `--no-fit-check` only warns, unknown
facts warn and go on, the compute capability is checked from the inventory alone, and a second managed model is
placed on GPUs the first leaves room on. Facts come from fixtures/fit (DirectoryModelSource); engine: FakeDocker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nemoclaw_runtime as nr
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, NoSuitableGpu
from nemoclaw_runtime.kernel.events import Event, Info, Warning
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes import pipeline
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager, ManagedContainerView
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.docker.spec import LABEL_GPU_MEMORY_UTILIZATION, LABEL_GPUS
from nemoclaw_runtime.runtimes.fit import DirectoryModelSource, ModelFacts, StaticModelSource
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

ROOT = Path(__file__).resolve().parents[2]
FACTS = DirectoryModelSource(ROOT / "fixtures" / "fit")
IMAGE = "127.0.0.1:5000/test/vllm:1"
DIGEST = "sha256:" + "cd" * 32
SLUGS = ["qwen3.6-27b", "deepseek-r1-distill-70b", "nemotron-3-nano-4b", "deepseek-v4-flash", "qwen3.6-35b-a3b-nvfp4"]


def inventory(name: str) -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads((ROOT / "fixtures" / "gpu" / f"{name}.json").read_text()))


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                              "NEMOCLAW_VLLM_IMAGE": IMAGE, "HF_TOKEN": "hf_test_token_123", **env})


class NoNetwork:
    """A model source that must not be asked (the compute-capability check needs no facts)."""

    def facts(self, model_id: str, *, revision: str | None = None) -> ModelFacts:
        raise AssertionError(f"facts of {model_id} were asked for")


class Store:
    """An image store that records every pull."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker, self.pulls = docker, []

    def image_present(self, ref: str) -> bool:
        return self.docker.image_inspect(ref) is not None

    def ensure_image(self, ref: str, *, events: Any, cancel: CancelToken) -> PulledImage:
        self.pulls.append(ref)
        self.docker.add_image(ref, digest=DIGEST)
        return PulledImage(ref, DIGEST, "linux/amd64", pulled=True)


SERVED = ["Qwen/Qwen3.6-27B-FP8", "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8", "nvidia/Qwen3.6-35B-A3B-NVFP4",
          "Qwen/Qwen3-8B"]


def serving(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": i, "max_model_len": 4096} for i in SERVED]})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[FakeDocker, Store, pipeline.Services]]:
    docker = FakeDocker()
    store = Store(docker)
    clock = SystemClock()
    settings = settings_for(tmp_path)
    with httpx.Client(transport=httpx.MockTransport(serving)) as http:
        yield docker, store, pipeline.Services(settings, docker, store, DockerContainerManager(docker, settings, clock),
                                               http, clock, owned=False)


def up(svc: pipeline.Services, inv: GpuInventory, events: list[Event] | None = None, *, source: Any = FACTS,
       **request: Any) -> Any:
    request.setdefault("port", free_port())
    return pipeline.up(pipeline.make_request("vllm", prefetch=False, validate=False, **request), settings=svc.settings,
                       inventory=inv, services=svc, events=(events if events is not None else []).append,
                       model_source=source)


def plan(tmp_path: Path, inv: str, *, source: Any = FACTS, events: list[Event] | None = None,
         env: dict[str, str] | None = None, **request: Any) -> Any:
    sink = (events if events is not None else []).append
    return nr.plan("vllm", settings=settings_for(tmp_path, **(env or {})), inventory=inventory(inv),
                   model_source=source, events=sink, **request)


# --- the dry run --------------------------------------------------------------------------------------------------


def test_dry_run_shows_the_fit_and_keeps_the_registry_argv(tmp_path: Path) -> None:
    the_plan = plan(tmp_path, "h100_x8", model="qwen3.6-27b")
    document = the_plan.to_dict()
    fit = document["fit"]
    assert {"model", "weights_bytes", "kv_bytes_per_token", "overhead_bytes", "budget_bytes", "max_model_len",
            "max_model_len_fit", "fits", "tensor_parallel_size", "gpus", "reasons", "assumptions"} <= set(fit)
    assert fit["decision"] == "fits" and fit["fits"] and fit["gpus"] == [0] and fit["tensor_parallel_size"] == 1
    registry_argv = nr.load_registry().vllm_model("qwen3.6-27b").serve_argv()
    assert tuple(document["argv"]) == registry_argv  # fits as asked: the exact registry argv
    assert document["container"]["gpus"] == "0"  # placed on the GPU the fit chose, the other seven stay free
    assert document["container"]["labels"][LABEL_GPUS] == "0"
    assert document["container"]["labels"][LABEL_GPU_MEMORY_UTILIZATION] == "0.7"
    assert any(c["check"] == "fit" and c["ok"] for c in document["checks"])


def test_dry_run_on_a_one_gpu_host_keeps_all_gpus(tmp_path: Path) -> None:
    document = plan(tmp_path, "dgx_spark").to_dict()
    assert document["model"] == "qwen3.6-35b-a3b-nvfp4" and document["fit"]["fits"]
    assert document["container"]["gpus"] == "all" and document["container"]["labels"][LABEL_GPUS] == "0"


def test_tensor_parallel_adds_the_flag_and_pins_the_gpus(tmp_path: Path) -> None:
    events: list[Event] = []
    the_plan = plan(tmp_path, "h100_x8", model="deepseek-r1-distill-70b", events=events)
    argv = the_plan.spec.command
    assert the_plan.fit.decision == "tensor-parallel"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert str(the_plan.spec.gpus) == "0,1,2,3"
    assert any(isinstance(e, Info) and "--tensor-parallel-size 4" in e.message for e in events)


def test_unknown_facts_warn_and_go_on(tmp_path: Path) -> None:
    events: list[Event] = []
    the_plan = plan(tmp_path, "h100_x8", model="qwen3.6-27b", events=events, source=StaticModelSource())
    assert the_plan.fit.decision == "unknown" and not the_plan.fit.fits
    warnings = [e.message for e in events if isinstance(e, Warning)]
    assert warnings and "Cannot tell whether Qwen/Qwen3.6-27B-FP8 fits" in warnings[0] and "going on" in warnings[0]
    assert str(the_plan.spec.gpus) == "all"  # no placement to apply: the request as it was


def test_gpus_none_skips_the_fit(tmp_path: Path) -> None:
    the_plan = plan(tmp_path, "no_gpu", model="qwen3.6-27b", gpus="none", source=NoNetwork())
    assert the_plan.fit is None and any("fit not judged" in n for n in the_plan.notes)


# --- refusals -----------------------------------------------------------------------------------------------------


def test_does_not_fit_is_exit_3_with_the_numbers_and_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(InsufficientResources) as caught:
        plan(tmp_path, "rtx_4090", model="qwen3.6-27b")
    error = caught.value
    assert error.exit_code == 3
    assert "47.2 GiB per GPU" in error.message and "16.8 GiB" in error.message and "RTX 4090" in error.message
    assert "--no-fit-check" in (error.remedy or "") and error.details["decision"] == "does-not-fit"


@pytest.mark.parametrize("inv", ["rtx_4090", "h100_x8", "dgx_station", "mixed"])
def test_compute_capability_refusal_needs_no_network(tmp_path: Path, inv: str) -> None:
    with pytest.raises(NoSuitableGpu) as caught:
        plan(tmp_path, inv, model="qwen3.6-35b-a3b-nvfp4", source=NoNetwork())
    error = caught.value
    assert error.exit_code == 3 and error.cause == "compute-capability"
    assert "needs compute capability 12.1 or newer" in error.message
    if inv == "rtx_4090":
        assert "GPU 0 (NVIDIA GeForce RTX 4090) has compute capability 8.9" in error.message


def test_a_gpu_below_the_minimum_is_left_out_on_a_mixed_host(tmp_path: Path) -> None:
    the_plan = plan(tmp_path, "mixed", model="qwen3.6-27b")
    check = next(c for c in the_plan.checks if c.name == "compute-capability")
    assert check.ok and "GPU 1 (NVIDIA A100 40GB)" in check.detail
    assert 1 not in the_plan.fit.gpus and str(the_plan.spec.gpus) in ("0", "2")
    with pytest.raises(NoSuitableGpu):  # named explicitly, it is refused
        plan(tmp_path, "mixed", model="qwen3.6-27b", gpus="1")


def test_no_fit_check_warns_and_keeps_the_plan(tmp_path: Path) -> None:
    events: list[Event] = []
    the_plan = plan(tmp_path, "rtx_4090", model="qwen3.6-27b", fit_check=False, events=events)
    assert the_plan.fit.decision == "does-not-fit"
    assert any(isinstance(e, Warning) and e.message.startswith("--no-fit-check: starting Qwen/Qwen3.6-27B-FP8")
               for e in events)
    assert not next(c for c in the_plan.checks if c.name == "fit").ok
    events.clear()
    plan(tmp_path, "rtx_4090", model="qwen3.6-35b-a3b-nvfp4", fit_check=False, events=events, source=FACTS)
    assert any(isinstance(e, Warning) and "compute capability 12.1" in e.message for e in events)


def test_up_refuses_before_anything_is_pulled_or_created(engine: Any) -> None:
    docker, store, svc = engine
    with pytest.raises(InsufficientResources):
        up(svc, inventory("rtx_4090"), model="qwen3.6-27b")
    assert store.pulls == [] and docker.write_calls == []


# --- the context --------------------------------------------------------------------------------------------------


def _context(argv: tuple[str, ...]) -> int:
    return int(argv[argv.index("--max-model-len") + 1])


def test_auto_serves_the_largest_context_that_fits(tmp_path: Path) -> None:
    low = {"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": '["--gpu-memory-utilization", "0.45"]'}
    with pytest.raises(InsufficientResources) as caught:  # asked 262144: only a shorter context fits
        plan(tmp_path, "h100_x8", model="qwen3.6-27b", env=low)
    assert "--max-model-len auto" in (caught.value.remedy or "")
    events: list[Event] = []
    the_plan = plan(tmp_path, "h100_x8", model="qwen3.6-27b", env=low, max_model_len="auto", events=events)
    fitted = the_plan.fit.max_model_len_fit
    assert the_plan.fit.decision == "reduce-context" and 4096 <= fitted < 262144 and fitted % 256 == 0
    assert _context(the_plan.spec.command) == fitted
    assert the_plan.spec.command.count("--max-model-len") == 1
    assert any(isinstance(e, Info) and f"--max-model-len auto: {fitted} tokens" in e.message for e in events)
    by_setting = plan(tmp_path, "h100_x8", model="qwen3.6-27b", env={**low, "NEMOCLAW_VLLM_MAX_MODEL_LEN": "auto"})
    assert _context(by_setting.spec.command) == fitted


def test_an_explicit_context_replaces_the_registrys(tmp_path: Path) -> None:
    the_plan = plan(tmp_path, "rtx_4090", model="nemotron-3-nano-4b", max_model_len="32K")
    assert _context(the_plan.spec.command) == 32768 and the_plan.spec.command.count("--max-model-len") == 1
    decimal = plan(tmp_path, "rtx_4090", model="nemotron-3-nano-4b", max_model_len="32k")  # vLLM: k = 1000
    assert _context(decimal.spec.command) == 32000
    with pytest.raises(InvalidInput):
        plan(tmp_path, "rtx_4090", model="nemotron-3-nano-4b", max_model_len="lots")
    with pytest.raises(InvalidInput):
        nr.plan("nim", settings=settings_for(tmp_path), inventory=inventory("h100_x8"), max_model_len=4096)


def test_any_hugging_face_model_gets_its_context_from_the_fit(tmp_path: Path) -> None:
    the_plan = plan(tmp_path, "rtx_4090", model="hf:Qwen/Qwen3-8B")
    argv = the_plan.spec.command
    assert argv[:5] == ("vllm", "serve", "Qwen/Qwen3-8B", "--port", "8000")
    assert _context(argv) == the_plan.fit.max_model_len_fit < 40960  # the model allows 40960; 35072 fit
    assert "--tool-call-parser" not in argv and any("no tool-call parser" in n for n in the_plan.notes)
    assert the_plan.model == "hf:Qwen/Qwen3-8B" and the_plan.served_model_id == "Qwen/Qwen3-8B"
    assert not the_plan.gated
    roomy = plan(tmp_path, "h100_x8", model="Qwen/Qwen3-8B")
    assert _context(roomy.spec.command) == 40960 and roomy.fit.fits


# --- the five registry models on the replayed hosts ---------------------------------------------------------------

EXPECTED = {  # (decision, fits) per host, registry flags as they are
    "dgx_spark": ["fits", "does-not-fit", "unknown", "does-not-fit", "fits"],
    "dgx_station": ["fits", "fits", "unknown", "fits", "refused"],
    "h100_x8": ["fits", "tensor-parallel", "unknown", "refused", "refused"],
    "rtx_4090": ["does-not-fit", "does-not-fit", "unknown", "refused", "refused"],
    "mixed": ["fits", "does-not-fit", "unknown", "refused", "refused"],
}


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_the_five_registry_models_on_each_replayed_host(tmp_path: Path, host: str) -> None:
    settings = settings_for(tmp_path)
    got = [nr.fit(slug, settings=settings, inventory=inventory(host), model_source=FACTS) for slug in SLUGS]
    assert [r.decision for r in got] == EXPECTED[host]
    for result in got:
        assert result.fits == (result.decision in ("fits", "tensor-parallel"))
        assert (nr.refusal(result) is None) == (result.fits or result.decision == "unknown")


# --- several models on one host -----------------------------------------------------------------------------------


def _views(docker: FakeDocker) -> dict[str, ManagedContainerView]:
    return {c.name: ManagedContainerView.from_info(c.info()) for c in docker.containers.values()}


def test_two_managed_models_are_placed_on_different_gpus(engine: Any) -> None:
    docker, store, svc = engine
    h100 = inventory("h100_x8")
    up(svc, h100, model="qwen3.6-27b", name="first")
    events: list[Event] = []
    up(svc, h100, model="nemotron-3-nano-4b", name="second", events=events)  # facts unknown: placed all the same
    views = _views(docker)
    assert views["first"].gpus == (0,) and views["second"].gpus == (1,)
    assert views["first"].gpu_memory_utilization == 0.7
    assert str(next(c for c in docker.containers.values() if c.name == "second").spec.gpus) == "1"
    assert any(isinstance(e, Info) and "GPU 0 is used by first (0.7)" in e.message for e in events)
    up(svc, h100, model="qwen3.6-27b", name="third")
    assert _views(docker)["third"].gpus == (2,)


def test_the_same_name_again_is_reused_on_its_own_gpu(engine: Any) -> None:
    docker, store, svc = engine
    h100 = inventory("h100_x8")
    first = up(svc, h100, model="qwen3.6-27b", name="again", port=free_port())
    port = int(first.base_url.rsplit(":", 1)[1].split("/")[0])
    second = up(svc, h100, model="qwen3.6-27b", name="again", port=port)
    assert second.reused and second.container_id == first.container_id and len(store.pulls) == 1


def test_a_gpu_is_shared_only_while_the_utilisations_sum_to_095(engine: Any) -> None:
    docker, store, svc = engine
    spark = inventory("dgx_spark")  # one GPU; the NVFP4 model asks for 0.4 of it
    up(svc, spark, model="qwen3.6-35b-a3b-nvfp4", name="one")
    up(svc, spark, model="qwen3.6-35b-a3b-nvfp4", name="two")  # 0.4 + 0.4 <= 0.95: shared
    assert {v.gpus for v in _views(docker).values()} == {(0,)}
    pulls = list(store.pulls)
    with pytest.raises(InsufficientResources) as caught:  # 0.4 + 0.4 + 0.4 > 0.95
        up(svc, spark, model="qwen3.6-35b-a3b-nvfp4", name="three")
    assert "GPU 0 is used by one (0.4), two (0.4)" in caught.value.message and caught.value.exit_code == 3
    assert store.pulls == pulls and "three" not in _views(docker)


def test_a_named_gpu_another_server_fills_is_refused(engine: Any) -> None:
    docker, store, svc = engine
    h100 = inventory("h100_x8")
    up(svc, h100, model="qwen3.6-27b", name="first")
    with pytest.raises(InsufficientResources, match="GPU 0 is used by first"):
        up(svc, h100, model="qwen3.6-27b", name="second", gpus="0")
    events: list[Event] = []
    up(svc, h100, model="qwen3.6-27b", name="second", gpus="0", fit_check=False, events=events)
    assert any(isinstance(e, Warning) and e.message.startswith("--no-fit-check") for e in events)


def test_ps_shows_each_containers_gpus(engine: Any, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from nemoclaw_runtime.cli.main import run
    from nemoclaw_runtime.runtimes import wiring

    docker, store, svc = engine
    h100 = inventory("h100_x8")
    up(svc, h100, model="qwen3.6-27b", name="first")
    up(svc, h100, model="qwen3.6-27b", name="second")
    monkeypatch.setattr(wiring, "open_docker", lambda settings: docker)
    assert run(["ps", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["first"]["gpus"] == [0] and rows["second"]["gpus"] == [1]
    assert rows["second"]["gpu_memory_utilization"] == 0.7
    assert run(["ps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "GPUS" in lines[0] and any(line.startswith("second") and " 1 @0.7 " in line for line in lines)


@pytest.mark.parametrize(("status", "share"), [("running", 0.7), ("restarting", None), ("created", None)])
def test_only_a_running_own_container_gives_its_memory_back(engine: Any, status: str, share: float | None) -> None:
    """A restarting or created container of the same name holds no GPU memory: adding its share back to the
    free memory would be a false "fits"."""
    docker, store, svc = engine
    h100 = inventory("h100_x8")
    first = up(svc, h100, model="qwen3.6-27b", name="again", port=free_port())
    docker.set_state(first.container_id, status)
    placement = pipeline.gpu_placement(svc.containers, "again", h100)
    assert placement.own and placement.own_utilization == share


def test_auto_context_prefers_the_full_context_on_other_gpus(tmp_path: Path) -> None:
    """With --max-model-len auto, a shorter context on the container's own (smaller) GPU is not taken while an
    unused GPU holds the full context."""
    from nemoclaw_runtime.registry import load_registry
    from nemoclaw_runtime.runtimes.drivers.contract import GpuPlacement
    from nemoclaw_runtime.runtimes.drivers.vllm_fit import _Targets, judge
    from nemoclaw_runtime.runtimes.fit import ServeOptions

    data = json.loads((ROOT / "fixtures" / "gpu" / "h100_x8.json").read_text())
    data["gpus"][0].update(memory_total_mib=50000, memory_free_mib=49000)  # the own GPU: a smaller budget
    small_first = GpuInventory.from_snapshot(data)
    model = next(m for m in load_registry().vllm_models if m.slug == "qwen3.6-27b")
    options = ServeOptions.from_argv([*model.serve_argv(()), "--max-model-len", "auto"])
    request = pipeline.make_request("vllm", model="qwen3.6-27b", max_model_len="auto")
    result = judge(model, request, small_first, GpuPlacement(own=(0,)), _Targets((0, 1), ((0,), (1,)), False),
                   options, True, FACTS, [].append)
    assert result.fits and result.gpus == (1,) and result.max_model_len_fit >= 262144
    only_own = judge(model, request, small_first, GpuPlacement(own=(0,)), _Targets((0,), ((0,),), False),
                     options, True, FACTS, [].append)  # --gpus 0: the shorter context there
    assert only_own.decision == "reduce-context" and only_own.gpus == (0,) and 0 < only_own.max_model_len_fit


@pytest.mark.parametrize("extra", ['["--max-num-seqs", "1.0e400"]', '["--max-num-seqs", "\\u0663"]',
                                   '["--gpu-memory-utilization", "\\u0660.\\u0665"]', '["--kv-cache-dtype", "fp9"]'])
def test_a_bad_number_in_the_extra_args_is_exit_2_naming_the_flag(tmp_path: Path, extra: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan(tmp_path, "h100_x8", model="qwen3.6-27b", env={"NEMOCLAW_VLLM_EXTRA_ARGS_JSON": extra})
    assert caught.value.exit_code == 2 and json.loads(extra)[0] in caught.value.message
