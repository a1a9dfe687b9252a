#!/usr/bin/env bash
# Install what the project needs from Debian's packages, only when it is missing.
#   system-deps.sh python   venv support for python3
#   system-deps.sh redis    redis-server (tests and demo start their own)
#   system-deps.sh compose  docker-compose (the compose file's validation test and make test-e2e)
#   system-deps.sh chromium headless Chromium (the report test renders the auditor's page; make demo's PNG)
#   system-deps.sh postgresql  PostgreSQL binaries (the history tests initdb their own cluster; none is started)
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
    chromium)
      command -v chromium >/dev/null || apt_install chromium
      ;;
    postgresql)
      # The tests initdb their own clusters on free ports: Debian's main cluster is not created
      # (create_main_cluster = false before the server package goes in), so nothing is started.
      if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        apt_install postgresql-common
        sed -i -E 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
          /etc/postgresql-common/createcluster.conf
        apt_install postgresql
      fi
      ;;
    *)
      echo "system-deps: unknown component $what" >&2
      exit 2
      ;;
  esac
done
