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
first_day=$(date -u +%F)  # the report's range starts here (the demo may cross midnight UTC)
# Every scheduled job once, through the same run path as the daemon.
scheduled=$($BIN/redis-maint jobs --json | $BIN/python -c 'import json,sys; print(" ".join(j["name"] for j in json.load(sys.stdin) if j["schedule"] != "off"))')
for job in $scheduled; do
  echo "== redis-maint run $job"
  $BIN/redis-maint --log-format text run "$job" --as demo || status=1
done

# The ad hoc operations, as an operator runs them: each is a run in the history too.
org=$($BIN/redis-maint sessions count --by-org --json | $BIN/python -c 'import json,sys; d=json.load(sys.stdin)["by_org"]; print(min(d, key=d.get))')
echo "== redis-maint sessions delete --org $org --yes   (the smallest organisation)"
$BIN/redis-maint --log-format text sessions delete --org "$org" --yes --as demo || status=1
newest=$($BIN/redis-maint backups list --status complete --json | $BIN/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "== redis-maint backups verify $newest"
$BIN/redis-maint --log-format text backups verify "$newest" --as demo || status=1
echo "== redis-maint backups keep $newest --reason 'demo: before a change'"
$BIN/redis-maint --log-format text backups keep "$newest" --reason "demo: before a change" --as demo || status=1
rm -rf "$DEMO/restore"
echo "== redis-maint backups restore $newest --target $DEMO/restore"
$BIN/redis-maint --log-format text backups restore "$newest" --target "$PWD/$DEMO/restore" --as demo || status=1
echo
echo "== redis-maint history"
$BIN/redis-maint history

# The auditor's report of the demo, and how a browser renders it (both kept as artefacts).
echo
echo "== redis-maint report --from $first_day --to $(date -u +%F) --out $DEMO/report.html"
$BIN/redis-maint --log-format text report --from "$first_day" --to "$(date -u +%F)" --out "$DEMO/report.html" \
  --as demo || status=1
if command -v chromium >/dev/null; then
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$PWD/$DEMO/chromium-profile" \
    --screenshot="$PWD/$DEMO/report.png" --window-size=1280,2000 "file://$PWD/$DEMO/report.html" \
    >"$DEMO/chromium.log" 2>&1 || status=1
  rm -rf "$DEMO/chromium-profile"
  echo "   rendered by headless Chromium: $DEMO/report.png"
else
  echo "   no chromium here (make system-deps installs it): no $DEMO/report.png"
fi
exit $status
