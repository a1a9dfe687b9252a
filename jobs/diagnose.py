"""The `diagnose` job: the runbook's Incident Response in one read-only run (`redis-maint diagnose`).

Parts gather what an operator would type by hand, each within its own time bound, side by side
(redis_maint/incident/): reachability first with the Redis container, then the host, memory,
persistence, latency and load (when Redis answers INFO) or the data files (when it does not run).
The health job's thresholds (jobs/health_rules.py, with `[jobs.health]`'s values) judge the figures;
a prefix that grew is found against the previous diagnose run. The summary is the report:
`{level, verdict: [findings, critical first], parts: {name: {status, reason, duration_s, ...}}, duration_s}`.

The run succeeds whenever the diagnosis was made, whatever it found (`level` says how bad);
it fails only when diagnose itself could not run. Never scheduled. Its lease is its own
(leases are per job), so a backup or sweep in progress never blocks it, and it blocks none.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from config.types import OnDemandSettings, PositiveDuration
from jobs.base import Job, JobContext
from jobs.health_rules import aof_rewrite_state, collect_figures, evaluate

# INFO answered: the parts that read it run; Redis not running: the data files are looked at.
ANSWERS_INFO = ("ok", "loading", "misconf")
NOT_RUNNING = ("refused", "unreachable")


class DiagnoseSettings(OnDemandSettings):
    """diagnose runs only from `redis-maint diagnose`."""

    timeout: PositiveDuration = Field(
        default=timedelta(minutes=3), description="the run fails once it has run this long"
    )
    redis_container: str = Field(
        default="redis",
        description="the Redis container's name, or its compose service (infra/redis/docker-compose.yml: "
        "redis); empty: do not look at a container",
    )
    part_timeout: PositiveDuration = Field(
        default=timedelta(seconds=5),
        description="each part's time bound (PING, INFO, SLOWLOG, the Docker engine, the host)",
    )
    keys_budget: PositiveDuration = Field(
        default=timedelta(seconds=3),
        description="how long the memory part samples key sizes (keys big) before it reports what it has",
    )
    keys_samples: int = Field(default=5, ge=1, description="MEMORY USAGE … SAMPLES for the key sizes")
    check_timeout: PositiveDuration = Field(
        default=timedelta(seconds=60),
        description="time bound of the data-files check (redis-check-aof/rdb in a container) when Redis is down",
    )
    log_lines: int = Field(default=100, ge=1, le=10_000, description="container log lines in the report")
    growth_factor: float = Field(
        default=3.0, gt=1, description="a key prefix whose keys or bytes grew this many times is a finding"
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.incident.findings import level, ranked
    from redis_maint.incident.parts import run_parts

    s: DiagnoseSettings = ctx.job_settings
    t0 = time.monotonic()
    previous = ctx.store.last(ctx.job.name, status="succeeded")
    ctx.progress.start(None, "diagnose", "items")
    try:
        first = run_parts(_first_parts(ctx, s), cancel=ctx.cancel, progress=ctx.progress)
        reach = first["reachability"].shared
        ctx.checkpoint()
        second = run_parts(_second_parts(ctx, s, reach, previous), cancel=ctx.cancel, progress=ctx.progress)
    finally:
        ctx.progress.finish()
    results = {**first, **second}
    found = [f for r in results.values() for f in r.findings]
    found += _thresholds(ctx, results, reach)
    growth, grew = _growth(results.get("memory"), previous, s.growth_factor)
    found += grew
    parts = {name: r.to_json() for name, r in results.items()}
    if growth is not None:
        parts["memory"]["growth"] = growth
    verdict = ranked(found)
    return {
        "level": level(verdict),
        "verdict": [f.to_json() for f in verdict],
        "parts": parts,
        "duration_s": round(time.monotonic() - t0, 3),
    }


def _first_parts(ctx: JobContext, s: DiagnoseSettings) -> list:
    from redis_maint.incident import container, reachability
    from redis_maint.incident.parts import Part

    bound = s.part_timeout.total_seconds()
    # PING's own timeout is inside the part's bound, so an unresponsive Redis is named as such.
    ping_timeout = min(ctx.settings.redis_timeout.total_seconds(), bound * 0.8)
    docker_url = ctx.settings.docker.url
    return [
        Part(
            "reachability", lambda p: reachability.check(p, ctx.settings.node_redis_url, ping_timeout), bound
        ),
        Part(
            "container",
            lambda p: container.check(
                p, docker_url, s.redis_container, log_lines=s.log_lines, timeout_s=bound * 0.8
            ),
            bound * 2,  # `docker stats` waits about a second for its second reading
        ),
    ]


def _second_parts(ctx: JobContext, s: DiagnoseSettings, reach: dict[str, Any], previous: Any) -> list:
    from redis_maint.incident import datafiles, host, load, memory, persistence
    from redis_maint.incident.parts import Part

    url, bound = ctx.settings.node_redis_url, s.part_timeout.total_seconds()
    info, state = reach.get("info"), reach.get("state")
    parts = [Part("host", lambda p: host.check(p, ctx.settings.data_dir, info), bound)]
    if info is not None:
        keys_budget = s.keys_budget.total_seconds()
        critical = ctx.settings.job("health").memory_critical
        note, store = ctx.settings.aof_guard_note, ctx.store
        parts += [
            Part(
                "memory",
                lambda p: memory.check(
                    p,
                    url,
                    info,
                    timeout_s=bound * 0.8,
                    keys_budget_s=keys_budget,
                    samples=s.keys_samples,
                    critical_ratio=critical,
                ),
                bound + keys_budget,
            ),
            Part(
                "persistence",
                lambda p: persistence.check(
                    p, url, info, timeout_s=bound * 0.8, guard=lambda c: aof_rewrite_state(c, note, store)
                ),
                bound,
            ),
            Part(
                "load",
                lambda p: load.check(p, url, info, timeout_s=bound * 0.8, since_epoch=_since(previous)),
                bound,
            ),
        ]
    elif state in NOT_RUNNING:
        check_bound = s.check_timeout.total_seconds()
        parts.append(
            Part(
                "datafiles",
                lambda p: datafiles.check(
                    p,
                    ctx.settings.data_dir,
                    env=ctx.check_env(),
                    staging=Path(ctx.settings.docker.snapshot_dir) / f"diagnose-{ctx.run_id}",
                    run_id=ctx.run_id,
                    cancel=ctx.cancel,
                    timeout_s=check_bound,
                    restore=_restore_commands(ctx),
                ),
                check_bound + bound,
            )
        )
    return parts


def _since(previous: Any) -> float | None:
    """SLOWLOG entries newer than the previous diagnose run (by time: ids restart with Redis)."""
    return previous.started_at.timestamp() if previous is not None else None


def _restore_commands(ctx: JobContext) -> tuple[str, ...]:
    """The exact restore commands, with the newest complete backup's id when the catalog has one."""
    from redis_maint.history.catalog import Catalog
    from redis_maint.incident.findings import NEWEST_BACKUP, RESTORE

    try:
        newest = Catalog(ctx.store).list(instance=ctx.settings.instance, status="complete", limit=1)
    except Exception:  # the catalog is a convenience here; the commands still say what to do
        newest = []
    if not newest:
        return (NEWEST_BACKUP, RESTORE.format(backup_id="ID"))
    backup_id = newest[0].id
    return (f"redis-maint backups verify {backup_id}", RESTORE.format(backup_id=backup_id))


