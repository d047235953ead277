"""The public surface is written down: every module of the package has ``__all__``, every name in it exists, and
every name one package module imports from another is in that module's ``__all__``.

Modules are found by walking the source folders of setup.py's ``PACKAGE_ROOTS`` (as tests/packaging does), so a
new module without ``__all__`` fails here. Tests may reach past ``__all__`` (they patch knobs and private
helpers); the package's own modules may not.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _package_roots() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("_nemoclaw_setup_for_surface", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # setup() itself only runs as __main__
    return dict(setup.PACKAGE_ROOTS)


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, folder in _package_roots().items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = _modules()


def _declared(module: ModuleType) -> list[str]:
    declared = vars(module).get("__all__")  # the module's own, never a lazy __getattr__ answer
    assert declared is not None, f"{module.__name__} ({MODULES[module.__name__].relative_to(ROOT)}) has no __all__"
    assert isinstance(declared, (list, tuple)) and all(isinstance(name, str) for name in declared), module.__name__
    return list(declared)


def test_the_walk_finds_the_package() -> None:
    assert {"nemoclaw_runtime", "nemoclaw_runtime.kernel.errors", "nemoclaw_runtime.runtimes.docker.port",
            "nemoclaw_runtime.cli.main", "nemoclaw_runtime.gpu", "nemoclaw_runtime.registry"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_declares_all_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    declared = _declared(module)
    assert len(set(declared)) == len(declared), f"{name}: duplicates in __all__"
    private = [item for item in declared if item.startswith("_") and not item.endswith("__")]
    assert private == [], f"{name}: private names in __all__"
    missing = [item for item in declared if not hasattr(module, item)]
    assert missing == [], f"{name}: __all__ names what the module does not have"


def _cross_module_imports() -> list[tuple[str, str, str]]:
    """(importing file, module, name) for every ``from nemoclaw_runtime.M import name`` in the package where M is
    another package module and ``name`` is not itself a module."""
    found: list[tuple[str, str, str]] = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level or node.module not in MODULES:
                continue
            if MODULES[node.module] == path:
                continue
            for alias in node.names:
                if alias.name != "*" and f"{node.module}.{alias.name}" not in MODULES:
                    found.append((str(path.relative_to(ROOT)), node.module, alias.name))
    return found


def test_what_package_modules_import_from_each_other_is_in_all() -> None:
    unlisted = []
    for where, module_name, name in _cross_module_imports():
        if name.startswith("_") and not name.startswith("__"):
            continue  # a private helper reached across modules is a smell of its own, not a surface question
        module = importlib.import_module(module_name)
        if name not in vars(module).get("__all__", ()):
            unlisted.append(f"{where}: {module_name}.{name}")
    assert unlisted == [], "imported across modules but not in the module's __all__"
