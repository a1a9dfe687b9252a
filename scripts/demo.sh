#!/usr/bin/env bash
# make demo: a throwaway Redis configured like infra/redis/redis.conf, sample sessions,
# every registered job once through the CLI, then the history. Everything stays under ./var/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DEMO=var/demo
rm -rf "$DEMO"
mkdir -p "$DEMO/redis"
PORT=$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

redis-server --port "$PORT" --bind 127.0.0.1 --dir "$PWD/$DEMO/redis" --daemonize yes \
  --pidfile "$PWD/$DEMO/redis.pid" --logfile "$PWD/$DEMO/redis.log" \
  --appendonly yes --save "3600 1 300 100 60 10000" --maxmemory 256mb --maxmemory-policy allkeys-lru \
  --slowlog-log-slower-than 10000 --slowlog-max-len 128
cleanup() { redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

export REDIS_MAINT_REDIS_URL="redis://127.0.0.1:$PORT/0"
export REDIS_MAINT_DATA_DIR="$PWD/$DEMO/redis"
export REDIS_MAINT_HISTORY_URL="sqlite:///$DEMO/history.db"
export REDIS_MAINT_TARGET__URI="$DEMO/backups"
# The check image is built locally by `make system-deps` (no registry is reachable here).
export REDIS_MAINT_CHECK_IMAGE="${CHECK_IMAGE:-redis-maint-check:7}"
export REDIS_MAINT_DOCKER__SNAPSHOT_DIR="$PWD/$DEMO/check"

echo "== a throwaway Redis on port $PORT, seeded with sample sessions"
$BIN/python scripts/seed_sessions.py --url "$REDIS_MAINT_REDIS_URL" --count 2000

status=0
for job in $($BIN/redis-maint jobs --json | $BIN/python -c 'import json,sys; print(" ".join(j["name"] for j in json.load(sys.stdin)))'); do
  if [ "$job" = session-delete ]; then
    # An ad hoc job: it needs an organisation (or --all). Delete the smallest organisation's sessions.
    org=$($BIN/redis-maint sessions count --by-org --json | $BIN/python -c 'import json,sys; d=json.load(sys.stdin)["by_org"]; print(min(d, key=d.get))')
    echo "== redis-maint sessions delete --org $org --yes"
    $BIN/redis-maint --log-format text sessions delete --org "$org" --yes --as demo || status=1
    continue
  fi
  echo "== redis-maint run $job"
  $BIN/redis-maint --log-format text run "$job" --as demo || status=1
done
echo
echo "== redis-maint history"
$BIN/redis-maint history
exit $status
