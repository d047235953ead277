#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
# When one already answers (a system service, another test run, a developer's dockerd) nothing is touched.
# Otherwise, as root, start Debian's dockerd in the background, log to $NEMOCLAW_DOCKERD_LOG, and wait for it,
# bounded by $NEMOCLAW_DOCKERD_WAIT_S seconds. A dockerd that never answers fails this script loudly, with the
# tail of its log, so CI shows why instead of a hundred "connection refused" test failures.
# Idempotent: run it as often as you like.
set -euo pipefail
exec </dev/null

readonly LOG_FILE="${NEMOCLAW_DOCKERD_LOG:-/var/log/nemoclaw-dockerd.log}"
readonly WAIT_S="${NEMOCLAW_DOCKERD_WAIT_S:-60}"
readonly SOCKET="/var/run/docker.sock"

say() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() {
    if command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1; then
        return 0
    fi
    # No CLI (or a CLI that hangs): ask the socket directly. Only meaningful for the default socket.
    if [[ -z "${DOCKER_HOST:-}" && -S "$SOCKET" ]] && command -v curl >/dev/null 2>&1; then
        [[ "$(curl -fsS --max-time 5 --unix-socket "$SOCKET" http://localhost/_ping 2>/dev/null)" == "OK" ]]
        return
    fi
    return 1
}

log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        say "last 40 lines of $LOG_FILE:"
        tail -n 40 "$LOG_FILE" >&2 || true
    else
        say "no dockerd log at $LOG_FILE"
    fi
}

STARTED_PID=""

dockerd_running() {
    if [[ -n "$STARTED_PID" ]]; then
        kill -0 "$STARTED_PID" 2>/dev/null  # signal 0: only asks whether our dockerd still exists
        return
    fi
    # Someone else's dockerd that is still starting. An exact-name match only reads the process table.
    pgrep -x dockerd >/dev/null 2>&1
}

start_dockerd() {
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        say "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd for a remote engine"
        exit 1
    fi
    if [[ "$(id -u)" != "0" ]]; then
        say "no Docker engine answers and this is not root: start dockerd (sudo dockerd &) or join the docker group"
        exit 1
    fi
    local dockerd
    dockerd="$(command -v dockerd || echo /usr/sbin/dockerd)"  # a PATH without /usr/sbin still finds it
    if [[ ! -x "$dockerd" ]]; then
        say "dockerd is not installed: apt-get install -y docker.io (scripts/test.sh does this for you)"
        exit 1
    fi
    if dockerd_running; then
        say "a dockerd process exists but does not answer yet; waiting for it instead of starting a second one"
        return
    fi
    mkdir -p "$(dirname "$LOG_FILE")"
    say "starting dockerd in the background (log: $LOG_FILE)"
    # setsid + nohup: the daemon must outlive this script and the CI step's process group.
    setsid nohup "$dockerd" >>"$LOG_FILE" 2>&1 </dev/null &
    STARTED_PID=$!
    disown || true
}

wait_for_engine() {
    local deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        if engine_answers; then
            return 0
        fi
        if ! dockerd_running && ! engine_answers; then
            say "dockerd exited before answering"
            log_tail
            exit 1
        fi
        sleep 1
    done
    say "no Docker engine answered within ${WAIT_S}s"
    log_tail
    if [[ -n "$STARTED_PID" ]]; then
        # Ours and useless: stop it so that a re-run starts a fresh one instead of waiting on this one.
        kill "$STARTED_PID" 2>/dev/null || true
    fi
    exit 1
}

main() {
    if engine_answers; then
        say "Docker engine answers; nothing to do"
        return 0
    fi
    start_dockerd
    wait_for_engine
    say "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

main "$@"
