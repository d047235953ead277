"""Lay the package out as it installs, as a tree of links, for tools that read source by import name.

mypy and import-linter find ``nemoclaw_runtime.runtimes.docker.adapter`` by walking folders named like the
packages; the checkout keeps them in ``core/``, ``runtimes/``… (see setup.py). This writes
``build/link-tree/nemoclaw_runtime/…`` — real folders, each ``.py``/``py.typed`` file a symbolic link to the
checkout's — so both tools see every internal import resolve while errors still point at files you edit.
Usage: python scripts/link_tree.py  (prints the folder to put on MYPYPATH / PYTHONPATH). Idempotent.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "link-tree"


def _package_map() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("_nemoclaw_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() itself only runs as __main__
    return module.discover_packages(ROOT)  # type: ignore[no-any-return]


def build(tree: Path = TREE) -> Path:
    if tree.exists():
        shutil.rmtree(tree)
    for package, folder in _package_map().items():
        target = tree.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((ROOT / folder).iterdir()):
            if source.is_file() and (source.suffix == ".py" or source.name == "py.typed"):
                (target / source.name).symlink_to(source)
    return tree


if __name__ == "__main__":
    print(build())
    sys.exit(0)
