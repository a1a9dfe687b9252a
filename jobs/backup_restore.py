"""The `backup-restore` job: `redis-maint backups restore ID --target DIR`, as a run in history.
Never scheduled. With `to_time` (or `before_run`) instead of a backup id it restores the AOF archive
to a point in time (redis_maint.archive.restore); the refusals (a time outside the archive's window,
an unknown run, a Redis on the directory) are checked before the lease in the same way.
With `online` (and `yes`) there is no directory: the dataset is prepared in a staging dir and the
running Redis takes it over by replication (redis_maint.archive.online); its refusals (a replica,
Cluster, Sentinel, an address the live Redis cannot reach, no `yes`) are checked before the lease too.

Downloads and verifies one backup, then lays out dump.rdb and appendonlydir/ in the directory
(redis_maint.backup.restore: all or nothing). The refusals (an unknown or pruned backup, a Redis
running on the directory, a non-empty directory without `force`) are checked before the lease, so
they exit 2 and record nothing; they are checked again inside the run, where a Redis started in
between fails the run instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from config.types import OnDemandSettings, PositiveDuration
from jobs.base import Job, JobContext, Params
from redis_maint.backup import restore
from redis_maint.backup.live_redis import DirCheck, check_dir
from redis_maint.errors import UsageError

if TYPE_CHECKING:
    # Loaded by the functions that use them (sqlalchemy, redis-py), so `config show` never does.
    from redis_maint.archive import online
    from redis_maint.archive import restore as pitr


class BackupRestoreSettings(OnDemandSettings):
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the restore (download, verify, lay out) fails once it has run this long",
    )
    online_sync_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="--online: the throwaway server's load and the live Redis's full sync must finish within "
        "this (else the live Redis is put back to REPLICAOF NO ONE and the run fails)",
    )


class RestoreParams(Params):
    backup_id: str | None = Field(
        default=None, min_length=1, description="the backup to restore (`redis-maint backups list`)"
    )
    directory: str | None = Field(
        default=None, min_length=1, description="where to lay out the Redis files (--target DIR)"
    )
    force: bool = Field(default=False, description="move Redis files already in the directory aside")
    to_time: str | None = Field(
        default=None,
        description="restore the AOF archive to this second: ISO 8601 (no zone = UTC) or `latest`",
    )
    before_run: int | None = Field(
        default=None, ge=1, description="restore the AOF archive to the last second before this run started"
    )
    online: bool = Field(
        default=False, description="restore into the running Redis by replication (archive/online.py)"
    )
    yes: bool = Field(
        default=False, description="--online: do it (without: say what it does and loses, exit 2)"
    )
    online_host: str | None = Field(
        default=None,
        min_length=1,
        description="--online: the address of this host the live Redis connects to (default: the one it "
        "sees this sidecar's connection come from)",
    )

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else os.path.abspath(value)  # history records where, not `./x`

    @field_validator("to_time")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        from redis_maint.archive import restore as pitr

        return None if value is None else pitr.canonical_time(value)

    @model_validator(mode="after")
    def _one_source(self) -> RestoreParams:
        given = [n for n in ("backup_id", "to_time", "before_run") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of a backup ID, --to-time TIME or --before-run RUN_ID"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.online and (self.directory is not None or self.force):
            raise ValueError("--online restores into the running Redis: it takes no --target DIR or --force")
        if not self.online and self.directory is None:
            raise ValueError("give --target DIR (where to lay out the files), or --online")
        if not self.online and (self.yes or self.online_host):
            raise ValueError("--yes and --online-host go with --online")
        return self

    def before_lease(self, settings: Any, store: Any) -> None:
        """The restore's refusals, before anything is locked or recorded (UsageError: exit 2)."""
        if self.online:
            pre = _online_preflight(settings, self)
            what = _online_source(self, settings, store)
            if not self.yes:
                from redis_maint.archive import online

                raise UsageError(online.explain(pre, what))
            return
        if self.backup_id is None:
            from redis_maint.archive import restore as pitr

            to_ts, _ = _moment(self, store)
            pitr.preflight(Path(self.directory), force=self.force, probe=_probe(settings))
            _plan(settings, store, to_ts)
            return
        located, target = _open(settings, store, self.backup_id)
        try:
            restore.preflight(
                target, located.location, Path(self.directory), force=self.force, probe=_probe(settings)
            )
        finally:
            target.close()


def _open(settings: Any, store: Any, backup_id: str) -> tuple[Any, Any]:
    from redis_maint.backup import lookup
    from redis_maint.history.catalog import Catalog

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
    from redis_maint.archive import restore as pitr

    if params.before_run is None:
        return pitr.time_to_ts(params.to_time or "latest"), None
    run = store.get(params.before_run)
    if run is None:
        raise UsageError(
            f"there is no run {params.before_run} in the history store; find it with "
            "`redis-maint history --job session-delete` (or `history show ID`)"
        )
    return pitr.before_run_ts(run.started_at), pitr.undone(run)


