#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before pytest (hence CI), and on their own: bash scripts/check.sh
#   1. ruff: lint of the whole tree
#   2. the link tree (scripts/link_tree.py): the package laid out as it installs, so imports resolve by name
#   3. mypy over every module of nemoclaw_runtime (pyproject [tool.mypy]: no global ignore_missing_imports)
#   4. import-linter: the layer contracts in pyproject [tool.importlinter]
# Needs the dev extras: pip install -e '.[dev]'. Exit non-zero on the first failing check.
set -euo pipefail
exec </dev/null
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
say() { printf 'check.sh: %s\n' "$*" >&2; }

t=$SECONDS
"$PYTHON" -m ruff check --quiet . || { say "ruff found problems (above); 'ruff check --fix .' mends the simple ones"; exit 1; }
say "ruff clean ($((SECONDS - t)) s)"

tree=$("$PYTHON" scripts/link_tree.py)

t=$SECONDS
# Paths in mypy's messages are the link tree's (build/link-tree/nemoclaw_runtime/X); the file to edit is the one
# the link points at (setup.py's PACKAGE_ROOTS: nemoclaw_runtime -> core/, nemoclaw_runtime.runtimes -> runtimes/…).
"$PYTHON" -m mypy || { say "mypy found errors (above)"; exit 1; }
say "mypy clean ($((SECONDS - t)) s)"

t=$SECONDS
PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c \
    'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())' --no-cache \
    || { say "an import crosses a layer (above): see README 'Development' for the layers"; exit 1; }
say "import contracts kept ($((SECONDS - t)) s)"
