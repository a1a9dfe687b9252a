"""Persistence: the last BGSAVE and AOF write, the AOF rewrite state, and whether the AOF guard's
rewrite pause was left behind by a run that is gone (the health job's check, handed in)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis_maint.incident import findings as F
from redis_maint.incident.client import open_client
from redis_maint.incident.parts import Probe

FIELDS = (
    "rdb_last_bgsave_status",
    "rdb_last_save_time",
    "rdb_changes_since_last_save",
    "rdb_bgsave_in_progress",
    "aof_enabled",
    "aof_last_write_status",
    "aof_rewrite_in_progress",
    "aof_rewrite_scheduled",
    "aof_last_bgrewrite_status",
)
STALE_SAVE_S = 24 * 3600

# (client) -> (figures, problem or None): jobs/health_rules.aof_rewrite_state, bound to this run.
GuardCheck = Callable[[Any], tuple[dict[str, Any], str | None]]


def check(
    probe: Probe, url: str, info: dict[str, Any], *, timeout_s: float, guard: GuardCheck
) -> dict[str, Any]:
    data: dict[str, Any] = {key: info.get(key) for key in FIELDS}
    saved = info.get("rdb_last_save_time")
    data["last_save_age_s"] = round(time.time() - int(saved)) if saved else None
    if int(info.get("aof_enabled", 0)):
        probe.doing("reading auto-aof-rewrite-percentage (CONFIG GET) and the AOF guard's note")
        client = open_client(url, timeout_s)
        try:
            data["aof_rewrite_pause"], problem = guard(client)
        finally:
            client.close()
        if problem:
            probe.findings.add(
                "warning",
                "persistence.aof_rewrite_paused",
                "AOF auto-rewrite is paused by a redis-maint run that is no longer alive",
                F.PERSISTENCE,
                ["redis-maint history --job aof-rewrite-restore", F.HEALTH_RUN],
                problem,
            )
    _judge(probe, data)
    return data


def _judge(probe: Probe, p: dict[str, Any]) -> None:
    add = probe.findings.add
    if p["rdb_last_bgsave_status"] not in (None, "ok"):
        add(
            "critical",
            "persistence.bgsave_failed",
            f"the last BGSAVE failed (rdb_last_bgsave_status {p['rdb_last_bgsave_status']})",
            F.CORRUPTION,
            ["df -h", F.SAVE, F.HEALTH_RUN],
            "With stop-writes-on-bgsave-error yes and save points set, Redis answers writes with MISCONF "
            "until a save succeeds. Usual causes: the data dir's disk is full, gone or not writable (see "
            f"the host part), or the fork was refused. Fix it, then `{F.SAVE}` saves again.",
        )
    if p["aof_last_write_status"] not in (None, "ok"):
        add(
            "critical",
            "persistence.aof_write_failed",
            f"the last AOF write failed (aof_last_write_status {p['aof_last_write_status']})",
            F.CORRUPTION,
            ["df -h", F.AOF_CHECK],
            "Redis refuses writes while it cannot append to the AOF; the disk of the data dir is the usual cause.",
        )
    if p["aof_last_bgrewrite_status"] not in (None, "ok"):
        add(
            "warning",
            "persistence.aof_rewrite_failed",
            f"the last AOF rewrite failed (aof_last_bgrewrite_status {p['aof_last_bgrewrite_status']})",
            F.PERSISTENCE,
            ["df -h", F.AOF_CHECK],
            "The AOF keeps growing until a rewrite succeeds.",
        )
    age = p["last_save_age_s"]
    if age is not None and age > STALE_SAVE_S and (p["rdb_changes_since_last_save"] or 0) > 0:
        add(
            "warning",
            "persistence.save_stale",
            f"no successful RDB save for {age // 3600} h, with {p['rdb_changes_since_last_save']:,} changes since",
            F.PERSISTENCE,
            [F.SAVE, "redis-maint history --job backup --limit 5"],
            "The nightly backup runs a BGSAVE; none has succeeded since.",
        )
    if p["aof_rewrite_in_progress"]:
        add("info", "persistence.aof_rewriting", "an AOF rewrite is running now", F.PERSISTENCE, [F.DIAGNOSE])
