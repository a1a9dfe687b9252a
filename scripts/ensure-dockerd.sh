#!/usr/bin/env bash
# Make a Docker engine answer `docker info`, on a fresh Debian 12 machine or this one.
#
#   scripts/ensure-dockerd.sh        # idempotent: does nothing when an engine already answers
#
# 1. installs Debian's docker.io when dockerd is absent (apt-get update first);
# 2. starts dockerd in the background when no engine answers, logging to $DOCKERD_LOG;
#    storage drivers are tried in order (overlay2, then vfs where overlay mounts are refused);
# 3. waits until `docker info` answers, or fails with the end of the daemon's log.
#
# Environment: DOCKER_HOST is honoured for the check (a remote or rootless engine is used as is).
# DOCKERD_LOG (default /tmp/redis-maint-dockerd.log), DOCKERD_WAIT seconds (default 60).
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/redis-maint-dockerd.log}"
DOCKERD_WAIT="${DOCKERD_WAIT:-60}"

say() { echo "ensure-dockerd: $*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }

# Root runs commands as is; anyone else needs password-less sudo.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

install_docker() {
    if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
        return
    fi
    say "dockerd or docker not found: installing Debian's docker.io"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
}

wait_for_engine() {
    local pid=$1 waited=0
    while [ "$waited" -lt "$DOCKERD_WAIT" ]; do
        if engine_up; then return 0; fi
        # A daemon that exited will never answer: stop waiting for it.
        if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

start_dockerd() {
    local driver=$1 pid
    say "starting dockerd (storage driver $driver), log: $DOCKERD_LOG"
    # setsid: the daemon outlives this script and the make/CI step that ran it.
    $SUDO setsid dockerd --storage-driver="$driver" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    pid=$!
    if wait_for_engine "$pid"; then
        say "engine up ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null))"
        return 0
    fi
    say "dockerd with $driver did not come up; stopping it"
    $SUDO kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

main() {
    if command -v docker >/dev/null 2>&1 && engine_up; then
        say "engine already answers"
        exit 0
    fi
    if [ -n "${DOCKER_HOST:-}" ] && [[ "$DOCKER_HOST" != unix://* ]]; then
        say "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine, or unset DOCKER_HOST"
        exit 1
    fi
    install_docker
    if pgrep -x dockerd >/dev/null 2>&1; then
        say "a dockerd is running but not answering yet; waiting for it"
        if wait_for_engine "$(pgrep -x dockerd | head -1)"; then exit 0; fi
        say "the running dockerd does not answer; see its log"
        exit 1
    fi
    # A dockerd killed hard leaves its pid file, and a new one refuses to start over it.
    if [ -f /var/run/docker.pid ]; then $SUDO rm -f /var/run/docker.pid; fi
    for driver in overlay2 vfs; do
        if start_dockerd "$driver"; then exit 0; fi
    done
    say "no Docker engine could be started; last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
}

main "$@"
