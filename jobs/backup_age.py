"""The stale-backup guard: fails when the newest complete backup is older than the RPO.

A backup that silently stops happening produces no event of its own, so this small job
turns "nothing happened" into a failed run: history shows it, the run path notifies
(`backup_stale`) and notifies again on recovery, and the metrics count it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from redis_maint.errors import JobFailedError
from redis_maint.timeutil import isoformat, utcnow


class BackupAgeSettings(JobSettings):
    schedule: ScheduleField = schedule_default("*/15 * * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=1), description="the run fails once it has run this long"
    )
    rpo: PositiveDuration = Field(
        default=timedelta(hours=26),
        description="the job fails (and notifies) when the newest complete backup is older than this",
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.history import backup_facts  # sqlalchemy: only when a run needs it

    rpo = ctx.job_settings.rpo
    facts = backup_facts.newest(ctx.store, ctx.settings.instance)
    summary: dict[str, Any] = {"rpo_s": int(rpo.total_seconds()), "instance": ctx.settings.instance}
    if facts.created_at is None:
        return _no_backup(ctx, summary)
    created = datetime.fromtimestamp(facts.created_at, UTC)
    age = utcnow() - created
    summary.update(backup_id=facts.backup_id, created_at=isoformat(created), age_s=int(age.total_seconds()))
    if age > rpo:
        raise JobFailedError(
            f"the newest complete backup ({facts.backup_id}, {isoformat(created)}) is {_hours(age)} old, "
            f"over the RPO of {_hours(rpo)}; check `redis-maint history --job backup` and run "
            "`redis-maint run backup`",
            summary,
        )
    return summary


def _no_backup(ctx: JobContext, summary: dict[str, Any]) -> dict[str, Any]:
    from redis_maint.history.outcomes import last_outcome

    # A fresh install has no backup until the first one finishes: not stale yet.
    if last_outcome(ctx.store, "backup") is None:
        return {**summary, "backup_id": None, "note": "waiting for the first backup run"}
    raise JobFailedError(
        f"no complete backup of instance {ctx.settings.instance!r} in the catalog; "
        "check `redis-maint history --job backup` and run `redis-maint run backup`",
        summary,
    )


def _hours(td: timedelta) -> str:
    return f"{td.total_seconds() / 3600:.1f}h"


JOB = Job(
    name="backup-age",
    scope="deployment",  # once per slot across every sidecar
    description="fails when the newest complete backup is older than jobs.backup_age.rpo",
    settings_model=BackupAgeSettings,
    run=run,
)
