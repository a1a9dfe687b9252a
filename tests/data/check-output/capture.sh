#!/usr/bin/env bash
# Regenerate the real redis-check-aof / redis-check-rdb outputs that tests/test_checkparse.py parses.
# Runs Debian's binaries on the host against files made by a real redis-server, then breaks copies.
#   bash tests/data/check-output/capture.sh      # rewrites *.txt here; cases.json is kept by hand
set -euo pipefail
OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))

mkdir -p "$WORK/src"
redis-server --port "$PORT" --dir "$WORK/src" --appendonly yes --save "" --daemonize yes \
    --logfile "$WORK/redis.log"
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.1; done
for i in $(seq 1 50); do redis-cli -p "$PORT" set "session:$i" "{\"u\":$i}" >/dev/null; done
redis-cli -p "$PORT" bgrewriteaof >/dev/null; sleep 1
redis-cli -p "$PORT" save >/dev/null
for i in $(seq 51 60); do redis-cli -p "$PORT" set "session:$i" "{\"u\":$i}" >/dev/null; done
redis-cli -p "$PORT" incr counter >/dev/null
redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true

# case NAME: a fresh copy in $WORK/NAME, cd'ed into; then `run TOOL ARGS` writes NAME.txt.
fresh() { rm -rf "$WORK/$1"; cp -a "$WORK/src" "$WORK/$1"; cd "$WORK/$1"; CASE=$1; }
run() { local rc=0; "$@" >"$OUT/$CASE.txt" 2>&1 || rc=$?; echo "$CASE exit $rc" >&2; }
AOF=appendonlydir
cd "$WORK/src"
BASE="$(ls $AOF/*.base.rdb | head -1)"
INCR="$(ls $AOF/*.incr.aof | tail -1)"
SIZE=$(stat -c %s "$INCR")

fresh aof-ok; run redis-check-aof $AOF/appendonly.aof.manifest
fresh rdb-ok; run redis-check-rdb dump.rdb
fresh aof-truncated-mid-bulk; truncate -s $((SIZE - 5)) "$INCR"; run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-truncated-mid-line; truncate -s $((SIZE - 26)) "$INCR"; run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-truncated-after-line; truncate -s $((SIZE - 23)) "$INCR"; run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-incr-format-error; printf 'GARBAGE' | dd of="$INCR" bs=1 seek=$((SIZE - 27)) conv=notrunc 2>/dev/null
run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-incr-bad-newline; printf 'Z' | dd of="$INCR" bs=1 seek=$((SIZE - 20)) conv=notrunc 2>/dev/null
run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-multi-without-exec; printf '*1\r\n$5\r\nmulti\r\n*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n' >>"$INCR"
run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-base-flipped; printf 'XX' | dd of="$BASE" bs=1 seek=500 conv=notrunc 2>/dev/null
run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-bad-manifest; echo "fle garbage" >>$AOF/appendonly.aof.manifest; run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-missing-incr; rm "$INCR"; run redis-check-aof $AOF/appendonly.aof.manifest
fresh aof-no-manifest; run redis-check-aof $AOF/nothere.manifest
fresh legacy-ok; cp "$INCR" legacy.aof; run redis-check-aof legacy.aof
fresh legacy-truncated; cp "$INCR" legacy.aof; truncate -s -3 legacy.aof; run redis-check-aof legacy.aof
fresh legacy-empty; : >legacy.aof; run redis-check-aof legacy.aof
fresh rdb-crc; printf '\xff' | dd of=dump.rdb bs=1 seek=300 conv=notrunc 2>/dev/null; run redis-check-rdb dump.rdb
fresh rdb-flipped; printf 'XX' | dd of=dump.rdb bs=1 seek=500 conv=notrunc 2>/dev/null; run redis-check-rdb dump.rdb
fresh rdb-truncated; truncate -s 700 dump.rdb; run redis-check-rdb dump.rdb
fresh rdb-missing; run redis-check-rdb nope.rdb
fresh usage; run redis-check-aof
echo "captured $(ls "$OUT"/*.txt | wc -l) outputs in $OUT" >&2
