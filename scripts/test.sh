#!/usr/bin/env bash
# The one command that runs the test suite: bash scripts/test.sh [pytest args...]
#
# On a fresh Debian machine (as root) it installs what the tests stand on, starts a Docker engine when none
# answers, and runs pytest; on a developer machine where all that is already there it only runs pytest.
#   1. pip install -e '.[dev]' (quiet): the test extras and the static checkers
#   2. apt-get install the Debian packages the Docker tests use, only those missing
#   3. scripts/check.sh: ruff, mypy, import-linter (NEMOCLAW_TEST_SKIP_CHECKS=1 skips it for quick reruns)
#   4. scripts/ensure-docker.sh
#   5. pytest, with "-m 'not gpu'" folded in when NVML finds no GPU
# Extra arguments go to pytest: bash scripts/test.sh -m "not docker" -x
# pytest's exit 5 (nothing collected) counts as success only when a -m/-k filter given here made the selection
# empty on purpose. Idempotent; never reads stdin. NEMOCLAW_TEST_SKIP_INSTALL=1 skips steps 1-2 (quick reruns);
# NEMOCLAW_TEST_ALLOW_NO_DOCKER=1 goes on without an engine (docker tests then skip; never set it in CI).
set -euo pipefail
exec </dev/null
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
readonly PYTHON
readonly T0=$SECONDS

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; say "FAILED before pytest ran ($((SECONDS - T0)) s)"; exit 1; }

# --- 1. the package and its test dependencies --------------------------------------------------------------
install_python_deps() {
    local t=$SECONDS
    # Pip warns about running as root; CI runs as root on purpose.
    export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    # A throwaway CI box may use Debian's own python (PEP 668); a developer's machine keeps pip's refusal.
    if [[ "${CI:-}" == "true" ]]; then export PIP_BREAK_SYSTEM_PACKAGES=1; fi
    "$PYTHON" -m pip install --quiet -e '.[dev]' || die "pip install -e '.[dev]' failed (see above)"
    say "python dependencies ready ($((SECONDS - t)) s)"
}

# --- 2. Debian packages ------------------------------------------------------------------------------------
package_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing_packages() {
    # A non-root PATH may lack /usr/sbin, where dockerd lives; docker-ce's packages provide the commands too.
    package_installed docker.io || { command -v docker && { command -v dockerd || [[ -x /usr/sbin/dockerd ]]; }; } \
        >/dev/null 2>&1 || echo docker.io
    command -v docker-registry >/dev/null 2>&1 || echo docker-registry
    # Only the static build runs inside a FROM-scratch image; Debian's plain "busybox" is dynamic.
    package_installed busybox-static || echo busybox-static
    command -v htpasswd >/dev/null 2>&1 || echo apache2-utils
}

install_debian_packages() {
    local t=$SECONDS missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        say "Debian packages present"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    [[ "$(id -u)" == "0" ]] || die "missing ${missing[*]}: run as root, or: sudo apt-get install -y ${missing[*]}"
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} == 0)) || die "still missing after apt-get: ${missing[*]}"
    say "Debian packages installed ($((SECONDS - t)) s)"
}

# --- 3. GPU probe --------------------------------------------------------------------------------------------
nvml_sees_a_gpu() {
    "$PYTHON" - >/dev/null 2>&1 <<'EOF'
import sys
try:
    import pynvml
    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
except Exception:
    sys.exit(1)
sys.exit(0 if count > 0 else 1)
EOF
}

# --- 4. pytest arguments -------------------------------------------------------------------------------------
# Fills PYTEST_ARGS from "$@". Without a GPU every -m expression gets "and not gpu" (pytest keeps only the last
# -m, so adding a second -m would silently drop the user's). USER_FILTERED=1 when the caller gave -m or -k.
PYTEST_ARGS=()
USER_FILTERED=0
build_pytest_args() {
    local no_gpu=$1 saw_m=0 expr
    shift
    guard() { if ((no_gpu)); then printf '(%s) and not gpu' "$1"; else printf '%s' "$1"; fi; }
    while (($#)); do
        case "$1" in
            -m)
                (($# >= 2)) || die "-m needs an expression"
                expr=$2; shift
                PYTEST_ARGS+=(-m "$(guard "$expr")"); saw_m=1; USER_FILTERED=1 ;;
            -m?*)
                expr=${1#-m}
                PYTEST_ARGS+=(-m "$(guard "$expr")"); saw_m=1; USER_FILTERED=1 ;;
            -k)
                (($# >= 2)) || die "-k needs an expression"
                PYTEST_ARGS+=(-k "$2"); shift; USER_FILTERED=1 ;;
            -k?*)
                PYTEST_ARGS+=("$1"); USER_FILTERED=1 ;;
            *)
                PYTEST_ARGS+=("$1") ;;
        esac
        shift
    done
    if ((no_gpu && !saw_m)); then PYTEST_ARGS+=(-m "not gpu"); fi
    # CI shows the slowest tests, to keep the run well under its time budget.
    if [[ "${CI:-}" == "true" && " ${PYTEST_ARGS[*]} " != *" --durations"* ]]; then PYTEST_ARGS+=(--durations=10); fi
}

run_pytest() {
    local t=$SECONDS rc=0
    export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
    say "$PYTHON -m pytest$(printf ' %q' "${PYTEST_ARGS[@]}")"
    "$PYTHON" -m pytest "${PYTEST_ARGS[@]}" || rc=$?
    say "pytest exit $rc ($((SECONDS - t)) s)"
    if ((rc == 5 && USER_FILTERED)); then
        say "no test matched the -m/-k selection given; that was asked for, so it counts as success"
        rc=0
    fi
    return "$rc"
}

main() {
    if [[ "${NEMOCLAW_TEST_SKIP_INSTALL:-}" == "1" ]]; then
        say "NEMOCLAW_TEST_SKIP_INSTALL=1: not running pip/apt-get"
    else
        install_python_deps
        install_debian_packages
    fi
    if [[ "${NEMOCLAW_TEST_SKIP_CHECKS:-}" == "1" ]]; then
        say "NEMOCLAW_TEST_SKIP_CHECKS=1: not running scripts/check.sh"
    else
        bash scripts/check.sh || die "static checks failed (see above)"
    fi
    if ! bash scripts/ensure-docker.sh; then
        # CI never sets this: there, no engine must fail the run. Locally it lets the docker tests skip.
        [[ "${NEMOCLAW_TEST_ALLOW_NO_DOCKER:-}" == "1" ]] \
            || die "no Docker engine (see scripts/ensure-docker.sh output above)"
        say "no Docker engine, NEMOCLAW_TEST_ALLOW_NO_DOCKER=1: docker tests will skip"
    fi
    local no_gpu=1
    if nvml_sees_a_gpu; then
        no_gpu=0
        say "NVML sees a GPU: gpu tests included"
    else
        say "NVML sees no GPU: running with -m 'not gpu'"
    fi
    build_pytest_args "$no_gpu" "$@"
    local rc=0
    run_pytest || rc=$?
    if ((rc == 0)); then
        say "PASSED ($((SECONDS - T0)) s total)"
    else
        say "FAILED: pytest exit $rc ($((SECONDS - T0)) s total)"
    fi
    exit "$rc"
}

main "$@"