def _thresholds(ctx: JobContext, results: dict[str, Any], reach: dict[str, Any]) -> list:
    """The health job's thresholds on the figures INFO gave, as findings of the part they concern.
    Persistence statuses are left to the persistence part, which says more about them."""
    from redis_maint.incident.thresholds import findings_from

    info = reach.get("info")
    if info is None or reach.get("state") != "ok":
        return []
    verdict = evaluate(collect_figures(info, reach.get("ping_ms") or 0.0), ctx.settings.job("health"))
    covered = (
        {"persistence"} if results.get("persistence") and results["persistence"].status == "ok" else set()
    )
    return findings_from(verdict.reasons, skip_topics=covered)


def _growth(memory: Any, previous: Any, factor: float) -> tuple[dict[str, Any] | None, list]:
    from redis_maint.incident.growth import compare, estimate

    if memory is None or memory.status != "ok" or previous is None:
        return None, []
    before_part = ((previous.summary or {}).get("parts") or {}).get("memory") or {}
    before = estimate(before_part.get("keys"), before_part.get("dbsize"))
    now = estimate(memory.data.get("keys"), memory.data.get("dbsize"))
    if not before or not now:
        return None, []
    since = previous.started_at.strftime("%Y-%m-%d %H:%M UTC")
    rows, found = compare(before, now, factor=factor, since=since)
    return {"previous_run": previous.id, "factor": factor, "prefixes": rows}, found


JOB = Job(
    name="diagnose",
    description="the runbook's incident response in one read-only run (redis-maint diagnose); never scheduled",
    settings_model=DiagnoseSettings,
    run=run,
)
