"""The `backup-restore` job: `redis-maint backups restore ID --target DIR`, as a run in history.
Never scheduled. With `to_time` (or `before_run`) instead of a backup id it restores the AOF archive
to a point in time (redis_maint.archive.restore); the refusals (a time outside the archive's window,
an unknown run, a Redis on the directory) are checked before the lease in the same way.

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

from pydantic import Field, field_validator, model_validator

from config.types import OnDemandSettings, PositiveDuration
from jobs.base import Job, JobContext, Params
from redis_maint.archive import restore as pitr
from redis_maint.archive.state import ArchiveState
from redis_maint.backup import lookup, restore
from redis_maint.backup.live_redis import DirCheck, check_dir
from redis_maint.checks import restore_drill
from redis_maint.errors import UsageError
from redis_maint.history.catalog import Catalog


class BackupRestoreSettings(OnDemandSettings):
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the restore (download, verify, lay out) fails once it has run this long",
    )


class RestoreParams(Params):
    backup_id: str | None = Field(
        default=None, min_length=1, description="the backup to restore (`redis-maint backups list`)"
    )
    directory: str = Field(min_length=1, description="where to lay out the Redis files (--target DIR)")
    force: bool = Field(default=False, description="move Redis files already in the directory aside")
    to_time: str | None = Field(
        default=None,
        description="restore the AOF archive to this second: ISO 8601 (no zone = UTC) or `latest`",
    )
    before_run: int | None = Field(
        default=None, ge=1, description="restore the AOF archive to the last second before this run started"
    )

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return os.path.abspath(value)  # history records where the files went, not `./x`

    @field_validator("to_time")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        return None if value is None else pitr.canonical_time(value)

    @model_validator(mode="after")
    def _one_source(self) -> RestoreParams:
        given = [n for n in ("backup_id", "to_time", "before_run") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of a backup ID, --to-time TIME or --before-run RUN_ID"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def before_lease(self, settings: Any, store: Any) -> None:
        """The restore's refusals, before anything is locked or recorded (UsageError: exit 2)."""
        if self.backup_id is None:
            to_ts, _ = _moment(self, store)
            pitr.preflight(Path(self.directory), force=self.force, probe=_probe(settings))
            pitr.plan(ArchiveState(store, settings.instance), to_ts)
            return
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
            redis_url=settings.node_redis_url,  # the node whose files data_dir holds
            data_dir=settings.data_dir,
            timeout=settings.redis_timeout,
        )

    return probe


def _moment(params: RestoreParams, store: Any) -> tuple[int | None, dict[str, Any] | None]:
    """The second to restore to (None: latest) and, for --before-run, the run it undoes."""
    if params.before_run is None:
        return pitr.time_to_ts(params.to_time or "latest"), None
    run = store.get(params.before_run)
    if run is None:
        raise UsageError(
            f"there is no run {params.before_run} in the history store; find it with "
            "`redis-maint history --job session-delete` (or `history show ID`)"
        )
    return pitr.before_run_ts(run.started_at), pitr.undone(run)


def _restore_to_time(ctx: JobContext, params: RestoreParams) -> dict[str, Any]:
    to_ts, undone = _moment(params, ctx.store)
    target = ctx.settings.target.open()
    try:
        if ctx.dry_run:
            p = pitr.plan(ArchiveState(ctx.store, ctx.settings.instance), to_ts)
            return {"would_restore": pitr.iso(to_ts) or "latest", "generation": p.generation.generation}
        request = pitr.Request(
            directory=Path(params.directory),
            force=params.force,
            to_ts=to_ts,
            run_id=ctx.run_id,
            timeout_s=max(ctx.remaining().total_seconds(), 1.0),
            checkpoint=ctx.checkpoint,
            progress=ctx.progress,
            cancel=ctx.cancel,
            db=restore_drill.session_db(ctx.settings.redis_url),
            session_pattern=ctx.settings.sessions.key_pattern,
        )
        result = pitr.restore(
            ctx.check_env(), target, ctx.store, ctx.settings.instance, request, probe=_probe(ctx.settings)
        )
    finally:
        target.close()
    if params.to_time is not None and pitr.zone_assumed(params.to_time):
        result["warnings"] = [*result["warnings"], "the time has no zone: taken as UTC"]
    if undone is not None:
        result["before_run"] = undone
        result["precision"] = pitr.BEFORE_RUN_PRECISION
    return result


def run(ctx: JobContext) -> dict[str, Any]:
    params: RestoreParams = ctx.params
    if params.backup_id is None:
        return _restore_to_time(ctx, params)
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
    description="ad hoc restore of one backup into a directory (backups restore ID --target DIR), or of the "
    "AOF archive to a time (--to-time TIME | --before-run RUN_ID); never scheduled",
    settings_model=BackupRestoreSettings,
    run=run,
    params_model=RestoreParams,
)
