"""NIM VRAM filter and Ollama starter rules (NemoClaw §1 and §5)."""

from __future__ import annotations

import pytest

from nemoclaw_runtime.kernel.errors import InsufficientResources, NoSuitableGpu, UnknownModel
from nemoclaw_runtime.registry import Registry, load_registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


# --- NIM ----------------------------------------------------------------------------------------------------


def test_nim_catalog_exact(registry: Registry) -> None:
    rows = [(m.name, m.image, m.min_vram_mib, m.served_id) for m in registry.nim_models]
    assert rows == [
        (
            "nvidia/nemotron-3-super-120b-a12b",
            "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b:latest",
            40960,
            "nvidia/nemotron-3-super-120b-a12b",
        ),
        (
            "nvidia/nemotron-3-nano-30b-a3b",
            "nvcr.io/nim/nvidia/nemotron-3-nano:latest",
            8192,
            "nvidia/nemotron-3-nano",
        ),
        (
            "nvidia/llama-3.1-nemotron-70b-instruct",
            "nvcr.io/nim/nvidia/llama-3.1-nemotron-70b-instruct:latest",
            81920,
            "nvidia/llama-3.1-nemotron-70b-instruct",
        ),
        (
            "nvidia/llama-3.3-nemotron-super-49b-v1",
            "nvcr.io/nim/nvidia/llama-3.3-nemotron-super-49b-v1:latest",
            24576,
            "nvidia/llama-3.3-nemotron-super-49b-v1",
        ),
        (
            "meta/llama-3.1-8b-instruct",
            "nvcr.io/nim/meta/llama-3.1-8b-instruct:latest",
            16384,
            "meta/llama-3.1-8b-instruct",
        ),
    ]


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (None, []),
        (0, []),
        (8191, []),
        (8192, ["nvidia/nemotron-3-nano-30b-a3b"]),
        (16383, ["nvidia/nemotron-3-nano-30b-a3b"]),
        (16384, ["nvidia/nemotron-3-nano-30b-a3b", "meta/llama-3.1-8b-instruct"]),
        (24576, ["nvidia/nemotron-3-nano-30b-a3b", "nvidia/llama-3.3-nemotron-super-49b-v1",
                 "meta/llama-3.1-8b-instruct"]),
        (
            40960,
            [
                "nvidia/nemotron-3-super-120b-a12b",
                "nvidia/nemotron-3-nano-30b-a3b",
                "nvidia/llama-3.3-nemotron-super-49b-v1",
                "meta/llama-3.1-8b-instruct",
            ],
        ),
        (
            81919,
            [
                "nvidia/nemotron-3-super-120b-a12b",
                "nvidia/nemotron-3-nano-30b-a3b",
                "nvidia/llama-3.3-nemotron-super-49b-v1",
                "meta/llama-3.1-8b-instruct",
            ],
        ),
        (
            81920,
            [
                "nvidia/nemotron-3-super-120b-a12b",
                "nvidia/nemotron-3-nano-30b-a3b",
                "nvidia/llama-3.1-nemotron-70b-instruct",
                "nvidia/llama-3.3-nemotron-super-49b-v1",
                "meta/llama-3.1-8b-instruct",
            ],
        ),
    ],
)
def test_nim_filter_thresholds(registry: Registry, budget: int | None, expected: list[str]) -> None:
    assert [m.name for m in registry.nim_models_fitting(budget)] == expected


def test_nim_default_is_first_fitting(registry: Registry) -> None:
    assert registry.resolve_nim_model(None, budget_mib=30000).name == "nvidia/nemotron-3-nano-30b-a3b"
    assert registry.resolve_nim_model("  ", budget_mib=90000).name == "nvidia/nemotron-3-super-120b-a12b"


@pytest.mark.parametrize("budget", [None, 4096])
def test_nim_default_without_fit(registry: Registry, budget: int | None) -> None:
    with pytest.raises(NoSuitableGpu) as caught:
        registry.resolve_nim_model(None, budget_mib=budget)
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    "text",
    ["nvidia/nemotron-3-nano-30b-a3b", "nemotron-3-nano-30b-a3b", "NVIDIA/Nemotron-3-Nano",
     " nvcr.io/nim/nvidia/nemotron-3-nano:latest "],
)
def test_nim_lookup(registry: Registry, text: str) -> None:
    assert registry.resolve_nim_model(text, budget_mib=None).served_id == "nvidia/nemotron-3-nano"


