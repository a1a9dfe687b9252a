"""The `backup-check` job: `redis-maint backups verify ID [--deep]`, as a run in history. Never scheduled.

Re-reads every file of one backup and compares its size and sha256 with the manifest (and the
catalog); with `deep`, also runs redis-check-aof/rdb on a downloaded copy and loads it in a
throwaway redis-server, as the weekly `backup-verify` drill does. The result goes into the
catalog and is the run's summary; a backup that fails any step fails the run (and notifies).

A job of its own, not a parameter of backup-verify: the drill's last success, catch-up and
failure/recovery notices stay about the weekly drill, and an ad hoc check of an old backup
never stands in for it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field

from config.types import OnDemandSettings, PositiveDuration
from jobs.base import Job, JobContext, Params
from redis_maint.errors import JobFailedError

if TYPE_CHECKING:
    from redis_maint.backup import stored


class BackupCheckSettings(OnDemandSettings):
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the check (download, and with --deep the checks and the load) fails once it has run this long",
    )


class CheckParams(Params):
    backup_id: str = Field(min_length=1, description="the backup to check (`redis-maint backups list`)")
    deep: bool = Field(default=False, description="also check the files with the Redis tools and load them")

    def before_lease(self, settings: Any, store: Any) -> None:
        """An unknown or pruned backup is a usage error: refused before anything is recorded."""
        _, target = _open(settings, store, self.backup_id)
        target.close()


def _open(settings: Any, store: Any, backup_id: str) -> tuple[stored.Located, Any]:
    from redis_maint.backup import lookup  # sqlalchemy: only when a check runs
    from redis_maint.history.catalog import Catalog

    return lookup.open_backup(
        backup_id, Catalog(store), settings.target.open, settings.instance, refuse_pruned=True
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.checks import restore_drill
    from redis_maint.history.catalog import Catalog

    params: CheckParams = ctx.params
    located, target = _open(ctx.settings, ctx.store, params.backup_id)
    try:
        if ctx.dry_run:
            return {"would_verify": params.backup_id, "target": target.uri_for(located.location)}
        result = _check(ctx, params, target, located)
    finally:
        target.close()
    result.update(restore_drill.evidence(result))  # depth: checksums, or restore-drill with --deep
    if located.record is not None:
        by = restore_drill.verified_by(result, run_id=ctx.run_id, requested_by=ctx.requested_by)
        Catalog(ctx.store).record_verify(params.backup_id, result, by)
    if not result["ok"]:
        raise JobFailedError(
            f"backup {params.backup_id} failed verification: {'; '.join(result['problems'])}", result
        )
    return result


def _check(ctx: JobContext, params: CheckParams, target: Any, located: stored.Located) -> dict[str, Any]:
    from redis_maint.backup import stored
    from redis_maint.checks import restore_drill

    record = located.record
    result = stored.verify(
        target,
        located.location,
        params.backup_id,
        catalog_files=record.files if record is not None else None,
        checkpoint=ctx.checkpoint,
        progress=ctx.progress,
    )
    if not params.deep:
        return result
    return restore_drill.add_deep(ctx.check_env(), target, located.location, result, ctx.drill_options())


def _containers(s: BackupCheckSettings) -> tuple[bool, str]:
    return False, "runs containers only for `backups verify --deep`, never on a schedule"


JOB = Job(
    name="backup-check",
    description="ad hoc check of one backup (backups verify ID [--deep]); never scheduled",
    settings_model=BackupCheckSettings,
    run=run,
    params_model=CheckParams,
    containers=_containers,
)
