"""The `session-delete` job: the runbook's ad hoc deletes (`redis-maint sessions delete`), as runs in
history with who asked, the parameters and the counts. Never scheduled.

Parameters: `org` ("ORG_ID") deletes that organisation's sessions and nothing else; `all` (true)
deletes every session (the emergency path). Key layout and batch sizes come from session-sweep.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from config.types import JobSettings, ScheduleField, schedule_default
from jobs.base import Job, JobContext, Params
from jobs.session_sweep import plan_for, run_plan
from redis_maint import sessions
from redis_maint.schedules import Schedule


class SessionDeleteSettings(JobSettings):
    schedule: ScheduleField = schedule_default("off")

    @field_validator("schedule")
    @classmethod
    def _never_scheduled(cls, value: Schedule) -> Schedule:
        if value.kind != "off":
            raise ValueError("session-delete only runs on demand (redis-maint sessions delete); use off")
        return value


class DeleteParams(Params):
    org: str | None = Field(default=None, description="delete this organisation's sessions")
    all: bool = Field(default=False, description="delete every session")

    @model_validator(mode="after")
    def _exactly_one(self) -> DeleteParams:
        if bool(self.org) == self.all:
            raise ValueError(
                "session-delete needs exactly one of the parameters org or all; "
                "run it as `redis-maint sessions delete --org ORG_ID` or `redis-maint sessions delete --all --yes`"
            )
        return self


def run(ctx: JobContext) -> dict[str, Any]:
    params: DeleteParams = ctx.params
    sweep_settings = ctx.settings.job("session-sweep")
    mode = sessions.Mode.ALL if params.all else sessions.Mode.ORG
    plan = plan_for(sweep_settings, mode, ctx.dry_run, org=params.org)
    return run_plan(ctx, sweep_settings, plan)


JOB = Job(
    name="session-delete",
    description="ad hoc session deletes (sessions delete --org / --all); never scheduled",
    settings_model=SessionDeleteSettings,
    run=run,
    params_model=DeleteParams,
)
