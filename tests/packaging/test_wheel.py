"""The wheel, installed on its own: every module of the source folders imports from it, the data files and
``py.typed`` ride along, and the console script runs.

The wheel is built (``pip wheel --no-deps --no-build-isolation``) from a copy of what setup.py packages, so the
checkout gets no ``build/`` and no stale build output can hide a missing file. It is installed into a fresh venv
*without* system site-packages: the editable install of this checkout registers a meta-path finder through a
``.pth`` in the system site-packages, and that finder would quietly serve any sub-package the wheel lacks from the
checkout. The venv reaches the dependencies through a ``.pth`` naming the current interpreter's site-packages
directories — plain path lines, appended after the venv's own site-packages, so the wheel wins and the editable
``.pth`` there is never executed. The module list comes from walking the source folders of setup.py's
``PACKAGE_ROOTS`` (every ``.py`` file), not from the wheel, so a sub-package missing from the wheel fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Files besides the package folders that the build reads (pyproject's readme is README.md).
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")
_STEP_TIMEOUT_S = 120
#: Run by the venv's interpreter: import each module named on stdin, report where each came from.
_CHECK_SCRIPT = """
import importlib, importlib.resources, json, sys
modules = json.load(sys.stdin)
failed, files = {}, {}
for name in modules:
    try:
        files[name] = importlib.import_module(name).__file__
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, none stops the walk
        failed[name] = f"{type(exc).__name__}: {exc}"
data = importlib.resources.files("nemoclaw_runtime.registry") / "data"
report = {"failed": failed, "files": files, "prefix": sys.prefix,
          "data": sorted(entry.name for entry in data.iterdir() if entry.name.endswith(".toml")),
          "finders": [getattr(finder, "__name__", type(finder).__name__) for finder in sys.meta_path]}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(report, handle)
"""


def load_setup(root: Path = ROOT) -> ModuleType:
    """setup.py as a module (``setup()`` itself only runs as ``__main__``), as scripts/link_tree.py loads it."""
    spec = importlib.util.spec_from_file_location("_nemoclaw_setup_for_packaging", root / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module the source folders hold (import name -> file), found by walking the folders of
    ``PACKAGE_ROOTS`` for ``.py`` files — independent of what setuptools discovers."""
    modules: dict[str, Path] = {}
    for package, folder in load_setup(root).PACKAGE_ROOTS.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def copy_sources(root: Path, dest: Path) -> Path:
    """What the build needs: the build files and the ``PACKAGE_ROOTS`` folders (no caches, no build output)."""
    dest.mkdir(parents=True)
    for name in BUILD_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    for folder in load_setup(root).PACKAGE_ROOTS.values():
        shutil.copytree(root / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONUSERBASE")}
    return {**env, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1", **extra}


def _run(args: list[str], *, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True, env=_clean_env(),
                          timeout=_STEP_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _bdist_wheel_available() -> bool:
    """``--no-build-isolation`` builds with this environment's setuptools: it has ``bdist_wheel`` from 70.1 on,
    older ones need the ``wheel`` package (< 0.46, which still carries the command)."""
    return any(importlib.util.find_spec(name) is not None
               for name in ("setuptools.command.bdist_wheel", "wheel.bdist_wheel"))


def build_wheel(source: Path, out: Path) -> Path:
    assert _bdist_wheel_available(), (
        "building a wheel without build isolation needs setuptools >= 70.1 or the `wheel` package (< 0.46) in "
        "this environment: pip install 'setuptools>=70.1'")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(out), str(source)], cwd=out.parent)
    wheels = sorted(out.glob("nemoclaw_runtime-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install_in_fresh_venv(wheel: Path, venv: Path) -> tuple[Path, Path]:
    """A venv with only the wheel installed in it; dependencies reachable through a path-only ``.pth``.
    Returns (its python, its site-packages)."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              cwd=venv.parent).stdout.strip())
    # Installed while the venv sees nothing else, so pip neither meets nor touches the editable install.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=venv.parent)
    ours = {str(site_packages.resolve())}
    # Every site directory this interpreter sees (a venv made with --system-site-packages has two), as plain paths.
    candidates = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                  *(p for p in sys.path if Path(p).name in ("site-packages", "dist-packages"))]
    dependency_dirs = dict.fromkeys(p for p in candidates if Path(p).is_dir() and str(Path(p).resolve()) not in ours)
    (site_packages / "zz_dependencies.pth").write_text("".join(f"{path}\n" for path in dependency_dirs))
    return python, site_packages


def check_installed(python: Path, modules: list[str], workdir: Path) -> dict[str, Any]:
    report_path = workdir / "import-report.json"
    _run([str(python), "-c", _CHECK_SCRIPT, str(report_path)], cwd=workdir, stdin=json.dumps(modules))
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    return report


def test_the_wheel_alone_imports_every_module_and_carries_its_data(tmp_path: Path) -> None:
    modules = source_modules()
    setup = load_setup()
    # Every folder holding code is a package setuptools discovers (a folder without __init__.py would not be).
    discovered = {ROOT / folder for folder in setup.discover_packages(ROOT).values()}
    assert {path.parent for path in modules.values()} <= discovered

    wheel = build_wheel(copy_sources(ROOT, tmp_path / "src"), tmp_path / "dist")

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nemoclaw_runtime/py.typed" in names
    tomls = sorted(path.name for path in (ROOT / "registry" / "data").glob("*.toml"))
    assert tomls and {f"nemoclaw_runtime/registry/data/{name}" for name in tomls} <= names
    wheel_modules = {name for name in names if name.endswith(".py") and ".dist-info/" not in name}
    expected_files = {"/".join(module.split(".")) + ("/__init__.py" if path.name == "__init__.py" else ".py")
                      for module, path in modules.items()}
    assert sorted(expected_files - wheel_modules) == [], "source modules missing from the wheel"

    python, site_packages = install_in_fresh_venv(wheel, tmp_path / "venv")
    report = check_installed(python, sorted(modules), tmp_path)

    assert report["failed"] == {}, "modules that do not import from the installed wheel"
    assert "_EditableFinder" not in report["finders"]  # the checkout's editable finder is not in play
    installed = site_packages.resolve()
    assert Path(report["files"]["nemoclaw_runtime"]).resolve().is_relative_to(installed)
    elsewhere = {name: file for name, file in report["files"].items()
                 if not Path(file).resolve().is_relative_to(installed)}
    assert elsewhere == {}, "modules imported from outside the venv's wheel install"
    assert report["data"] == tomls

    cli = venv_script(python, "nemoclaw-runtime")
    done = subprocess.run([str(cli), "--help"], cwd=tmp_path, capture_output=True, text=True, env=_clean_env(),
                          timeout=_STEP_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "up" in done.stdout


def venv_script(python: Path, name: str) -> Path:
    script = python.parent / name
    assert script.is_file(), f"{name} was not installed into {python.parent}"
    return script
