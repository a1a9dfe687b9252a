"""The application's side of tests/test_sweep_concurrency.py: a separate process (multiprocessing)
that rewrites, deletes, re-creates, PEXPIREs and turns into hashes the same session keys a sweep is
working on.

Every change is one Lua call that also returns what the key held just before (type, value, PTTL),
atomically. The writer logs each change as a JSON line: its sequence number, the key, the op, the
value it wrote (with a per-key version counter) and that prior state. Any difference between what
the writer left and what it found next time was made by someone else: the sweep.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass

import redis

HOUR_MS = 3_600_000
# Ages that are far from the sweep's 24 h line, so the test's own duration cannot move a session across it.
AGE_MS = {"fresh": 1 * HOUR_MS, "stale": 30 * HOUR_MS}
TTL_MS = 20 * HOUR_MS  # long enough that nothing expires by itself during a test

# op -> (Lua op, age of the session written); ops without an age write no string value
OPS: dict[str, tuple[str, str | None]] = {
    "stale": ("set", "stale"),  # the sweep deletes it
    "stale_no_ttl": ("set_no_ttl", "stale"),  # the sweep deletes it (expired, no TTL)
    "fresh": ("set", "fresh"),  # the sweep leaves it alone
    "fresh_no_ttl": ("set_no_ttl", "fresh"),  # the sweep gives it a TTL
    "rewrite_stale": ("rewrite", "stale"),  # SET KEEPTTL: a new version, same TTL
    "rewrite_fresh": ("rewrite", "fresh"),
    "delete": ("delete", None),
    "pexpire": ("pexpire", None),  # a TTL, value unchanged (no-op on a missing key)
    "hash": ("hash", None),  # the key becomes a hash: not a session any more
}

# KEYS[1] the session; ARGV: op, value, TTL ms, createdAt, version. Reply: {type, value or nil, PTTL}.
CHANGE = """
local key, op = KEYS[1], ARGV[1]
local kind = redis.call('TYPE', key)['ok']
local before = false
if kind == 'string' then before = redis.call('GET', key) end
local pttl = redis.call('PTTL', key)
if op == 'set' then
  redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
elseif op == 'set_no_ttl' then
  redis.call('SET', key, ARGV[2])
elseif op == 'rewrite' then
  redis.call('SET', key, ARGV[2], 'KEEPTTL')
elseif op == 'delete' then
  redis.call('DEL', key)
elseif op == 'pexpire' then
  redis.call('PEXPIRE', key, ARGV[3])
elseif op == 'hash' then
  redis.call('DEL', key)
  redis.call('HSET', key, 'createdAt', ARGV[4], 'version', ARGV[5])
end
return {kind, before, pttl}
"""


@dataclass(frozen=True)
class Step:
    op: str
    key: int
    pause_us: int = 0


def key_name(i: int) -> str:
    return f"session:{i:02d}"


def session_value(key: str, version: int, seq: int, created_ms: int) -> bytes:
    doc = {"createdAt": created_ms, "organisationId": "org-a", "userId": key, "version": version, "seq": seq}
    return json.dumps(doc, separators=(",", ":")).encode()


def connect(url: str, cluster: bool):
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=10)
    return redis.Redis.from_url(url, socket_timeout=10)


def run(url, cluster, seed, schedule, log_path, ready, stop, progress) -> None:
    """Seed (a list of Steps), set `ready`, then repeat `schedule` until `stop`; `progress` holds the
    sequence number of the last change, so the test can wait for the writer to move on."""
    client = connect(url, cluster)
    change = client.register_script(CHANGE)
    versions: dict[str, int] = defaultdict(int)
    seq = 0
    with open(log_path, "w") as log:

        def apply(step: Step) -> None:
            nonlocal seq
            seq += 1
            key = key_name(step.key)
            versions[key] += 1
            lua_op, age = OPS[step.op]
            created = int(time.time() * 1000) - AGE_MS[age or "fresh"]
            value = session_value(key, versions[key], seq, created) if age else b""
            args = [lua_op, value, TTL_MS, created, versions[key]]
            kind, before, pttl = change(keys=[key], args=args)
            entry = {
                "seq": seq,
                "key": key,
                "op": step.op,
                "version": versions[key],
                "value": value.decode() if age else None,
                "prior": [kind.decode(), before.decode() if before is not None else None, pttl],
            }
            log.write(json.dumps(entry) + "\n")
            progress.value = seq

        for step in seed:
            apply(step)
        ready.set()
        while not stop.is_set():
            for step in schedule:
                apply(step)
                if step.pause_us:
                    time.sleep(step.pause_us / 1e6)
                if stop.is_set():
                    break
    client.close()
