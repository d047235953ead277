"""Log-tail classification: every cause from a realistic log excerpt, recency, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.secret import redact
from nemoclaw_runtime.runtimes.docker.port import ContainerState
from nemoclaw_runtime.runtimes.server.diagnose import TAIL_LINES, Diagnosis, classify, display_line

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"


def _log(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("fixture", "cause", "evidence_part"),
    [
        ("vllm-cuda-oom.txt", "cuda-oom", "CUDA out of memory"),
        ("vllm-gpu-util.txt", "cuda-oom", "less than desired GPU memory utilization"),
        ("vllm-kv-cache.txt", "cuda-oom", "No available memory for the cache blocks"),
        ("ollama-cuda-oom.txt", "cuda-oom", "cudaMalloc failed: out of memory"),
        ("vllm-hf-gated.txt", "hf-gated", "gated repo"),
        ("vllm-no-gpu.txt", "no-gpu", "No CUDA GPUs are available"),
        ("docker-nvidia-container-cli.txt", "no-gpu", "nvidia-container-cli"),
        ("vllm-port-in-use.txt", "port-in-use", "Address already in use"),
        ("vllm-disk-full.txt", "disk-full", "No space left on device"),
        ("vllm-cache-permission.txt", "cache-permission", "Permission denied"),
        ("nim-ngc-auth.txt", "ngc-auth", "Authentication Error"),
        ("nim-no-profile.txt", "nim-no-profile", "Could not match a profile in manifest"),
        ("ollama-runner-crash.txt", "ollama-runner-crash", "runner process has terminated"),
    ],
)
def test_each_fixture_log_is_classified(fixture: str, cause: str, evidence_part: str) -> None:
    diagnosis = classify(_log(fixture)[-TAIL_LINES:])

    assert diagnosis.cause == cause
    assert diagnosis.evidence is not None and evidence_part in diagnosis.evidence
    assert diagnosis.summary and diagnosis.remedy


def test_healthy_log_is_unknown_without_evidence() -> None:
    diagnosis = classify(_log("vllm-healthy.txt"))

    assert diagnosis == Diagnosis("unknown", diagnosis.summary, diagnosis.remedy, None)


def test_empty_tail_is_unknown() -> None:
    assert classify([]).cause == "unknown"


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "cuda-oom"),
        ("huggingface_hub.errors.GatedRepoError: 403 Client Error.", "hf-gated"),
        ("requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://huggingface.co/x/y",
         "hf-gated"),
        ("Access to model meta-llama/Llama-3.1-8B is restricted and you are not in the authorized list.", "hf-gated"),
        ("RuntimeError: Found no NVIDIA driver on your system.", "no-gpu"),
        ("Failed to initialize NVML: Driver Not Loaded", "no-gpu"),
        ("ERROR: [Errno 98] error while attempting to bind on address ('0.0.0.0', 8000): address already in use",
         "port-in-use"),
        ("Error: listen tcp 127.0.0.1:11434: bind: address already in use", "port-in-use"),
        ("OSError: [Errno 28] No space left on device: '/root/.cache/huggingface/hub/tmp'", "disk-full"),
        ("Exception: Authentication Error", "ngc-auth"),
        ("HTTPError: 401 Unauthorized for https://api.ngc.nvidia.com/v2/org/nim/team/meta", "ngc-auth"),
        ('level=ERROR msg="llama runner process has terminated: signal: killed"', "ollama-runner-crash"),
        ("mkdir /opt/nim/.cache/ngc: Permission denied", "cache-permission"),
    ],
)
def test_single_line_causes(line: str, cause: str) -> None:
    assert classify(["INFO starting", line]).cause == cause


def test_ollama_runner_regex_spans_a_line_break() -> None:
    lines = ['msg="llama runner started in 3.1 seconds"', "the runner", "was killed by the OOM killer"]

    assert classify(lines).cause == "ollama-runner-crash"


def test_the_most_recent_failure_wins() -> None:
    lines = [
        "OSError: [Errno 98] Address already in use",  # an earlier attempt
        "INFO restarting",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB",
    ]
    assert classify(lines).cause == "cuda-oom"
    assert classify(list(reversed(lines))).cause == "port-in-use"


def test_oom_remedy_names_the_extra_args_variable() -> None:
    remedy = classify(["CUDA out of memory"]).remedy

    assert "--gpu-memory-utilization" in remedy
    assert "NEMOCLAW_VLLM_EXTRA_ARGS_JSON" in remedy
    assert "smaller model" in remedy


def test_kernel_oom_kill_with_a_silent_log_is_host_oom() -> None:
    state = ContainerState(status="exited", exit_code=137, oom_killed=True)

    assert classify(["INFO Loading weights"], state=state).cause == "host-oom"
    assert classify(["CUDA out of memory"], state=state).cause == "cuda-oom"


def test_tokens_in_logs_never_reach_the_evidence() -> None:
    token = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    lines = [f"huggingface_hub.errors.GatedRepoError: 401 Client Error (token {token}, Bearer {token})"]

    diagnosis = classify(lines)

    assert diagnosis.cause == "hf-gated"
    assert diagnosis.evidence is not None
    assert token not in diagnosis.evidence and "***" in diagnosis.evidence


def test_fixture_token_is_redacted_from_gated_evidence() -> None:
    lines = _log("vllm-hf-gated.txt")
    assert any("hf_AbCdEf" in line for line in lines)  # the fixture really carries one

    assert all("hf_AbCdEf" not in redact(line) for line in lines)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("token=hf_abcdefghijklmnop", "hf_abcdefghijklmnop"),
        ("using key nvapi-AbC123_def-456ghi for NGC", "nvapi-AbC123_def-456ghi"),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc", "eyJhbGciOi.JIUzI1NiJ9.abc"),
        ("NGC_API_KEY=bXlzZWNyZXRrZXk6abc123", "bXlzZWNyZXRrZXk6abc123"),
        ("{'HF_TOKEN': 'plainsecretvalue'}", "plainsecretvalue"),
    ],
)
def test_redact_masks_secrets(line: str, secret: str) -> None:
    redacted = redact(line)

    assert secret not in redacted
    assert "***" in redacted


def test_redact_keeps_ordinary_lines() -> None:
    line = "INFO 05-12 [api_server.py] max_num_batched_tokens=8192, hf_overrides=None, prompt tokens: 5"

    assert redact(line) == line


def test_evidence_is_bounded() -> None:
    diagnosis = classify(["CUDA out of memory " + "x" * 5000])

    assert diagnosis.evidence is not None and len(diagnosis.evidence) <= 300


def test_display_line_keeps_the_latest_progress_state_without_colours() -> None:
    raw = "\x1b[32mLoading shards:  10% 1/10\rLoading shards:  20% 2/10\r\x1b[0m"

    assert display_line(raw) == "Loading shards:  20% 2/10"
    assert display_line("\r  \r") == ""


def test_evidence_shows_the_line_as_a_terminal_would() -> None:
    diagnosis = classify(["\x1b[31mERROR\x1b[0m torch.OutOfMemoryError: CUDA out of memory."])

    assert diagnosis.evidence == "ERROR torch.OutOfMemoryError: CUDA out of memory."