@pytest.mark.parametrize(
    "short", ["nemotron-3-super-120b-a12b", "nemotron-3-nano-30b-a3b", "llama-3.1-nemotron-70b-instruct",
              "llama-3.3-nemotron-super-49b-v1"])
def test_nim_short_names_are_aliases(registry: Registry, short: str) -> None:
    """Issue 11: the names are NemoClaw's ``nvidia/...``; the short names of earlier releases still resolve."""
    model = registry.resolve_nim_model(short, budget_mib=None)
    assert model.name == f"nvidia/{short}" and short in model.aliases
    assert registry.resolve_nim_model(f"nvidia/{short}", budget_mib=None) is model


def test_nim_unknown_and_too_big(registry: Registry) -> None:
    with pytest.raises(UnknownModel, match=r"^Unsupported NEMOCLAW_MODEL='x' for NIM\. Recognised values: "):
        registry.resolve_nim_model("x", budget_mib=100000)
    with pytest.raises(InsufficientResources, match="needs at least 80.0 GiB"):
        registry.resolve_nim_model("nvidia/llama-3.1-nemotron-70b-instruct", budget_mib=40960)


# --- Ollama -------------------------------------------------------------------------------------------------


def test_ollama_starters_exact(registry: Registry) -> None:
    rows = [
        (s.tag, s.required_memory_mib, s.download_bytes, s.compute_intensive)
        for s in registry.ollama_starters
    ]
    assert rows == [
        ("qwen3.6:35b", 30000, 24_000_000_000, True),
        ("nemotron-3-nano:30b", 26000, 19_000_000_000, True),
        ("qwen3.5:9b", 12000, 6_600_000_000, False),
    ]


def _tags(
    registry: Registry, memory: int | None, nvidia: bool = True, constrained: bool = False
) -> list[str]:
    return [
        s.tag
        for s in registry.fittable_ollama_starters(
            memory, nvidia_known=nvidia, compute_constrained=constrained
        )
    ]


@pytest.mark.parametrize(
    ("memory", "nvidia", "expected"),
    [
        (None, True, ["qwen3.5:9b"]),
        (0, True, ["qwen3.5:9b"]),
        (200000, False, ["qwen3.5:9b"]),
        (None, False, ["qwen3.5:9b"]),
        (11999, True, []),
        (12000, True, ["qwen3.5:9b"]),
        (25999, True, ["qwen3.5:9b"]),
        (26000, True, ["qwen3.5:9b", "nemotron-3-nano:30b"]),
        (30000, True, ["qwen3.5:9b", "nemotron-3-nano:30b", "qwen3.6:35b"]),
        (128000, True, ["qwen3.5:9b", "nemotron-3-nano:30b", "qwen3.6:35b"]),
    ],
)
def test_fittable_smallest_first(
    registry: Registry, memory: int | None, nvidia: bool, expected: list[str]
) -> None:
    assert _tags(registry, memory, nvidia) == expected


def test_compute_constrained_skips_intensive(registry: Registry) -> None:
    assert _tags(registry, 128000, constrained=True) == ["qwen3.5:9b"]
    assert _tags(registry, 8000, constrained=True) == []


@pytest.mark.parametrize(
    ("memory", "constrained", "expected"),
    [
        (128000, False, "qwen3.6:35b"),
        (28000, False, "nemotron-3-nano:30b"),
        (13000, False, "qwen3.5:9b"),
        (128000, True, "qwen3.5:9b"),
        (None, False, "qwen3.5:9b"),
        (4000, False, None),
    ],
)
def test_default_is_largest_fit(
    registry: Registry, memory: int | None, constrained: bool, expected: str | None
) -> None:
    default = registry.default_ollama_starter(memory, nvidia_known=True, compute_constrained=constrained)
    assert (default.tag if default else None) == expected


def test_starter_fits_unknown_memory_counts_as_fit(registry: Registry) -> None:
    big = registry.ollama_starter("QWEN3.6:35B")
    assert big is not None
    assert big.fits(None) is True
    assert big.fits(29999) is False
    assert big.fits(30000) is True
    assert registry.ollama_starter("llama3:8b") is None
