"""The `audit-checkpoint` job: a checkpoint of the history's evidence chain on the backup target,
daily when no backup wrote one (every backup writes one too).

`audit/checkpoints/<UTC time>.json`: record count, head seq and hash, the chain's first hash, the
instance and the tool's version (redis_maint/audit/checkpoints.py). With `audit.object_lock_mode`
it is written under S3 Object Lock for `audit.object_lock_days`. The summary is the checkpoint, or
`skipped` naming the recent one that already covers the day.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from redis_maint.durations import format_duration


class AuditCheckpointSettings(JobSettings):
    schedule: ScheduleField = schedule_default("45 3 * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=5), description="the run fails once it has run this long"
    )
    fresh_within: PositiveDuration = Field(
        default=timedelta(hours=20),
        description="write nothing when this instance's newest checkpoint (a backup's, say) is younger than this",
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.audit import checkpoints  # sqlalchemy: only when a run needs it

    s: AuditCheckpointSettings = ctx.job_settings
    target = ctx.settings.target.open()
    try:
        age = checkpoints.youngest_age_s(target, ctx.settings.instance)
        if age is not None and age < s.fresh_within.total_seconds():
            return {
                "skipped": f"the newest checkpoint is {format_duration(timedelta(seconds=int(age)))} old, "
                f"younger than fresh_within ({format_duration(s.fresh_within)})",
                "target": target.uri,
            }
        if ctx.dry_run:
            return {"would_write": checkpoints.PREFIX, "target": target.uri}
        lock = ctx.settings.audit.object_lock()
        if lock is not None:
            target.check_object_lock()
        return checkpoints.write_checkpoint(
            ctx.store.engine, target, instance=ctx.settings.instance, lock=lock
        )
    finally:
        target.close()


JOB = Job(
    name="audit-checkpoint",
    scope="deployment",  # once per slot across every sidecar
    description="write a checkpoint of the history's hash chain to the backup target (daily unless a backup did)",
    settings_model=AuditCheckpointSettings,
    run=run,
)