def _plan(settings: Any, store: Any, to_ts: int | None, target: Any = None) -> pitr.Plan:
    """The archive's segments up to `to_ts`; UsageError when the time is outside its window. From the
    history store, else (no archive rows there) from the target (`target` if open already)."""
    from redis_maint.archive import restore as pitr
    from redis_maint.archive.from_target import archive_source

    opened = target or settings.target.open()
    try:
        return pitr.plan(archive_source(store, opened, settings.instance), to_ts)
    finally:
        if target is None:
            opened.close()


def _restore_to_time(ctx: JobContext, params: RestoreParams, directory: Path | None = None) -> dict[str, Any]:
    from redis_maint.archive import restore as pitr

    to_ts, undone = _moment(params, ctx.store)
    target = ctx.settings.target.open()
    try:
        if ctx.dry_run:
            p = _plan(ctx.settings, ctx.store, to_ts, target)
            return {"would_restore": pitr.iso(to_ts) or "latest", "generation": p.generation.generation}
        request = pitr.Request.bounded_as(
            ctx.drill_options(), directory or Path(params.directory), force=params.force, to_ts=to_ts
        )
        probe = _staging_probe if directory is not None else _probe(ctx.settings)
        result = pitr.restore(ctx.check_env(), target, ctx.store, ctx.settings.instance, request, probe=probe)
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
    if params.online:
        return _restore_online(ctx, params)
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


# ---- --online: into the running Redis (redis_maint/archive/online.py) ---------------------------


def _online_preflight(settings: Any, params: RestoreParams) -> online.Preflight:
    from redis_maint.archive import online
    from redis_maint.topology.sentinel import is_sentinel_url

    return online.preflight(
        settings.node_redis_url,
        via_sentinel=is_sentinel_url(settings.redis_url),
        online_host=params.online_host,
        timeout_s=settings.redis_timeout.total_seconds(),
    )


def _online_source(params: RestoreParams, settings: Any, store: Any) -> str:
    """What will be restored, after the same refusals as a restore into a directory."""
    if params.backup_id is not None:
        _, target = _open(settings, store, params.backup_id)
        target.close()
        return f"backup {params.backup_id}"
    from redis_maint.archive import restore as pitr

    to_ts, undone = _moment(params, store)
    _plan(settings, store, to_ts)
    if undone is not None:
        return f"the AOF archive as it was before run {undone['run_id']} ({undone['job']}) started"
    return f"the AOF archive at {pitr.iso(to_ts) or 'latest'}"


def _staging_probe(directory: Path) -> DirCheck:
    return DirCheck(str(directory))  # the run's own private staging dir: no Redis runs there


def _restore_online(ctx: JobContext, params: RestoreParams) -> dict[str, Any]:
    from redis_maint.archive import online

    pre = _online_preflight(ctx.settings, params)  # again: the live Redis may have changed
    what = _online_source(params, ctx.settings, ctx.store)
    if ctx.dry_run:
        return {
            "would_restore": what,
            "online": True,
            "dir": f"the live Redis {pre.where}",
            "keys_now": pre.dbsize,
        }
    work = Path(ctx.settings.docker.snapshot_dir) / f"online-{ctx.run_id}-{secrets.token_hex(3)}"
    work.mkdir(parents=True, mode=0o700)
    try:
        prepared = _prepare(ctx, params, work / "data")
        bound = min(ctx.job_settings.online_sync_timeout, ctx.remaining()).total_seconds()
        opts = online.Options(
            ctx.run_id, max(bound, 1.0), ctx.settings.redis_timeout.total_seconds(), ctx.checkpoint
        )
        files = [f["path"] for f in prepared["files"]]
        synced = online.load_and_sync(ctx.settings.node_redis_url, pre, work, work / "data", files, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keep = (
        "id",
        "generation",
        "to_time",
        "to_ts",
        "before_run",
        "precision",
        "proof",
        "target",
        "redis_version",
    )
    return {
        **{k: prepared[k] for k in keep if k in prepared},
        "what": what,
        **synced,
        "prepared": {k: prepared.get(k) for k in ("files", "expected_dbsize", "tail_cut", "segments")},
        "warnings": [*prepared.get("warnings", []), *synced["warnings"]],
    }


def _prepare(ctx: JobContext, params: RestoreParams, data: Path) -> dict[str, Any]:
    """The dataset laid out in the staging dir, as a restore into a directory does it."""
    if params.backup_id is None:
        return _restore_to_time(ctx, params, directory=data)
    located, target = _open(ctx.settings, ctx.store, params.backup_id)
    try:
        return restore.restore(
            target,
            located.location,
            data,
            force=False,
            probe=_staging_probe,
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
