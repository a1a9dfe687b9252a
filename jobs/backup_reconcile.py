"""The `backup-reconcile` job: `redis-maint backups check [--read-data]`, as a run in history.
Never scheduled; the daily `backup-audit` job runs the same check on a schedule.

Reconciles the backup catalog with the target (redis_maint/backup/reconcile.py): catalog
entries missing on the target, objects changed since upload, backups the catalog does not know.
Marks the catalog `missing`/`changed` (and `complete` again when found intact); any difference
fails the run (exit 1), and so does a target that cannot be listed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field

from config.types import OnDemandSettings, PositiveDuration
from jobs.base import Job, JobContext, Params


class BackupReconcileSettings(OnDemandSettings):
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the check (listing, and with --read-data reading every object) fails once it has run this long",
    )


class ReconcileParams(Params):
    read_data: bool = Field(
        default=False, description="re-read every object and compare its sha256 (`backups check --read-data`)"
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.backup import reconcile  # sqlalchemy: only when a run needs it
    from redis_maint.history.catalog import Catalog

    read_data = ctx.params.read_data
    options = reconcile.CheckOptions(
        read_data=read_data,
        by=f"{ctx.job.name} run {ctx.run_id}",
        checkpoint=ctx.checkpoint,
        progress=ctx.progress,
    )
    catalog, open_target = Catalog(ctx.store), ctx.settings.target.open
    return reconcile.checked_run(catalog, open_target, ctx.settings.instance, options, dry=ctx.dry_run)


JOB = Job(
    name="backup-reconcile",
    description="ad hoc reconcile of the backup catalog with the target (backups check [--read-data]); "
    "never scheduled",
    settings_model=BackupReconcileSettings,
    run=run,
    params_model=ReconcileParams,
)
