"""The `session-sweep` job: delete stale sessions, give sessions without a TTL the one they should
have, and report unreadable ones, replacing the runbook's `redis-cli keys` loops.

Parameters (from `redis-maint sessions sweep`): `older_than` ("12h") tightens the stale threshold
for this run; `delete_unreadable` (true) also deletes sessions with no usable createdAt.
An `older_than` below `max_age` deletes live sessions (it logs users out): the CLI asks for --yes
after a dry pass (`logs_users_out`, `plan_for`); the job itself, and so the daemon, does not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field

from config.types import Duration, JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs import session_runs
from jobs.base import Job, JobContext, Params
from redis_maint.durations import format_duration

if TYPE_CHECKING:
    from config.schema import Settings
    from redis_maint import sessions


class SessionSweepSettings(JobSettings):
    schedule: ScheduleField = schedule_default("*/15 * * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=10), description="the run fails once it has run this long"
    )
    max_age: PositiveDuration = Field(
        default=timedelta(hours=24),
        description="session lifetime (the session TTL): older sessions are stale, and a session "
        "without TTL is given createdAt + max_age",
    )
    future_skew: Duration = Field(
        default=timedelta(minutes=5),
        description="a createdAt further than this in the future makes the session unreadable",
    )
    memory_pressure: bool = Field(
        default=False,
        description="when used_memory/maxmemory exceeds pressure_ratio, sweep with pressure_max_age",
    )
    pressure_ratio: float = Field(
        default=0.90, gt=0, le=1, description="used_memory/maxmemory above which memory is under pressure"
    )
    pressure_max_age: PositiveDuration = Field(
        default=timedelta(hours=12), description="stale threshold under memory pressure (the runbook's 12h)"
    )


def plan_for(
    settings: Settings, s: SessionSweepSettings, params: SweepParams, dry_run: bool, stale_after: timedelta
) -> sessions.Plan:
    """The sweep this run does: stale after `stale_after`, TTL repairs to createdAt + max_age."""
    from redis_maint import sessions

    return session_runs.plan(
        settings.sessions,
        sessions.Mode.SWEEP,
        dry_run,
        lifetime_ms=_ms(s.max_age),
        stale_after_ms=_ms(stale_after),
        future_skew_ms=_ms(s.future_skew),
        delete_unreadable=params.delete_unreadable,
    )


class SweepParams(Params):
    older_than: PositiveDuration | None = Field(
        default=None, description="stale threshold for this run instead of max_age"
    )
    delete_unreadable: bool = Field(
        default=False, description="also delete sessions with no usable createdAt"
    )


def logs_users_out(s: SessionSweepSettings, params: SweepParams) -> bool:
    """True when this run's threshold is below the session lifetime: it would delete live sessions."""
    return params.older_than is not None and params.older_than < s.max_age


def run(ctx: JobContext) -> dict[str, Any]:
    s: SessionSweepSettings = ctx.job_settings
    params: SweepParams = ctx.params
    older_than = params.older_than
    pressure = _pressure(ctx, s, override=older_than is not None)
    stale_after = older_than or (s.pressure_max_age if pressure.get("applied") else s.max_age)
    plan = plan_for(ctx.settings, s, params, ctx.dry_run, stale_after)
    summary = session_runs.run_plan(ctx, plan)
    summary["max_age"] = format_duration(s.max_age)
    summary["stale_after"] = format_duration(stale_after)
    summary["memory_pressure"] = pressure
    return summary


def _pressure(ctx: JobContext, s: SessionSweepSettings, override: bool) -> dict[str, Any]:
    if not s.memory_pressure:
        return {"enabled": False}
    from redis_maint import sessions

    ratio = sessions.pressure_ratio(ctx.redis(), ctx.settings.redis_url, ctx.settings.redis_timeout)
    over = ratio is not None and ratio > s.pressure_ratio
    if over and not override:
        ctx.log.warning("memory pressure: sweeping with pressure_max_age", extra={"ratio": ratio})
    return {"enabled": True, "ratio": ratio, "threshold": s.pressure_ratio, "applied": over and not override}


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


JOB = Job(
    name="session-sweep",
    scope="deployment",  # once per slot across every sidecar
    description="delete stale sessions, repair missing TTLs, report unreadable sessions",
    settings_model=SessionSweepSettings,
    run=run,
    params_model=SweepParams,
)
