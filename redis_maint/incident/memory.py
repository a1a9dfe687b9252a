"""Memory, as the runbook's "Memory Exhaustion" reads it: INFO memory, fragmentation, evictions,
maxmemory and its policy, and the top key prefixes from `keys big`, sampled within a time budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from redis_maint.incident import findings as F
from redis_maint.incident.client import open_client
from redis_maint.incident.parts import Probe

PREFIXES_KEPT = 20
FRAGMENTATION_MIN_BYTES = 64 * 1024 * 1024  # below this the ratio says nothing useful


def check(
    probe: Probe,
    url: str,
    info: dict[str, Any],
    *,
    timeout_s: float,
    keys_budget_s: float,
    samples: int,
    critical_ratio: float,
) -> dict[str, Any]:
    used, maxmem = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    data: dict[str, Any] = {
        "used_memory": used,
        "used_memory_rss": info.get("used_memory_rss"),
        "used_memory_peak": info.get("used_memory_peak"),
        "used_memory_dataset": info.get("used_memory_dataset"),
        "maxmemory": maxmem,
        "ratio": round(used / maxmem, 4) if maxmem else None,
        "maxmemory_policy": info.get("maxmemory_policy"),
        "fragmentation_ratio": info.get("mem_fragmentation_ratio"),
        "evicted_keys": int(info.get("evicted_keys", 0)),
        "dbsize": _dbsize(info),
    }
    if int(info.get("loading", 0)):  # SCAN answers LOADING until the dataset is in: INFO is all there is
        data["keys"] = {
            "available": False,
            "reason": "Redis is loading its dataset; keys are sampled once it has",
        }
    else:
        data["keys"] = _big_keys(probe, url, timeout_s, keys_budget_s, samples)
    _judge(probe, data, critical_ratio)
    return data


def _dbsize(info: dict[str, Any]) -> int:
    return sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))


def _big_keys(probe: Probe, url: str, timeout_s: float, budget_s: float, samples: int) -> dict[str, Any]:
    """The top prefixes from `keys big` (SCAN + MEMORY USAGE), cut short at the budget. Key names
    stay out of the report (a session key names its user): `redis-maint keys big` shows them."""
    try:
        from redis_maint.keyspace import scan_big_keys
    except ImportError:
        return {"available": False, "reason": "`keys big` (redis_maint.keyspace) is not in this version"}
    probe.doing(f"sampling key sizes (keys big, {budget_s:g}s budget)")
    client = open_client(url, timeout_s)
    try:
        report = scan_big_keys(
            client,
            pattern="*",
            top=1,
            samples=samples,
            time_budget_s=budget_s,
            url=url,
            timeout=timedelta(seconds=timeout_s),
        )
    finally:
        client.close()
    found = report.to_json()
    prefixes = sorted(found.get("by_prefix") or [], key=lambda p: -int(p.get("bytes") or 0))
    return {
        "available": True,
        "scanned": found.get("scanned"),
        "complete": bool(found.get("complete", True)),
        "duration_s": found.get("duration_s"),
        "by_prefix": prefixes[:PREFIXES_KEPT],
    }


def _judge(probe: Probe, m: dict[str, Any], critical_ratio: float) -> None:
    add = probe.findings.add
    evicted = m["evicted_keys"]
    if evicted:
        full = m["ratio"] is not None and m["ratio"] >= critical_ratio
        add(
            "critical" if full else "warning",
            "memory.evicting",
            f"Redis has evicted {evicted:,} keys since it started ({m['maxmemory_policy']}): sessions are being dropped"
            + (f", memory at {m['ratio']:.0%} of maxmemory" if m["ratio"] is not None else ""),
            F.MEMORY,
            [
                F.SWEEP_DRY,
                "redis-maint sessions sweep --older-than 12h --yes",
                "redis-maint sessions count --by-org",
            ],
            "Users whose session was evicted must sign in again. Free memory with a tighter sweep now; "
            "raise maxmemory in redis.conf for good. The top prefixes below say what fills it.",
        )
    frag = m["fragmentation_ratio"]
    if frag is not None and m["used_memory"] >= FRAGMENTATION_MIN_BYTES:
        if frag > 1.5:
            add(
                "warning",
                "memory.fragmentation",
                f"memory fragmentation ratio {frag} (RSS {m['used_memory_rss']:,} bytes for {m['used_memory']:,} used)",
                F.MEMORY,
                [F.HEALTH_RUN, "redis-cli MEMORY DOCTOR"],
                "The process holds much more RAM than its data; `activedefrag yes` or a restart returns it.",
            )
        elif frag < 1.0:
            add(
                "warning",
                "memory.swapping",
                f"memory fragmentation ratio {frag}: part of Redis is swapped out",
                F.MEMORY,
                ["free -m", F.SWEEP_DRY],
                "Swapped pages make every command slow; the host part shows the host's memory.",
            )
