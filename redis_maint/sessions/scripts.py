"""The Lua scripts of a sweep. All take their keys in KEYS (so Cluster can route them) and do
O(1) work per key, so a call over a few hundred keys stays around a millisecond of server time."""

from __future__ import annotations

import hashlib

# Which of KEYS exist without a TTL (1-based positions). Read-only; the reply is small.
NO_TTL = """
local out = {}
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) == -1 then out[#out + 1] = i end
end
return out
"""

# Which of KEYS exist (1-based positions): tells a key that is not a string (MGET answers nil for it)
# from one that vanished after SCAN. Runs only for the rare nil replies.
EXISTING = """
local out = {}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then out[#out + 1] = i end
end
return out
"""

# Check-and-act, atomic for the whole batch: act on KEYS[i] only if its value is still byte-identical
# to what the sweep read (ARGV[2i-1]), so a session rewritten since the read is never touched.
# ARGV[2i] is 'D' (delete) or an absolute expiry in ms, set with NX so that a TTL the application set
# meanwhile wins. One MGET and one UNLINK for the batch keep the per-key cost low; MGET answers nil
# for a key that is gone or no longer a string, and such keys are left alone.
# Reply: one code per key: 1 deleted, 2 expiry set, 0 untouched (changed, gone or already expiring).
CHECK_AND_ACT = """
local current = redis.call('MGET', unpack(KEYS))
local out, doomed = {}, {}
for i = 1, #KEYS do
  out[i] = 0
  if current[i] == ARGV[2 * i - 1] then
    local op = ARGV[2 * i]
    if op == 'D' then
      doomed[#doomed + 1] = KEYS[i]
      out[i] = 1
    elseif redis.call('PEXPIREAT', KEYS[i], op, 'NX') == 1 then
      out[i] = 2
    end
  end
end
if #doomed > 0 then redis.call('UNLINK', unpack(doomed)) end
return out
"""


def sha1(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


SOURCES: dict[str, str] = {sha1(src): src for src in (NO_TTL, EXISTING, CHECK_AND_ACT)}
NO_TTL_SHA = sha1(NO_TTL)
EXISTING_SHA = sha1(EXISTING)
CHECK_AND_ACT_SHA = sha1(CHECK_AND_ACT)
