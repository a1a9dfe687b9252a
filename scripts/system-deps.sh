#!/usr/bin/env bash
# Install what the project needs from Debian's packages, only when it is missing.
#   system-deps.sh python   venv support for python3
#   system-deps.sh redis    redis-server (tests and demo start their own)
#   system-deps.sh compose  docker-compose (the compose file's validation test and make test-e2e)
set -euo pipefail

updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "system-deps: need root to apt-get install $*; install them and re-run" >&2
    exit 1
  fi
  if [ "$updated" = 0 ]; then
    apt-get update -qq
    updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

for what in "$@"; do
  case "$what" in
    python)
      python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv python3-pip
      ;;
    redis)
      command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools
      ;;
    compose)
      command -v docker-compose >/dev/null || apt_install docker-compose
      ;;
    *)
      echo "system-deps: unknown component $what" >&2
      exit 2
      ;;
  esac
done
