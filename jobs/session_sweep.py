"""The `session-sweep` job: delete stale sessions, give sessions without a TTL the one they should
have, and report unreadable ones, replacing the runbook's `redis-cli keys` loops.

Parameters (from `redis-maint sessions sweep`): `older_than` ("12h") tightens the stale threshold
for this run; `delete_unreadable` (true) also deletes sessions with no usable createdAt.
An `older_than` below `max_age` deletes live sessions (it logs users out): the CLI asks for --yes
after a dry pass (`logs_users_out`, `sweep_plan`); the job itself, and so the daemon, does not.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator

from config.types import Duration, JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext, Params
from redis_maint import sessions
from redis_maint.durations import format_duration


class SessionSweepSettings(JobSettings):
    schedule: ScheduleField = schedule_default("*/15 * * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=10), description="the run fails once it has run this long"
    )
    key_pattern: str = Field(default="session:*", description="SCAN MATCH pattern of session keys")
    created_field: str = Field(
        default="createdAt", description="JSON field with the session's creation time (epoch ms)"
    )
    organisation_field: str = Field(
        default="organisationId", description="JSON field with the session's organisation id"
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
    unreadable_samples: int = Field(
        default=5, ge=0, le=100, description="how many unreadable keys the summary names"
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
    scan_count: int = Field(
        default=300, ge=10, le=5000, description="SCAN COUNT: keys Redis examines per SCAN call (~0.4 ms)"
    )
    read_batch: int = Field(
        default=300, ge=1, le=5000, description="keys per MGET (~0.3 ms); a command also stays under 12 KB"
    )
    act_batch: int = Field(
        default=100, ge=1, le=1000, description="keys per atomic check-and-delete script call (~0.4 ms)"
    )
    idle_cpu: bool = Field(
        default=True,
        description="sweep at the lowest CPU priority (SCHED_IDLE), so Redis and its clients always "
        "come first; a host with no idle CPU then slows the sweep down",
    )

    @field_validator("key_pattern", "created_field", "organisation_field")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


def layout(s: SessionSweepSettings) -> sessions.Layout:
    return sessions.Layout(
        pattern=s.key_pattern, created_field=s.created_field, org_field=s.organisation_field
    )


def plan_for(s: SessionSweepSettings, mode: sessions.Mode, dry_run: bool, **overrides: Any) -> sessions.Plan:
    """The settings as a sweep plan; `overrides` are Plan fields this run sets itself."""
    fields: dict[str, Any] = {
        "layout": layout(s),
        "lifetime_ms": _ms(s.max_age),
        "stale_after_ms": _ms(s.max_age),
        "future_skew_ms": _ms(s.future_skew),
    }
    return sessions.Plan(mode=mode, dry_run=dry_run, **{**fields, **overrides})


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


def sweep_plan(
    s: SessionSweepSettings, params: SweepParams, dry_run: bool, stale_after: timedelta
) -> sessions.Plan:
    return plan_for(
        s,
        sessions.Mode.SWEEP,
        dry_run,
        stale_after_ms=_ms(stale_after),
        delete_unreadable=params.delete_unreadable,
    )


def run(ctx: JobContext) -> dict[str, Any]:
    s: SessionSweepSettings = ctx.job_settings
    params: SweepParams = ctx.params
    older_than = params.older_than
    pressure = _pressure(ctx, s, override=older_than is not None)
    stale_after = older_than or (s.pressure_max_age if pressure.get("applied") else s.max_age)
    plan = sweep_plan(s, params, ctx.dry_run, stale_after)
    summary = run_plan(ctx, s, plan)
    summary["max_age"] = format_duration(s.max_age)
    summary["stale_after"] = format_duration(stale_after)
    summary["memory_pressure"] = pressure
    return summary


def run_plan(ctx: JobContext, s: SessionSweepSettings, plan: sessions.Plan) -> dict[str, Any]:
    """Sweep every primary with `plan`, drawing progress and honouring the run's deadline."""

    def on_tick(n: int) -> None:
        ctx.progress.advance(n)
        ctx.checkpoint()

    t0 = time.monotonic()
    try:
        report = sessions.sweep(
            ctx.redis(),
            ctx.settings.redis_url,
            plan,
            batching=sessions.Batching(
                scan_count=s.scan_count, read_batch=s.read_batch, act_batch=s.act_batch
            ),
            timeout=ctx.settings.redis_timeout,
            idle_cpu=s.idle_cpu,
            on_start=lambda total: ctx.progress.start(total, "sessions"),
            on_tick=on_tick,
            sample_limit=s.unreadable_samples,
        )
    finally:
        ctx.progress.finish()
    summary = report.summary(time.monotonic() - t0)
    summary["mode"] = str(plan.mode)
    return summary


def _pressure(ctx: JobContext, s: SessionSweepSettings, override: bool) -> dict[str, Any]:
    if not s.memory_pressure:
        return {"enabled": False}
    ratio = sessions.pressure_ratio(ctx.redis(), ctx.settings.redis_url, ctx.settings.redis_timeout)
    over = ratio is not None and ratio > s.pressure_ratio
    if over and not override:
        ctx.log.warning("memory pressure: sweeping with pressure_max_age", extra={"ratio": ratio})
    return {"enabled": True, "ratio": ratio, "threshold": s.pressure_ratio, "applied": over and not override}


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


JOB = Job(
    name="session-sweep",
    description="delete stale sessions, repair missing TTLs, report unreadable sessions",
    settings_model=SessionSweepSettings,
    run=run,
    params_model=SweepParams,
)
