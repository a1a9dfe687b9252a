"""A key prefix that grew: this run's `keys big` prefixes against the previous diagnose run's.

A session store that fills up usually has a prefix (or an organisation) that grew. A prefix whose
key count or bytes grew by the factor (3x) or more is a finding. When a sample was cut short by
its time budget, counts are scaled to the whole keyspace (dbsize / scanned) before comparing.
"""

from __future__ import annotations

from typing import Any

from redis_maint.incident import findings as F
from redis_maint.incident.findings import Finding


def estimate(keys_part: dict[str, Any] | None, dbsize: int | None) -> dict[str, dict[str, Any]]:
    """prefix -> {keys, bytes, estimated}, scaled up (and `estimated`) when the sample was incomplete."""
    if not keys_part or not keys_part.get("available"):
        return {}
    scale, estimated = 1.0, False
    scanned = keys_part.get("scanned") or 0
    if not keys_part.get("complete", True) and scanned and dbsize:
        scale, estimated = max(dbsize / scanned, 1.0), True
    return {
        str(p["prefix"]): {
            "keys": float(p.get("keys") or 0) * scale,
            "bytes": float(p.get("bytes") or 0) * scale,
            "estimated": estimated,
        }
        for p in keys_part.get("by_prefix") or []
    }


def compare(
    before: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]], *, factor: float, since: str
) -> tuple[list[dict[str, Any]], list[Finding]]:
    rows, found = [], []
    for prefix, cur in now.items():
        old = before.get(prefix)
        if not old:
            continue
        grew = {
            what: round(cur[what] / old[what], 1)
            for what in ("keys", "bytes")
            if old[what] > 0 and cur[what] > 0
        }
        estimated = bool(old.get("estimated") or cur.get("estimated"))
        rows.append(
            {
                "prefix": prefix,
                "keys_before": round(old["keys"]),
                "keys_now": round(cur["keys"]),
                "growth": grew,
                "estimated": estimated,
            }
        )
        if any(g >= factor for g in grew.values()):
            found.append(
                Finding(
                    "warning",
                    "memory.prefix_grew",
                    f"prefix {prefix!r} grew {max(grew.values())}x since the diagnose run of {since} "
                    f"({round(old['keys']):,} -> {round(cur['keys']):,} keys, "
                    f"{round(old['bytes']):,} -> {round(cur['bytes']):,} bytes"
                    + ("; scaled up from a scan cut short by its time budget)" if estimated else ")"),
                    F.MEMORY,
                    (_keys_big(prefix), F.SWEEP_DRY),
                    "A prefix that grows this fast fills maxmemory and makes Redis evict sessions; find who "
                    "writes it (`sessions count --by-org` for sessions).",
                    part="memory",
                )
            )
    return rows, found


def _keys_big(prefix: str) -> str:
    """`keys big` on that prefix; the "(no prefix)" and "(other)" buckets are not patterns."""
    import shlex

    if prefix.startswith("("):
        return "redis-maint keys big"
    return "redis-maint keys big --pattern " + shlex.quote(f"{prefix}*")
