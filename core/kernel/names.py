"""The closed lists of names the whole package shares, each declared once.

The kernel is the lowest layer, so the settings parser (``NEMOCLAW_PROVIDER``, ``NEMOCLAW_PREFERRED_API``), the GPU
inventory (host profiles), the registry (runtimes, the profiles its data may name), the drivers, the onboarding menu
and the CLI all import these instead of spelling the strings again.
"""

from __future__ import annotations

# --- runtimes: what nemoclaw-runtime drives (and the registry has entries for) ---------------------------------------

RUNTIME_VLLM = "vllm"
RUNTIME_NIM = "nim"
RUNTIME_OLLAMA = "ollama"
RUNTIMES: tuple[str, ...] = (RUNTIME_VLLM, RUNTIME_NIM, RUNTIME_OLLAMA)

# --- providers: the keys of the local-options menu, and the values of NEMOCLAW_PROVIDER ----------------------------

PROVIDER_VLLM = RUNTIME_VLLM  # a vLLM server that already answers
PROVIDER_INSTALL_VLLM = "install-vllm"  # managed vLLM: install and start it
PROVIDER_NIM = RUNTIME_NIM
PROVIDER_OLLAMA = RUNTIME_OLLAMA
PROVIDERS: tuple[str, ...] = (PROVIDER_VLLM, PROVIDER_INSTALL_VLLM, PROVIDER_NIM, PROVIDER_OLLAMA)

# --- APIs: the OpenAI-compatible paths validation can prove (NEMOCLAW_PREFERRED_API, --api) -------------------------

API_COMPLETIONS = "openai-completions"
API_RESPONSES = "openai-responses"
APIS: tuple[str, ...] = (API_COMPLETIONS, API_RESPONSES)

# --- host profiles: which kind of NVIDIA machine this is (``nemoclaw-runtime gpus``) --------------------------------

PROFILE_DGX_SPARK = "dgx-spark"
PROFILE_DGX_STATION = "dgx-station"
PROFILE_JETSON = "jetson"
PROFILE_LINUX_NVIDIA = "linux-nvidia"
PROFILE_NONE = "none"  # no GPU could be read
PROFILES: tuple[str, ...] = (PROFILE_DGX_SPARK, PROFILE_DGX_STATION, PROFILE_JETSON, PROFILE_LINUX_NVIDIA,
                             PROFILE_NONE)

# --- credentials: the variables that may carry a token, preferred first ---------------------------------------------

HF_TOKEN_VARIABLES: tuple[str, ...] = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
NGC_KEY_VARIABLES: tuple[str, ...] = ("NGC_API_KEY", "NVIDIA_INFERENCE_API_KEY", "NVIDIA_API_KEY")

__all__ = [
    "APIS",
    "API_COMPLETIONS",
    "API_RESPONSES",
    "HF_TOKEN_VARIABLES",
    "NGC_KEY_VARIABLES",
    "PROFILES",
    "PROFILE_DGX_SPARK",
    "PROFILE_DGX_STATION",
    "PROFILE_JETSON",
    "PROFILE_LINUX_NVIDIA",
    "PROFILE_NONE",
    "PROVIDERS",
    "PROVIDER_INSTALL_VLLM",
    "PROVIDER_NIM",
    "PROVIDER_OLLAMA",
    "PROVIDER_VLLM",
    "RUNTIMES",
    "RUNTIME_NIM",
    "RUNTIME_OLLAMA",
    "RUNTIME_VLLM",
]
