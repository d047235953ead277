"""Package discovery for the folder layout (metadata, dependencies and tool settings live in pyproject.toml).

The repository keeps its code in top-level folders (``core/``, ``gpu/``, ``registry/``, ``runtimes/``, ``cli/``)
that install under one import namespace, ``nemoclaw_runtime``. setuptools cannot discover sub-packages through a
``package-dir`` mapping from pyproject.toml alone, so this file walks each folder: a new sub-package lands in the
wheel without anyone editing a list (``tests/packaging`` proves it by importing every module from a built wheel).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# import name -> folder; the single source for setuptools, scripts/link_tree.py and the packaging tests.
PACKAGE_ROOTS: dict[str, str] = {
    "nemoclaw_runtime": "core",
    "nemoclaw_runtime.gpu": "gpu",
    "nemoclaw_runtime.registry": "registry",
    "nemoclaw_runtime.runtimes": "runtimes",
    "nemoclaw_runtime.cli": "cli",
}


def discover_packages(root: Path = HERE) -> dict[str, str]:
    """Every package to install, mapped to its folder (relative to ``root``)."""
    found: dict[str, str] = {}
    for name, folder in PACKAGE_ROOTS.items():
        found[name] = folder
        for sub in find_packages(str(root / folder)):
            found[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return found


if __name__ == "__main__":
    setup(packages=sorted(discover_packages()), package_dir=dict(PACKAGE_ROOTS))
