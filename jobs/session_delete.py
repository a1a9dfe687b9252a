"""The `session-delete` job: the runbook's ad hoc deletes (`redis-maint sessions delete`), as runs in
history with who asked, the parameters and the counts. Never scheduled.

Parameters: `org` ("ORG_ID") deletes that organisation's sessions and nothing else; `all` (true)
deletes every session (the emergency path). Key layout and batch sizes come from session-sweep.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from config.types import JobSettings, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from jobs.session_sweep import plan_for, run_plan
from redis_maint import sessions
from redis_maint.errors import UsageError
from redis_maint.schedules import Schedule


class SessionDeleteSettings(JobSettings):
    schedule: ScheduleField = schedule_default("off")

    @field_validator("schedule")
    @classmethod
    def _never_scheduled(cls, value: Schedule) -> Schedule:
        if value.kind != "off":
            raise ValueError("session-delete only runs on demand (redis-maint sessions delete); use off")
        return value


def run(ctx: JobContext) -> dict[str, Any]:
    org, everything = ctx.params.get("org"), bool(ctx.params.get("all", False))
    if bool(org) == everything:
        raise UsageError(
            "session-delete needs exactly one of the parameters org or all; "
            "run it as `redis-maint sessions delete --org ORG_ID` or `... --all --yes`"
        )
    sweep_settings = ctx.settings.job("session-sweep")
    mode = sessions.Mode.ALL if everything else sessions.Mode.ORG
    plan = plan_for(sweep_settings, mode, ctx.dry_run, org=str(org) if org else None)
    return run_plan(ctx, sweep_settings, plan)


JOB = Job(
    name="session-delete",
    description="ad hoc session deletes (sessions delete --org / --all); never scheduled",
    settings_model=SessionDeleteSettings,
    run=run,
)
