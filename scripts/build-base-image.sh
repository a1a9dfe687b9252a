#!/usr/bin/env bash
# Build a local Debian 12 + Python 3 base image, for machines where no registry is reachable.
#
#   scripts/build-base-image.sh [TAG]     # TAG default: redis-maint-base:bookworm
#
# debootstrap --variant=minbase --include=python3,python3-venv,redis-tools bookworm, then `docker import`.
# The Dockerfile takes it as BASE_IMAGE instead of python:3.11-slim-bookworm. Idempotent: an
# image with this TAG whose label matches this recipe is kept. Needs root and a running engine
# (scripts/ensure-dockerd.sh); installs debootstrap from Debian's packages when absent.
set -euo pipefail

TAG="${1:-redis-maint-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LABEL=redis-maint.recipe-sha256
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "build-base-image: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

recipe_hash() { sha256sum "$HERE/build-base-image.sh" | awk '{print $1}'; }

current_label() {
    docker image inspect "$TAG" --format "{{ index .Config.Labels \"$LABEL\" }}" 2>/dev/null || true
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null && return
    say "installing Debian's debootstrap"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

main() {
    docker info >/dev/null 2>&1 || { say "no Docker engine answers; run scripts/ensure-dockerd.sh first"; exit 1; }
    local want
    want="$(recipe_hash)"
    if [ "$(current_label)" = "$want" ]; then
        say "$TAG is up to date"
        exit 0
    fi
    ensure_debootstrap
    ROOTFS="$(mktemp -d /tmp/redis-maint-base.XXXXXX)"
    trap '$SUDO rm -rf "$ROOTFS"' EXIT
    say "debootstrap bookworm into $ROOTFS (about a minute)"
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,redis-tools bookworm "$ROOTFS" "$MIRROR" >/dev/null
    # Keep the image small: package lists, caches and docs are not needed at run time.
    $SUDO rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/usr/share/doc/* \
        "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
    $SUDO tar --numeric-owner -C "$ROOTFS" -c . | docker import \
        --change "LABEL $LABEL=$want" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$TAG" >/dev/null
    say "built $TAG ($(docker image inspect "$TAG" --format '{{.Size}}') bytes)"
}

main "$@"
