"""The daily `backup-audit` job: `backups check` on a schedule.

The same reconciliation as `redis-maint backups check` (the `backup-reconcile` job): every
catalog entry still on the target as recorded, nothing changed since upload, no backup the
catalog does not know. A job of its own so its schedule, last success and failure/recovery
notices are about the daily audit, never an operator's ad hoc check. Any difference fails the
run, which notifies; `redis_maint_backups_missing`/`_changed` and their alerts follow the catalog.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext


class BackupAuditSettings(JobSettings):
    schedule: ScheduleField = schedule_default("30 4 * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1), description="the run fails once it has run this long"
    )
    read_data: bool = Field(
        default=False,
        description="also re-read every object of every backup and compare its sha256 (reads every "
        "backup in full each day: time and S3 egress); off compares sizes and the ETag/VersionId "
        "recorded at upload",
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.backup import reconcile  # sqlalchemy: only when a run needs it
    from redis_maint.history.catalog import Catalog

    s: BackupAuditSettings = ctx.job_settings
    options = reconcile.CheckOptions(
        read_data=s.read_data,
        by=f"{ctx.job.name} run {ctx.run_id}",
        checkpoint=ctx.checkpoint,
        progress=ctx.progress,
    )
    catalog, open_target = Catalog(ctx.store), ctx.settings.target.open
    return reconcile.checked_run(catalog, open_target, ctx.settings.instance, options, dry=ctx.dry_run)


JOB = Job(
    name="backup-audit",
    scope="deployment",  # once per slot across every sidecar
    description="daily reconcile of the backup catalog with the target: missing, changed and unknown backups",
    settings_model=BackupAuditSettings,
    run=run,
)
