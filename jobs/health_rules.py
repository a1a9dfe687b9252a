"""The runbook's health figures and thresholds, shared by the jobs that judge a Redis by them
(`health` every minute, `diagnose` on demand). Pure functions over INFO, so they are unit-tested
without a server; the thresholds' values are the health job's settings (`[jobs.health]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis_maint.errors import RedisUnavailableError, SnapshotError

if TYPE_CHECKING:
    from redis_maint.history.runs import HistoryStore

LEVELS = ("ok", "warning", "critical")


@dataclass
class HealthVerdict:
    level: str = "ok"
    reasons: list[str] = field(default_factory=list)

    def flag(self, level: str, reason: str) -> None:
        self.reasons.append(f"{level}: {reason}")
        if LEVELS.index(level) > LEVELS.index(self.level):
            self.level = level


def collect_figures(info: dict[str, Any], latency_ms: float) -> dict[str, Any]:
    """The runbook's figures from INFO (pure, so the thresholds can be unit-tested)."""
    used, maxmem = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    return {
        "ping_ms": latency_ms,
        "redis_version": info.get("redis_version"),
        "role": info.get("role"),
        "uptime_s": info.get("uptime_in_seconds"),
        "memory": {
            "used_memory": used,
            "used_memory_peak": int(info.get("used_memory_peak", 0)),
            "maxmemory": maxmem,
            "ratio": round(used / maxmem, 4) if maxmem else None,
            "maxmemory_policy": info.get("maxmemory_policy"),
            "evicted_keys": int(info.get("evicted_keys", 0)),
        },
        "clients": {
            "connected": int(info.get("connected_clients", 0)),
            "blocked": int(info.get("blocked_clients", 0)),
        },
        "keyspace": {
            "hits": hits,
            "misses": misses,
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
            "keys": sum(
                int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
            ),
        },
        "persistence": {
            "aof_enabled": int(info.get("aof_enabled", 0)),
            "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
            "aof_last_write_status": info.get("aof_last_write_status"),
            "aof_last_bgrewrite_status": info.get("aof_last_bgrewrite_status"),
            "rdb_last_save_time": info.get("rdb_last_save_time"),
            "rdb_changes_since_last_save": info.get("rdb_changes_since_last_save"),
        },
    }


def evaluate(figures: dict[str, Any], s: Any) -> HealthVerdict:
    """`s`: the health job's settings (HealthSettings), whose thresholds are the runbook's."""
    v = HealthVerdict()
    _above(v, "PING latency", figures["ping_ms"], s.ping_warning_ms, s.ping_critical_ms, " ms")
    mem = figures["memory"]
    if mem["ratio"] is not None:
        _above(v, "memory used/max", mem["ratio"], s.memory_warning, s.memory_critical, "")
    else:
        v.flag("warning", "maxmemory is not set (config drift: the runbook sets 256mb)")
    if mem["maxmemory_policy"] != s.expected_policy:
        v.flag("warning", f"maxmemory-policy is {mem['maxmemory_policy']}, expected {s.expected_policy}")
    clients = figures["clients"]
    _above(v, "connected clients", clients["connected"], s.clients_warning, s.clients_critical, "")
    _above(v, "blocked clients", clients["blocked"], s.blocked_warning, s.blocked_critical, "")
    ks = figures["keyspace"]
    if ks["hit_ratio"] is not None and ks["hits"] + ks["misses"] >= s.hit_ratio_min_lookups:
        if ks["hit_ratio"] < s.hit_ratio_critical:
            v.flag("critical", f"keyspace hit ratio {ks['hit_ratio']:.2%} < {s.hit_ratio_critical:.0%}")
        elif ks["hit_ratio"] < s.hit_ratio_warning:
            v.flag("warning", f"keyspace hit ratio {ks['hit_ratio']:.2%} < {s.hit_ratio_warning:.0%}")
    p = figures["persistence"]
    if s.require_aof and p["aof_enabled"] != 1:
        v.flag("warning", "appendonly is off (the runbook runs AOF + RDB)")
    for key in ("rdb_last_bgsave_status", "aof_last_write_status"):
        if p[key] not in (None, "ok"):
            v.flag("critical", f"{key} is {p[key]}: Redis may refuse writes (MISCONF)")
    return v


def _above(v: HealthVerdict, what: str, value: float, warn: float, crit: float, unit: str) -> None:
    if value > crit:
        v.flag("critical", f"{what} {value}{unit} > {crit}{unit}")
    elif value > warn:
        v.flag("warning", f"{what} {value}{unit} > {warn}{unit}")


def aof_rewrite_state(client, path: Path, store: HistoryStore | None) -> tuple[dict[str, Any], str | None]:
    """Automatic AOF rewrites paused (percentage 0) by a redis-maint run that is no longer alive?

    The guard's note says who paused them; a pause whose owner still runs is expected (a backup
    or aof-check copying the AOF right now).
    """
    from redis_maint.snapshot.aof_guard import PARAM, active_guards, current_value
    from redis_maint.snapshot.aof_note import live_owners, read_note

    try:
        value = current_value(client)
    except (SnapshotError, RedisUnavailableError) as exc:  # e.g. an ACL without CONFIG GET
        return {"error": str(exc)}, None
    note = read_note(path) if value == "0" else None
    if note is None:
        return {"percentage": value, "paused_by": None}, None
    alive = live_owners(note, store, active_guards())
    figures = {"percentage": value, "paused_by": note.describe_owners(), "owner_alive": bool(alive)}
    if alive:
        return figures, None
    return figures, (
        f"AOF auto-rewrite is paused ({PARAM} 0) by {note.describe_owners()}, which is no longer running, "
        f"so the AOF grows without bound. The daemon restores {note.original} on start and within "
        f"lock.lease_ttl of the owner's end (history job aof-rewrite-restore); without a daemon run "
        f"`redis-cli CONFIG SET {PARAM} {note.original}` and delete {path}"
    )
