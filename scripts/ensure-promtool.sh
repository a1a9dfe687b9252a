#!/usr/bin/env bash
# Make `promtool` available (it validates infra/redis/alerts.yml in the tests).
#
#   scripts/ensure-promtool.sh      # idempotent: nothing to do when promtool is on PATH
#
# promtool ships in Debian's `prometheus` package (~19 MB download). Installing the package would
# also install and start a Prometheus server, so only promtool is taken out of the .deb.
set -euo pipefail

DEST="${PROMTOOL_DEST:-/usr/local/bin}"
say() { echo "ensure-promtool: $*" >&2; }

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "promtool not found, and root is needed to install it; run as root or install Debian's prometheus"
    exit 1
fi
work="$(mktemp -d /tmp/redis-maint-promtool.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download prometheus >/dev/null
fi
dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
install -m 0755 usr/bin/promtool "$DEST/promtool"
say "installed $("$DEST/promtool" --version 2>&1 | head -1)"
