"""The `backup-restore` job: `redis-maint backups restore ID --target DIR`, as a run in history.
Never scheduled.

Downloads and verifies one backup, then lays out dump.rdb and appendonlydir/ in the directory
(redis_maint.backup.restore: all or nothing). The refusals (an unknown or pruned backup, a Redis
running on the directory, a non-empty directory without `force`) are checked before the lease, so
they exit 2 and record nothing; they are checked again inside the run, where a Redis started in
between fails the run instead.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from config.types import OnDemandSettings, PositiveDuration
from jobs.base import Job, JobContext, Params
from redis_maint.backup import lookup, restore
from redis_maint.backup.live_redis import DirCheck, check_dir
from redis_maint.history.catalog import Catalog


class BackupRestoreSettings(OnDemandSettings):
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the restore (download, verify, lay out) fails once it has run this long",
    )


class RestoreParams(Params):
    backup_id: str = Field(min_length=1, description="the backup to restore (`redis-maint backups list`)")
    directory: str = Field(min_length=1, description="where to lay out the Redis files (--target DIR)")
    force: bool = Field(default=False, description="move Redis files already in the directory aside")

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return os.path.abspath(value)  # history records where the files went, not `./x`

    def before_lease(self, settings: Any, store: Any) -> None:
        """The restore's refusals, before anything is locked or recorded (UsageError: exit 2)."""
        located, target = _open(settings, store, self.backup_id)
        try:
            restore.preflight(
                target, located.location, Path(self.directory), force=self.force, probe=_probe(settings)
            )
        finally:
            target.close()


def _open(settings: Any, store: Any, backup_id: str) -> tuple[Any, Any]:
    return lookup.open_backup(
        backup_id, Catalog(store), settings.target.open, settings.instance, refuse_pruned=True
    )


def _probe(settings: Any):
    def probe(directory: Path) -> DirCheck:
        return check_dir(
            directory,
            redis_url=settings.redis_url,
            data_dir=settings.data_dir,
            timeout=settings.redis_timeout,
        )

    return probe


def run(ctx: JobContext) -> dict[str, Any]:
    params: RestoreParams = ctx.params
    located, target = _open(ctx.settings, ctx.store, params.backup_id)
    probe = _probe(ctx.settings)
    try:
        if ctx.dry_run:
            restore.preflight(
                target, located.location, Path(params.directory), force=params.force, probe=probe
            )
            return {"would_restore": params.backup_id, "dir": params.directory}
        return restore.restore(
            target,
            located.location,
            Path(params.directory),
            force=params.force,
            probe=probe,
            checkpoint=ctx.checkpoint,
            progress=ctx.progress,
        )
    finally:
        target.close()


JOB = Job(
    name="backup-restore",
    description="ad hoc restore of one backup into a directory (backups restore ID --target DIR); never scheduled",
    settings_model=BackupRestoreSettings,
    run=run,
    params_model=RestoreParams,
)
