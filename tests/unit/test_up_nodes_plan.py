"""`up vllm --nodes` before any engine: the nodes and the interface checked, the split chosen by the group fit,
every node's containers (`--dry-run`), the refusals with their exit codes, and `fit` naming the way beyond one host.
Facts from fixtures/fit, GPUs from fixtures/gpu; no network, no engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.kernel.errors import InvalidInput, PreflightRefused
from nemoclaw_runtime.runtimes.cluster.nodes import choose_interface, parse_nodes
from nemoclaw_runtime.runtimes.fit import DirectoryModelSource, hub
from tests.helpers.docker_env import free_port

ROOT = Path(__file__).resolve().parents[2]
GPUS = ROOT / "fixtures" / "gpu"
FACTS = DirectoryModelSource(ROOT / "fixtures" / "fit")
#: Another engine on this machine (never contacted: the dry run asks no engine), so --nic lo is a valid link; a
#: remote node (TEST-NET-1) with a loopback head is refused.
WORKER = "unix:///run/nemoclaw-test/engine2.sock"
REMOTE = "tcp://192.0.2.10:2375"


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    monkeypatch.setenv("NEMOCLAW_VLLM_PORT", str(free_port()))
    monkeypatch.setenv("NEMOCLAW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "default_model_source", lambda settings, **kw: FACTS)
    monkeypatch.setenv("HF_TOKEN", "hf_unit_test_token")  # the gated 70B: the plan checks a token is there


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str,
        *args: str) -> tuple[int, Any, str]:
    monkeypatch.setenv("NEMOCLAW_GPU_SNAPSHOT", str(GPUS / f"{snapshot}.json"))
    code = run(list(args))
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out), captured.err
    except json.JSONDecodeError:
        return code, captured.out, captured.err


def dry_run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snapshot: str, model: str,
            *extra: str) -> tuple[int, Any, str]:
    return cli(capsys, monkeypatch, snapshot, "up", "vllm", "--model", model, "--nodes", f"local,{WORKER}",
               "--nic", "lo", "--dry-run", "--json", *extra)


# --- the nodes and the interface -----------------------------------------------------------------------------------


def test_nodes_parse_in_order_with_the_head_first() -> None:
    nodes = parse_nodes("local, ssh://me@spark2 ,tcp://10.0.0.3:2375")
    assert [(n.index, n.address, n.role) for n in nodes] == [
        (0, "local", "head"), (1, "ssh://me@spark2", "worker"), (2, "tcp://10.0.0.3:2375", "worker")]
    assert nodes[1].hostname == "spark2" and nodes[0].hostname is None


@pytest.mark.parametrize(("text", "words"), [
    ("local", "two nodes or more"), ("local,,tcp://h:1", "empty"), ("local,local", "given twice"),
    ("local,ftp://h", "scheme"), ("local,tcp://h:99999", "port"), ("local,tcp://h:1\x1b[31m", "control"),
    (",".join(["local"] + [f"tcp://h{i}:2375" for i in range(64)]), "at most 64"),
])
def test_bad_nodes_are_invalid_input_naming_the_problem(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_nodes(text)
    assert words in caught.value.message.lower() or words in caught.value.message
    assert "--nodes" in caught.value.message and caught.value.remedy


def test_the_interface_is_named_or_the_one_candidate() -> None:
    addresses = {"lo": ["127.0.0.1"], "docker0": ["172.17.0.1"], "enp1s0f0np0": ["10.0.0.1"], "wlan0": []}
    up = {"lo": True, "docker0": True, "enp1s0f0np0": True, "wlan0": True}
    chosen = choose_interface(None, addresses, up)
    assert (chosen.name, chosen.address, chosen.detected) == ("enp1s0f0np0", "10.0.0.1", True)
    assert choose_interface("lo", addresses, up).address == "127.0.0.1"
    with pytest.raises(InvalidInput, match="no such interface"):
        choose_interface("eth9", addresses, up)
    with pytest.raises(InvalidInput, match="no IPv4 address"):
        choose_interface("wlan0", addresses, up)
    with pytest.raises(PreflightRefused, match="candidates: eth0, eth1"):
        choose_interface(None, {"eth0": ["10.0.0.1"], "eth1": ["10.1.0.1"]}, {"eth0": True, "eth1": True})


# --- the split and the containers ----------------------------------------------------------------------------------


def test_two_sparks_split_tensor_parallel_across_the_nodes(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, plan, err = dry_run(capsys, monkeypatch, "dgx_spark", "hf:deepseek-ai/DeepSeek-R1-Distill-Llama-70B")
    assert code == 0, err
    assert (plan["tensor_parallel_size"], plan["pipeline_parallel_size"]) == (2, 1)
    assert plan["group_fit"]["fits"] and plan["group_fit"]["nodes"] == 2
    head, worker = plan["nodes"]
    assert [c["name"] for c in head["containers"]] == ["nemoclaw-vllm-ray-0", "nemoclaw-vllm"]
    assert [c["name"] for c in worker["containers"]] == ["nemoclaw-vllm-ray-1"]
    serve = head["containers"][1]
    argv = serve["command"]
    for flag, value in (("--tensor-parallel-size", "2"), ("--pipeline-parallel-size", "1"),
                        ("--distributed-executor-backend", "ray"), ("--host", "127.0.0.1")):
        assert argv[argv.index(flag) + 1] == value
    for container in (*head["containers"], *worker["containers"]):
        assert container["network_mode"] == "host" and container["ipc_mode"] == "host"
        assert container["env"]["NCCL_SOCKET_IFNAME"] == "lo" and container["env"]["MASTER_ADDR"] == "127.0.0.1"
        assert container["ports"] == [] and container["restart_policy"] is None
    assert worker["containers"][0]["command"] == ["ray", "start", "--address=127.0.0.1:6379", "--disable-usage-stats",
                                                  "--block"]
    assert "--include-dashboard=false" in head["containers"][0]["command"]  # its job API would run code
    assert worker["containers"][0]["mounts"][0]["kind"] == "volume"  # a remote node's cache: the volume
    assert head["containers"][0]["mounts"][0]["kind"] == "bind"  # this machine's cache


def test_two_eight_gpu_hosts_split_pipeline_across_them(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, plan, err = dry_run(capsys, monkeypatch, "h100_x8", "hf:deepseek-ai/DeepSeek-R1")
    assert code == 0, err
    assert (plan["tensor_parallel_size"], plan["pipeline_parallel_size"]) == (8, 2)


def test_a_model_the_group_cannot_hold_is_exit_3_with_the_numbers(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, error, err = dry_run(capsys, monkeypatch, "dgx_spark", "hf:moonshotai/Kimi-K2-Instruct")
    assert code == 3, err
    assert error["error"] == "InsufficientResources" and "GiB per GPU" in error["message"]
    assert "2 hosts" in error["message"] and "Traceback" not in err
    code, plan, err = dry_run(capsys, monkeypatch, "dgx_spark", "hf:moonshotai/Kimi-K2-Instruct", "--no-fit-check")
    assert code == 0 and "--no-fit-check" in err


def test_the_human_dry_run_prints_every_nodes_argv(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "dgx_spark", "up", "vllm", "--model",
                         "hf:deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "--nodes", f"local,{WORKER}", "--nic", "lo",
                         "--dry-run")
    assert code == 0, err
    assert "tensor parallel 2 × pipeline parallel 1" in out and f"node 1 (worker): {WORKER}" in out
    assert ("argv:  ray start --head --port=6379 --node-ip-address=127.0.0.1 --include-dashboard=false "
            "--disable-usage-stats --block") in out
    assert "argv:  vllm serve deepseek-ai/DeepSeek-R1-Distill-Llama-70B" in out


@pytest.mark.parametrize(("args", "code", "words"), [
    (["up", "nim", "--nodes", f"local,{WORKER}", "--dry-run"], 2, "vLLM only"),
    (["up", "vllm", "--nic", "lo", "--dry-run"], 2, "--nic applies"),
    (["up", "vllm", "--nodes", f"{REMOTE},local", "--dry-run"], 2, "another machine"),
    (["up", "vllm", "--nodes", f"local,{WORKER}", "--lock", "x.json"], 2, "--lock"),
    (["up", "vllm", "--nodes", "local", "--dry-run"], 2, "two nodes"),
    (["up", "vllm", "--nodes", f"local,{WORKER}", "--nic", "nosuch0", "--dry-run"], 2, "no such interface"),
    (["logs", "nemoclaw-vllm", "--node", "1"], 2, "--node applies"),
    (["up", "vllm", "--nodes", f"local,{REMOTE}", "--nic", "lo", "--dry-run"], 2, "loopback address"),
    (["up", "vllm", "--nodes", f"local,{WORKER}", "--nic", "lo", "--no-prefetch", "--dry-run"], 2, "--no-prefetch"),
    (["up", "vllm", "--nodes", f"local,{WORKER}", "--nic", "lo", "--port", "6379", "--dry-run"], 2, "Ray head"),
    (["up", "vllm", "--nodes", f"{REMOTE},local", "--host", "0.0.0.0", "--nic", "a b", "--dry-run"], 2, "--nic"),
    (["up", "vllm", "--nodes", f"{REMOTE},local", "--host", "127.0.0.2", "--dry-run"], 2, "another machine"),
])
def test_bad_requests_are_one_line_with_the_exit_code(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, args: list[str], code: int,
                                                       words: str) -> None:
    got, out, err = cli(capsys, monkeypatch, "dgx_spark", *args, "--model", "nemotron-3-nano-4b") \
        if args[0] == "up" else cli(capsys, monkeypatch, "dgx_spark", *args)
    assert got == code, (out, err)
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err


# --- fit names the way beyond one host -----------------------------------------------------------------------------


def test_fit_names_the_hosts_and_the_commands_when_one_host_is_not_enough(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, result, _ = cli(capsys, monkeypatch, "dgx_spark", "fit", "vllm", "--model",
                          "hf:deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "--json")
    assert code == 3 and result["decision"] == "does-not-fit"
    beyond = result["beyond"]
    assert beyond["hosts"] == 2
    assert beyond["up"] == ("nemoclaw-runtime up vllm --model deepseek-r1-distill-70b --nodes local,ssh://HOST2 "
                            "--nic IFACE")
    assert beyond["kubernetes"].endswith("--nodes 2 --gpus 1")
    code, text, _ = cli(capsys, monkeypatch, "dgx_spark", "fit", "vllm", "--model",
                        "hf:deepseek-ai/DeepSeek-R1-Distill-Llama-70B")
    assert "beyond this host: it fits 2 hosts like this one" in text and "export kubernetes vllm" in text
    code, result, _ = cli(capsys, monkeypatch, "h100_x8", "fit", "vllm", "--model", "qwen3.6-27b", "--json")
    assert code == 0 and result["beyond"] is None  # it fits: nothing to say


def test_a_remote_head_serving_on_every_interface_is_reached_at_its_own_address(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, plan, err = cli(capsys, monkeypatch, "dgx_spark", "up", "vllm", "--model", "nemotron-3-nano-4b", "--nodes",
                          f"{REMOTE},local", "--host", "0.0.0.0", "--nic", "enp1s0f0np0", "--gpus", "none",
                          "--dry-run", "--json")
    assert code == 0, err
    port = plan["container"]["ports"][0]["host_port"]
    assert plan["base_url"] == f"http://192.0.2.10:{port}/v1" and plan["head_address"] == "192.0.2.10"
    serve = plan["nodes"][0]["containers"][1]
    assert serve["labels"]["io.nemoclaw.runtime.host"] == "192.0.2.10"
    assert plan["nodes"][1]["containers"][0]["mounts"][0]["kind"] == "bind"  # `local` is this machine's cache
    assert "Ray listens on every interface" in err


def test_fit_names_the_way_beyond_for_a_bare_hub_id_too(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, result, _ = cli(capsys, monkeypatch, "dgx_station", "fit", "vllm", "--model",
                          "hf:deepseek-ai/DeepSeek-R1", "--json")
    assert code == 3 and result["decision"] == "does-not-fit" and result["beyond"]["hosts"] == 3


def test_bad_input_is_exit_2_before_the_hosts_gpus_are_judged(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "no_gpu", "up", "vllm", "--model", "nemotron-3-nano-4b", "--nodes",
                         f"local,{REMOTE}", "--nic", "lo", "--dry-run")
    assert code == 2 and "loopback address" in err
    code, out, err = cli(capsys, monkeypatch, "no_gpu", "up", "vllm", "--model", "nemotron-3-nano-4b", "--nodes",
                         f"local,{WORKER}", "--nic", "lo", "--dry-run")
    assert code == 3 and "No usable NVIDIA GPU" in err  # the input is fine: now the host's refusal
