"""Each closed list of names is declared once (kernel/names.py) and every layer uses that one."""

from __future__ import annotations

from nemoclaw_runtime import gpu, registry
from nemoclaw_runtime.kernel import names
from nemoclaw_runtime.registry.catalog import NO_GPU_PROFILE
from nemoclaw_runtime.registry.loader import PROFILE_ALIASES, VLLM_PLATFORMS
from nemoclaw_runtime.runtimes.onboarding import menu
from nemoclaw_runtime.runtimes.server import validate


def test_the_layers_share_the_kernel_lists() -> None:
    assert registry.RUNTIMES is names.RUNTIMES
    assert registry.HF_TOKEN_VARIABLES is names.HF_TOKEN_VARIABLES
    assert registry.NGC_KEY_VARIABLES is names.NGC_KEY_VARIABLES
    assert gpu.PROFILES is names.PROFILES
    assert menu.KEYS is names.PROVIDERS
    assert validate.APIS is names.APIS


def test_providers_are_the_runtimes_plus_managed_vllm() -> None:
    assert set(names.PROVIDERS) == {*names.RUNTIMES, names.PROVIDER_INSTALL_VLLM}


def test_every_profile_the_registry_and_the_menu_name_is_a_host_profile() -> None:
    loaded = registry.load_registry()
    named = {*VLLM_PLATFORMS, *PROFILE_ALIASES, NO_GPU_PROFILE, *menu.DEFAULT_ON_PROFILES}
    named |= {p.gpu_profile for p in loaded.vllm_profiles.values()}
    named |= {a for p in loaded.vllm_profiles.values() for a in p.also_for}
    named |= {platform for model in loaded.vllm_models for platform in model.platforms}
    assert named <= set(names.PROFILES)
