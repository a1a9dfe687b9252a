"""The runbook's health checks and Monitoring thresholds, as one job.

The run fails only when Redis cannot be asked (down, auth refused). Thresholds that are
crossed make the summary's level `warning` or `critical`, with the reasons.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from jobs.health_rules import aof_rewrite_state, collect_figures, evaluate

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
        aof_rewrite, problem = aof_rewrite_state(client, ctx.settings.aof_guard_note, ctx.store)
        if problem:
            verdict.flag("warning", problem)
    return {
        "level": verdict.level,
        "reasons": verdict.reasons,
        **figures,
        "slowlog": slow,
        "aof_rewrite": aof_rewrite,
    }


def _ping_ms(url: str, client) -> float:
    from redis_maint.redis_conn import call

    samples = []
    for _ in range(PING_SAMPLES):
        t0 = time.perf_counter()
        call(url, client.ping)
        samples.append((time.perf_counter() - t0) * 1000)
    return round(sorted(samples)[len(samples) // 2], 3)


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
