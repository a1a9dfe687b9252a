"""The reference sweeps that bench/sweep.py measures ours against. Each applies our sweep rules:

- a session whose createdAt is not a number, or lies more than the skew in the future, is
  unreadable and left alone;
- createdAt older than the stale age: deleted;
- no TTL and createdAt + lifetime already past: deleted;
- no TTL otherwise: PEXPIREAT createdAt + lifetime (the TTL repair).

They decide "stale" before probing the TTL, so a stale key costs them no PTTL. That ends in the
same keys deleted and the same TTLs set as ours (which probes every key of a batch), with less
work on their side: the comparison leans towards the references, not towards ours.
Like ours, they probe TTLs only when INFO keyspace says some key has none.

Each factory does its setup (SCRIPT LOAD) and returns the sweep itself, which bench/sweep.py
times: setup is outside the timed window for every approach alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

Result = dict[str, object]

# The decision, shared by both Lua references: MGET the batch, decode with cjson, act.
# ARGV[1..6]: now ms, stale age ms, lifetime ms, future skew ms, createdAt field, probe TTL (1/0).
_JUDGE = """
local function judge(keys, a)
  local now, stale_before = tonumber(a[1]), tonumber(a[1]) - tonumber(a[2])
  local lifetime, future_limit = tonumber(a[3]), tonumber(a[1]) + tonumber(a[4])
  local field, probe = a[5], a[6] == '1'
  local stale, expired, repaired, unreadable, doomed = 0, 0, 0, 0, {}
  if #keys == 0 then return 0, 0, 0, 0 end
  local values = redis.call('MGET', unpack(keys))
  for i = 1, #keys do
    local raw = values[i]
    if raw then
      local ok, doc = pcall(cjson.decode, raw)
      local created = nil
      if ok and type(doc) == 'table' then created = doc[field] end
      if type(created) ~= 'number' or created > future_limit then
        unreadable = unreadable + 1
      elseif created < stale_before then
        stale = stale + 1
        doomed[#doomed + 1] = keys[i]
      elseif probe and redis.call('PTTL', keys[i]) == -1 then
        if created + lifetime <= now then
          expired = expired + 1
          doomed[#doomed + 1] = keys[i]
        else
          redis.call('PEXPIREAT', keys[i], string.format('%.0f', math.floor(created) + lifetime))
          repaired = repaired + 1
        end
      end
    end
  end
  if #doomed > 0 then redis.call('UNLINK', unpack(doomed)) end
  return stale, expired, repaired, unreadable
end
"""

# The strongest reference: one call per batch does the SCAN itself, then reads, decides and
# unlinks, so a batch costs one round trip and Redis never waits for the client to parse.
# ARGV[7..9]: cursor, MATCH pattern, COUNT. Reply: next cursor, keys seen, then judge()'s counts.
LUA_SERVER_SCAN = (
    _JUDGE
    + """
local reply = redis.call('SCAN', ARGV[7], 'MATCH', ARGV[8], 'COUNT', ARGV[9])
local stale, expired, repaired, unreadable = judge(reply[2], ARGV)
return {reply[1], #reply[2], stale, expired, repaired, unreadable}
"""
)

# The second reference ("server-side Lua batches over SCAN", with the SCAN on the client): the client SCANs and
# sends one call per chunk of the SCAN's keys, pipelined; Redis does the parsing.
LUA_CLIENT_SCAN = (
    _JUDGE
    + """
local stale, expired, repaired, unreadable = judge(KEYS, ARGV)
return {stale, expired, repaired, unreadable}
"""
)


def rule_args(client: redis.Redis, cfg: dict) -> list:
    """ARGV[1..6] of the scripts: judged by the server's clock, as ours is."""
    seconds, micros = client.time()
    rules = cfg["rules"]
    probe = "1" if has_persistent_keys(client) else "0"
    now = seconds * 1000 + micros // 1000
    return [
        now,
        rules["stale_after_ms"],
        rules["lifetime_ms"],
        rules["future_skew_ms"],
        rules["created_field"],
        probe,
    ]


def has_persistent_keys(client: redis.Redis) -> bool:
    """Some key without a TTL (INFO keyspace keys - expires): the same test ours makes before probing."""
    space = client.info("keyspace").get("db0", {})
    return int(space.get("keys", 0)) - int(space.get("expires", 0)) > 0


def _result(examined: int, counts: list[int]) -> Result:
    stale, expired, repaired, unreadable = counts
    return {"examined": examined, "deleted": stale + expired, "repaired": repaired, "unreadable": unreadable}


def lua_server_scan(client: redis.Redis, cfg: dict) -> Callable[[], Result]:
    sha = client.script_load(LUA_SERVER_SCAN)
    pattern, count = cfg["rules"]["pattern"], cfg["batching"]["scan_count"]

    def run() -> Result:
        args = rule_args(client, cfg)
        cursor, examined, counts = b"0", 0, [0, 0, 0, 0]
        while True:
            reply = client.evalsha(sha, 0, *args, cursor, pattern, count)
            cursor, examined = reply[0], examined + reply[1]
            counts = [c + n for c, n in zip(counts, reply[2:], strict=True)]
            if cursor in (b"0", 0):
                return _result(examined, counts)

    return run


def lua_client_scan(client: redis.Redis, cfg: dict) -> Callable[[], Result]:
    sha = client.script_load(LUA_CLIENT_SCAN)
    pattern, count = cfg["rules"]["pattern"], cfg["batching"]["scan_count"]
    step = cfg["batching"]["act_batch"]

    def run() -> Result:
        args = rule_args(client, cfg)
        cursor, examined, counts = 0, 0, [0, 0, 0, 0]
        while True:
            cursor, keys = client.scan(cursor, match=pattern, count=count)
            examined += len(keys)
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(keys), step):
                chunk = keys[start : start + step]
                pipe.evalsha(sha, len(chunk), *chunk, *args)
            for reply in pipe.execute():
                counts = [c + n for c, n in zip(counts, reply, strict=True)]
            if cursor == 0:
                return _result(examined, counts)

    return run


def naive_loop(client: redis.Redis, cfg: dict) -> Callable[[], Result]:
    """KEYS, then per key GET, parse, and DEL, or PTTL and PEXPIREAT: one round trip per command.

    On a big key space it would take many minutes, so it stops after `naive_seconds` (0: never)
    and reports how far it got. Its keys/s is measured on the same dataset as the others, KEYS
    (which blocks Redis for the whole key space) included."""
    rules, limit = cfg["rules"], cfg["naive_seconds"]

    def run() -> Result:
        t0 = time.monotonic()
        seconds, micros = client.time()
        now = seconds * 1000 + micros // 1000
        stale_before, future_limit = now - rules["stale_after_ms"], now + rules["future_skew_ms"]
        probe = has_persistent_keys(client)
        keys = client.keys(rules["pattern"])
        counts, examined, stopped = [0, 0, 0, 0], 0, None
        for key in keys:
            if limit and time.monotonic() - t0 >= limit:
                stopped = round(time.monotonic() - t0, 1)
                break
            examined += 1
            _naive_one(client, key, now, stale_before, future_limit, rules, probe, counts)
        result = _result(examined, counts)
        result.update(total_keys=len(keys), stopped_after_s=stopped)
        return result

    return run


def _naive_one(client, key, now, stale_before, future_limit, rules, probe, counts) -> None:
    try:
        raw = client.get(key)
    except redis.ResponseError:  # WRONGTYPE: matches the pattern but is not a session
        return
    if raw is None:
        return
    try:
        doc = json.loads(raw)
        created = doc.get(rules["created_field"]) if isinstance(doc, dict) else None
    except ValueError:
        created = None
    if type(created) not in (int, float) or created > future_limit:
        counts[3] += 1
    elif created < stale_before:
        counts[0] += client.delete(key)
    elif probe and client.pttl(key) == -1:
        if created + rules["lifetime_ms"] <= now:
            counts[1] += client.delete(key)
        else:
            counts[2] += client.pexpireat(key, int(created) + rules["lifetime_ms"])
