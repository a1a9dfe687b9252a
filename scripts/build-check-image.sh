#!/usr/bin/env bash
# Build the local check image from Debian's Redis binaries, without any registry.
#
#   scripts/build-check-image.sh [TAG]      # TAG default: $REDIS_MAINT_CHECK_IMAGE or redis-maint-check:7
#
# The image is a root filesystem made of /usr/bin/redis-server (as /usr/local/bin/redis-server,
# with redis-check-aof and redis-check-rdb as symlinks to it, as in redis:7-alpine), redis-cli,
# /bin/sh (Debian's dash: the check runs both tools in one `sh -c`, as redis:7-alpine's busybox
# sh allows), the libraries `ldd` lists for them and the dynamic loader, loaded with `docker import`.
# It has a `redis` user (uid 999, gid 1000, like redis:7-alpine), /data and /tmp.
#
# Idempotent: an image with this TAG whose content label matches the binaries and this script
# is kept as is. Needs a running engine (scripts/ensure-dockerd.sh) and root (or sudo) to
# install redis-server when absent and to give /data its owner.
set -euo pipefail

TAG="${1:-${REDIS_MAINT_CHECK_IMAGE:-redis-maint-check:7}}"
LABEL=redis-maint.content-sha256
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "build-check-image: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

ensure_binaries() {
    if [ -x /usr/bin/redis-server ] && [ -x /usr/bin/redis-cli ]; then return; fi
    say "installing Debian's redis-server and redis-tools"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
}

content_hash() {
    # The image changes when a binary or this recipe changes, and only then.
    sha256sum "$(readlink -f /usr/bin/redis-server)" "$(readlink -f /usr/bin/redis-cli)" "$(readlink -f /bin/sh)" \
        "$HERE/build-check-image.sh" | awk '{print $1}' | sha256sum | awk '{print $1}'
}

current_label() {
    docker image inspect "$TAG" --format "{{ index .Config.Labels \"$LABEL\" }}" 2>/dev/null || true
}

copy_libs() {
    local root=$1 bin lib
    for bin in /usr/bin/redis-server /usr/bin/redis-cli /bin/sh; do
        # ldd lines: "libx.so => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
        for lib in $(ldd "$bin" | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}'); do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
}

make_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,usr/local/bin,etc,data,tmp}
    cp -L /bin/sh "$root/bin/sh"
    cp -L /usr/bin/redis-server "$root/usr/local/bin/redis-server"
    cp -L /usr/bin/redis-cli "$root/usr/local/bin/redis-cli"
    # redis-server picks its tool mode from argv[0], so symlinks are the tools.
    ln -s redis-server "$root/usr/local/bin/redis-check-aof"
    ln -s redis-server "$root/usr/local/bin/redis-check-rdb"
    copy_libs "$root"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nredis:x:999:1000:redis:/data:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nredis:x:1000:redis\n' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    chown 999:1000 "$root/data"
}

main() {
    command -v docker >/dev/null || { say "docker CLI not found; run scripts/ensure-dockerd.sh first"; exit 1; }
    docker info >/dev/null 2>&1 || { say "no Docker engine answers; run scripts/ensure-dockerd.sh first"; exit 1; }
    ensure_binaries
    local want
    want="$(content_hash)"
    if [ "$(current_label)" = "$want" ]; then
        say "$TAG is up to date (content $want)"
        exit 0
    fi
    local old
    old="$(docker image inspect "$TAG" --format '{{.Id}}' 2>/dev/null || true)"
    ROOTFS="$(mktemp -d /tmp/redis-maint-check-rootfs.XXXXXX)"
    trap 'rm -rf "$ROOTFS"' EXIT
    make_rootfs "$ROOTFS"
    tar --numeric-owner -C "$ROOTFS" -c . | docker import \
        --change "LABEL $LABEL=$want" \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'WORKDIR /data' \
        --change 'CMD ["redis-server"]' \
        - "$TAG" >/dev/null
    # The image this one replaces would linger untagged; drop it unless a container still uses it.
    if [ -n "$old" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
    say "built $TAG ($(docker image inspect "$TAG" --format '{{.Size}}') bytes, content $want)"
}

main "$@"
