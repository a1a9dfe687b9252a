"""The runbook's health checks and Monitoring thresholds, as one job.

The run fails only when Redis cannot be asked (down, auth refused). Thresholds that are
crossed make the summary's level `warning` or `critical`, with the reasons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from redis_maint.errors import RedisUnavailableError, SnapshotError

LEVELS = ("ok", "warning", "critical")
PING_SAMPLES = 5


class HealthSettings(JobSettings):
    schedule: ScheduleField = schedule_default("* * * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(seconds=30), description="the run fails once it has run this long"
    )
    ping_warning_ms: float = Field(default=5, description="PING latency warning threshold (ms)")
    ping_critical_ms: float = Field(default=20, description="PING latency critical threshold (ms)")
    memory_warning: float = Field(default=0.70, description="used_memory/maxmemory warning ratio")
    memory_critical: float = Field(default=0.90, description="used_memory/maxmemory critical ratio")
    clients_warning: int = Field(default=100, description="connected_clients warning threshold")
    clients_critical: int = Field(default=500, description="connected_clients critical threshold")
    blocked_warning: int = Field(default=0, description="blocked_clients above this warns")
    blocked_critical: int = Field(default=10, description="blocked_clients above this is critical")
    hit_ratio_warning: float = Field(default=0.90, description="keyspace hit ratio below this warns")
    hit_ratio_critical: float = Field(default=0.70, description="keyspace hit ratio below this is critical")
    hit_ratio_min_lookups: int = Field(
        default=100, description="ignore the hit ratio until this many lookups have happened"
    )
    expected_policy: str = Field(default="allkeys-lru", description="maxmemory-policy the runbook requires")
    require_aof: bool = Field(default=True, description="warn when appendonly is off")
    slowlog_max_entries: int = Field(default=128, description="slowlog entries read per run")


@dataclass
class HealthVerdict:
    level: str = "ok"
    reasons: list[str] = field(default_factory=list)

    def flag(self, level: str, reason: str) -> None:
        self.reasons.append(f"{level}: {reason}")
        if LEVELS.index(level) > LEVELS.index(self.level):
            self.level = level


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.redis_conn import call

    client = ctx.redis()
    url = ctx.settings.redis_url
    s: HealthSettings = ctx.job_settings
    latency_ms = _ping_ms(url, client)
    info = call(url, client.info, "everything")
    previous = ctx.store.last(ctx.job.name, status="succeeded")
    last_id = (previous.summary or {}).get("slowlog", {}).get("last_id") if previous else None
    slow = _slowlog(url, client, last_id, s.slowlog_max_entries)
    figures = collect_figures(info, latency_ms)
    verdict = evaluate(figures, s)
    if slow["new_entries"]:
        verdict.flag("warning", f"{slow['new_entries']} new slowlog entries since the last run")
    aof_rewrite = None
    if figures["persistence"]["aof_enabled"] == 1:
        aof_rewrite, problem = _aof_rewrite(ctx, client)
        if problem:
            verdict.flag("warning", problem)
    return {
        "level": verdict.level,
        "reasons": verdict.reasons,
        **figures,
        "slowlog": slow,
        "aof_rewrite": aof_rewrite,
    }


def _aof_rewrite(ctx: JobContext, client) -> tuple[dict[str, Any], str | None]:
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
    path = ctx.settings.aof_guard_note
    note = read_note(path) if value == "0" else None
    if note is None:
        return {"percentage": value, "paused_by": None}, None
    alive = live_owners(note, ctx.store, active_guards())
    figures = {"percentage": value, "paused_by": note.describe_owners(), "owner_alive": bool(alive)}
    if alive:
        return figures, None
    return figures, (
        f"AOF auto-rewrite is paused ({PARAM} 0) by {note.describe_owners()}, which is no longer running, "
        f"so the AOF grows without bound. The daemon restores {note.original} on start and within "
        f"lock.lease_ttl of the owner's end (history job aof-rewrite-restore); without a daemon run "
        f"`redis-cli CONFIG SET {PARAM} {note.original}` and delete {path}"
    )


def _ping_ms(url: str, client) -> float:
    from redis_maint.redis_conn import call

    samples = []
    for _ in range(PING_SAMPLES):
        t0 = time.perf_counter()
        call(url, client.ping)
        samples.append((time.perf_counter() - t0) * 1000)
    return round(sorted(samples)[len(samples) // 2], 3)


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


def evaluate(figures: dict[str, Any], s: HealthSettings) -> HealthVerdict:
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


def _slowlog(url: str, client, last_id: int | None, max_entries: int) -> dict[str, Any]:
    """New slowlog entries since the last run: ids, durations and command names, never arguments."""
    from redis_maint.redis_conn import call

    entries = call(url, client.slowlog_get, max_entries)
    newest = max((int(e["id"]) for e in entries), default=last_id)
    fresh = [e for e in entries if last_id is None or int(e["id"]) > last_id]
    return {
        "last_id": newest,
        "new_entries": len(fresh),
        "entries": [
            {
                "id": int(e["id"]),
                "at": int(e["start_time"]),
                "duration_us": int(e["duration"]),
                "command": _command_name(e.get("command")),
            }
            for e in fresh[:20]
        ],
    }


def _command_name(command: bytes | str | None) -> str | None:
    if command is None:
        return None
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.split(" ", 1)[0].upper() or None


JOB = Job(
    name="health",
    description="the runbook's health checks and monitoring thresholds",
    settings_model=HealthSettings,
    run=run,
)
