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
    replica_lag_warning: PositiveDuration = Field(
        default=timedelta(seconds=10),
        description="a replica that last heard from its primary (or ACKed) longer ago than this warns",
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.redis_conn import call

    client = ctx.node_redis()  # the node beside this sidecar (node_url), else redis_url's
    url = ctx.settings.node_redis_url
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
    replication = _replication(info, verdict, s)
    sentinel = (
        _sentinel(ctx, info, verdict, s) if ctx.settings.redis_url.startswith("redis+sentinel://") else None
    )
    aof_rewrite = None
    if figures["persistence"]["aof_enabled"] == 1:
        aof_rewrite, problem = aof_rewrite_state(client, ctx.settings.aof_guard_note, ctx.store)
        if problem:
            verdict.flag("warning", problem)
    archive = _archive(ctx, client, verdict) if ctx.settings.archive.enabled else None
    return {
        "level": verdict.level,
        "reasons": verdict.reasons,
        **figures,
        "slowlog": slow,
        "aof_rewrite": aof_rewrite,
        "replication": replication,
        **({"sentinel": sentinel} if sentinel is not None else {}),
        **({"archive": archive} if archive is not None else {}),
    }


def _archive(ctx: JobContext, client, verdict) -> dict[str, Any]:
    """With archive.enabled: Redis writes #TS annotations (a restore to a time needs them), and the lag."""
    from redis_maint.archive.service import timestamps_enabled
    from redis_maint.archive.state import ArchiveState
    from redis_maint.archive.status import lag_seconds
    from redis_maint.timeutil import utcnow

    stamped = timestamps_enabled(client)
    if not stamped and not ctx.settings.archive.configure_redis:
        verdict.flag(
            "warning",
            "aof-timestamp-enabled is no: the AOF archive cannot be restored to a time; add "
            "`aof-timestamp-enabled yes` to redis.conf or set archive.configure_redis = true",
        )
    state = ArchiveState(ctx.store, ctx.settings.instance)
    lag = lag_seconds(state.generations(), utcnow())
    current = state.current()
    return {
        "timestamps": stamped,
        "generation": current.generation if current else None,
        "lag_s": None if lag is None else round(lag, 3),
    }


def _replication(info: dict[str, Any], verdict, s: HealthSettings) -> dict[str, Any]:
    """The runbook's "Replication Status" (`INFO replication`) of this node, judged."""
    role = {"master": "primary", "slave": "replica"}.get(info.get("role"), info.get("role"))
    out: dict[str, Any] = {"role": role, "offset": info.get("master_repl_offset")}
    if role == "primary":
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and "ip" in v]
        out["connected_replicas"] = int(info.get("connected_slaves", 0))
        out["replicas"] = [
            {
                "address": f"{r['ip']}:{r['port']}",
                "state": r.get("state"),
                "lag_bytes": max(int(info.get("master_repl_offset", 0)) - int(r.get("offset", 0)), 0),
                "ack_lag_s": r.get("lag"),
            }
            for r in replicas
        ]
        return out
    link = info.get("master_link_status")
    last_io = info.get("master_last_io_seconds_ago")
    out.update(
        primary=f"{info.get('master_host')}:{info.get('master_port')}",
        link=link,
        last_io_s=last_io,
        link_down_s=info.get("master_link_down_since_seconds"),
        offset=info.get("slave_repl_offset"),
    )
    if link != "up":
        verdict.flag("critical", f"this replica's link to its primary {out['primary']} is {link}")
    elif last_io is not None and last_io > s.replica_lag_warning.total_seconds():
        verdict.flag("warning", f"this replica last heard from its primary {last_io}s ago")
    return out


def _sentinel(ctx: JobContext, info: dict[str, Any], verdict, s: HealthSettings) -> dict[str, Any]:
    """The primary and replicas Sentinel knows, each node's lag and link, and where this node stands."""
    from redis_maint.errors import RedisUnavailableError
    from redis_maint.topology import sentinel

    try:
        view = sentinel.describe(ctx.settings.redis_url, ctx.settings.redis_timeout)
    except RedisUnavailableError as exc:
        verdict.flag("critical", f"Sentinel: {exc}")
        return {"error": str(exc)}
    out = view.to_json()
    if not view.primary.healthy:
        verdict.flag("critical", f"primary {view.primary.address}: {view.primary.problem}")
    fit = 0
    for node in view.replicas:
        problem = sentinel.replica_lag_problem(node, s.replica_lag_warning)
        if problem:
            verdict.flag("warning", f"replica {node.address}: {problem}")
        else:
            fit += 1
    if not fit:
        verdict.flag("warning", "no healthy replica: Sentinel has nowhere to fail over to")
    if view.sentinels_answering < view.sentinels_configured:
        verdict.flag(
            "warning",
            f"{view.sentinels_configured - view.sentinels_answering} of {view.sentinels_configured} Sentinels did not answer",
        )
    mine = view.find(info.get("run_id"))
    out["node"] = None if mine is None else {"address": mine.address, "role": mine.role}
    if mine is None:
        verdict.flag(
            "warning", f"this node (run id {info.get('run_id')}) is not among the nodes Sentinel knows"
        )
    return out


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
    scope="node",  # once per slot for each Redis node, by the sidecar beside it
    description="the runbook's health checks and monitoring thresholds",
    settings_model=HealthSettings,
    run=run,
)
