"""Turn a runtime's log tail into one actionable cause: what went wrong, and what to do about it.

``classify(lines)`` scans the last lines a vLLM / NIM / Ollama container printed and names the most recent
recognised failure (``cuda-oom``, ``hf-gated``, ``no-gpu``, ...) with a one-line summary and a specific remedy.
The most recent failure wins: a traceback's last line is the error that killed the process, and a restart-looping
container's log holds every earlier attempt too. ``nemoclaw_runtime.kernel.secret.redact`` masks tokens before any line
leaves this module as evidence (vLLM and huggingface_hub both echo URLs and headers in their tracebacks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.secret import redact
from nemoclaw_runtime.kernel.text import strip_escapes
from nemoclaw_runtime.runtimes.docker.port import ContainerState

__all__ = ["Diagnosis", "RUNNER_CRASH_RE", "TAIL_LINES", "classify", "display_line", "redact_lines"]

#: How many lines callers should hand to :func:`classify` (the same tail the error shows).
TAIL_LINES = 80
_MAX_EVIDENCE_CHARS = 300


#: Ollama's runner dying (NemoClaw's regex); the Ollama validation reads it too.
RUNNER_CRASH_RE = re.compile(r"\brunner\b[\s\S]{0,80}\b(?:stopped|terminated|crashed|exited|died|killed)\b",
                             re.IGNORECASE)


@dataclass(frozen=True)
class Diagnosis:
    """A classified failure. ``evidence`` is the (redacted) log line that decided it, ``None`` for ``unknown``."""

    cause: str
    summary: str
    remedy: str
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "summary": self.summary, "remedy": self.remedy, "evidence": self.evidence}


@dataclass(frozen=True)
class _Rule:
    cause: str
    pattern: re.Pattern[str]
    summary: str
    remedy: str


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


_OOM_REMEDY = (
    "lower the GPU memory vLLM claims, e.g. NEMOCLAW_VLLM_EXTRA_ARGS_JSON='[\"--gpu-memory-utilization\",\"0.5\"]' "
    "(and/or a smaller --max-model-len), stop other processes using the GPU (see nvidia-smi), or pick a smaller model"
)

# Order matters only between rules that match the same log line: the more specific rule comes first.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        "ray-unreachable",
        _rx(r"Unable to connect to GCS at", r"Could not connect to Ray cluster", r"Failed to connect to GCS",
            r"Could not find any running Ray instance"),
        "a node could not reach the Ray head",
        "check that every node reaches the head's address and Ray port (NEMOCLAW_RAY_PORT, 6379 by default) over "
        "the interface named by --nic, and that no firewall is in the way",
    ),
    _Rule(
        "nccl",
        _rx(r"NCCL error", r"ncclSystemError", r"ncclInternalError", r"NCCL WARN"),
        "NCCL failed between the nodes",
        "check the link between the nodes (--nic names the interface NCCL uses; `ip addr` on each node), that the "
        "nodes run the same driver; the failing node's log is in the error above",
    ),
    _Rule(
        "not-enough-gpus",
        _rx(r"number of required GPUs exceeds the total number of available GPUs"),
        "the Ray cluster holds fewer GPUs than tensor × pipeline parallelism needs",
        "check that every node joined (`nemoclaw-runtime logs NAME --node N`) and gives its GPUs to its container",
    ),
    _Rule(
        "nim-no-profile",
        _rx(r"Could not match a profile in manifest", r"Could not find a profile that is currently runnable",
            r"no compatible profile", r"No (?:matching|valid) profiles?"),
        "the NIM found no engine profile for this GPU",
        "this NIM does not support your GPU (model, count or VRAM): pick a NIM listed for your GPU, or run "
        "`list-model-profiles` in the image to see what it supports; NIM_MODEL_PROFILE selects one explicitly",
    ),
    _Rule(
        "cuda-oom",
        _rx(
            r"CUDA out of memory",
            r"OutOfMemoryError",
            r"less than desired GPU memory utilization",
            r"No available memory for the cache blocks",
            r"CUDA error: out of memory",
            r"cudaMalloc failed: out of memory",
            r"out of memory.{0,40}\bCUDA\b",
            r"insufficient (?:GPU|VRAM|video) memory",
        ),
        "the GPU ran out of memory while loading the model",
        _OOM_REMEDY,
    ),
    _Rule(
        "hf-gated",
        _rx(
            r"GatedRepoError",
            r"Access to model \S+ is restricted",
            r"You must have access to it",
            r"You must have access",
            r"Cannot access gated repo",
            r"access a gated repo",
            r"(?:401|403) Client Error.{0,120}huggingface\.co",
            r"huggingface\.co.{0,200}\b(?:401|403)\b",
            r"Invalid (?:user|HF|Hugging Face) token",
        ),
        "Hugging Face refused to serve the model's weights (gated model, missing or wrong token)",
        "export HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) with a token whose account accepted the model's licence "
        "at https://huggingface.co/<model id>, then run the command again",
    ),
    _Rule(
        "ngc-auth",
        _rx(
            r"Authentication Error",
            r"(?:401|403)\b.{0,80}\b(?:ngc|nvcr\.io|api\.ngc\.nvidia\.com)",
            r"(?:ngc|nvcr\.io|api\.ngc\.nvidia\.com).{0,200}\b(?:401|403|Unauthorized|Forbidden)\b",
            r"Invalid NGC API key",
            r"NGC_API_KEY (?:is )?(?:not set|missing|invalid)",
        ),
        "NGC refused the API key (NIM could not fetch its model)",
        "export NGC_API_KEY with a valid key from https://org.ngc.nvidia.com/setup/api-key (NGC 'Personal key' "
        "with the NGC Catalog service) and run `docker login nvcr.io -u '$oauthtoken'` with it",
    ),
    _Rule(
        "no-gpu",
        _rx(
            r"No CUDA GPUs are available",
            r"Found no NVIDIA driver",
            r"NVIDIA driver (?:is )?not loaded",
            r"driver not loaded",
            r"nvidia-container-cli",
            r"could not select device driver .{0,20} with capabilities: \[\[gpu\]\]",
            r"libcuda\.so(?:\.1)?: cannot open shared object file",
            r"Failed to infer device type",
            r"CUDA driver version is insufficient",
            r"no CUDA-capable device is detected",
            r"no compatible GPUs were discovered",
        ),
        "the container saw no usable NVIDIA GPU (driver, NVIDIA Container Toolkit or --gpus)",
        "check `nvidia-smi` on the host, install/configure the NVIDIA Container Toolkit "
        "(nvidia-ctk runtime configure --runtime=docker; restart docker), and make sure the GPU is not hidden",
    ),
    _Rule(
        "port-in-use",
        _rx(r"Address already in use", r"\[Errno 98\]", r"bind: address already in use"),
        "the server's port is already taken by another process",
        "stop what listens on the port (ss -ltnp), or choose another one with NEMOCLAW_VLLM_PORT / "
        "NEMOCLAW_OLLAMA_PORT",
    ),
    _Rule(
        "disk-full",
        _rx(r"No space left on device", r"\[Errno 28\]", r"not enough free disk space"),
        "the disk filled up (model cache or Docker storage)",
        "free disk space where the Hugging Face / NIM / Ollama cache and Docker's data-root live "
        "(df -h; docker system df), or point HF_HOME at a larger disk",
    ),
    _Rule(
        "cache-permission",
        _rx(
            r"Permission denied.{0,200}(?:cache|huggingface|\.ollama|/opt/nim|HF_HOME|/models?\b)",
            r"(?:cache|huggingface|\.ollama|/opt/nim|HF_HOME).{0,200}Permission denied",
            r"cache (?:directory|dir)\S* (?:is )?not writable",
        ),
        "the runtime cannot write its model cache directory",
        "make the mounted cache directory writable by the container's user (NIM runs as UID 1000: "
        "sudo chown -R 1000 <cache dir>; for vLLM check ~/.cache/huggingface ownership)",
    ),
    _Rule(
        "ollama-runner-crash",
        RUNNER_CRASH_RE,
        "Ollama's model runner crashed while loading or serving the model",
        "check GPU memory (a smaller model or quantisation, fewer parallel requests via OLLAMA_NUM_PARALLEL), "
        "update Ollama, and read `ollama serve` logs around the crash",
    ),
)

_UNKNOWN = Diagnosis(
    cause="unknown",
    summary="no known failure pattern in the log tail",
    remedy="read the log tail above (or `docker logs <container>`); set NEMOCLAW_DEBUG=1 for details",
)

_HOST_OOM = Diagnosis(
    cause="host-oom",
    summary="the kernel killed the container for using too much host memory",
    remedy="free host RAM (close other programs), pick a smaller model, or lower --max-model-len / --max-num-seqs",
)


def classify(lines: Sequence[str], *, state: ContainerState | None = None) -> Diagnosis:
    """The most recent recognised failure in ``lines`` (oldest first), or ``unknown``.

    ``state`` (optional) adds what the engine knows: a container the kernel OOM-killed with nothing else in its
    log is ``host-oom``.
    """
    best: tuple[int, int, _Rule, re.Match[str]] | None = None
    text = "\n".join(lines)
    for order, rule in enumerate(_RULES):
        for match in rule.pattern.finditer(text):
            # The line where a match ends orders it: later lines win; on the same line the rule listed first
            # (the more specific) wins.
            key = (text.count("\n", 0, max(match.end() - 1, 0)), -order)
            if best is None or key > (best[0], best[1]):
                best = (*key, rule, match)
    if best is None:
        if state is not None and state.oom_killed:
            return _HOST_OOM
        return _UNKNOWN
    _, _, rule, match = best
    return Diagnosis(rule.cause, rule.summary, rule.remedy, _evidence(text, match))


def _evidence(text: str, match: re.Match[str]) -> str:
    """The whole line(s) the match spans, redacted and bounded."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    span = text[start:] if end == -1 else text[start:end]
    one_line = " | ".join(display_line(part) for part in span.splitlines() if display_line(part))
    return redact(one_line)[:_MAX_EVIDENCE_CHARS]


# --- redaction -----------------------------------------------------------------------------------------------------


def redact_lines(lines: Sequence[str]) -> list[str]:
    return [redact(line) for line in lines]


def display_line(line: str) -> str:
    """What a terminal would show of a raw log line: colour codes dropped, and for a progress bar redrawn with
    carriage returns (tqdm in vLLM's weight loading) only its latest state."""
    segments = [part for part in strip_escapes(line).split("\r") if part.strip()]
    return segments[-1].strip() if segments else ""
