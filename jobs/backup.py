"""The `backup` job: BGSAVE -> consistent snapshot -> integrity check -> upload -> catalog -> retention.

Replaces the runbook's "Manual Backup" and "Automated Backup (Cron)". Every backup carries a
manifest.json (written last), so it can be verified and restored without our database.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from config.types import Duration, JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs import backup_source
from jobs.base import Job, JobContext, Params
from redis_maint.backup import stored
from redis_maint.backup.retention import Policy
from redis_maint.backup.upload import upload_backup
from redis_maint.errors import JobCancelledError, JobFailedError, LeaseLostError, MaintenanceError
from redis_maint.storage import Target
from redis_maint.timeutil import utcnow

if TYPE_CHECKING:
    # The history store (sqlalchemy) loads only when a backup runs, so `config show` never does.
    from redis_maint.history.catalog import Catalog
    from redis_maint.snapshot.take import Snapshot

MIB = 1024 * 1024
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


class BackupSettings(JobSettings):
    schedule: ScheduleField = schedule_default("0 3 * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(hours=2), description="the run fails once it has run this long"
    )
    bgsave: bool = Field(default=True, description="run BGSAVE first; off copies dump.rdb as it is on disk")
    bgsave_timeout: PositiveDuration = Field(
        default=timedelta(minutes=15), description="how long BGSAVE may take"
    )
    rewrite_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10), description="how long to wait for a running AOF rewrite before copying"
    )
    staging_dir: str = Field(
        default="",
        description="where snapshots are staged (empty: the system temp dir); on the data dir's filesystem, "
        "dump.rdb and the AOF base are hard-linked instead of copied",
    )
    verify_before_upload: bool = Field(
        default=True, description="redis-check-aof/rdb the snapshot in a throwaway container before uploading"
    )
    keep_within: Duration = Field(
        default=timedelta(days=2),
        description="retention: never prune a complete backup younger than this, so an ad hoc backup "
        "never replaces the nightly one (borg's keep_within); 0s turns it off",
    )
    keep_last: int = Field(default=0, ge=0, description="retention: keep the N newest backups")
    keep_daily: int = Field(
        default=14, ge=0, description="retention: newest backup of each of the last N days"
    )
    keep_weekly: int = Field(default=8, ge=0, description="retention: newest of each of the last N ISO weeks")
    keep_monthly: int = Field(default=6, ge=0, description="retention: newest of each of the last N months")
    prune: bool = Field(default=True, description="apply retention after each successful backup")
    incomplete_after: Duration = Field(
        default=timedelta(days=1), description="remove backups without a manifest untouched for this long"
    )
    source: Literal["primary", "replica", "auto"] = Field(
        default="auto",
        description="behind Sentinel, which node a scheduled backup comes from: the primary, the freshest "
        "healthy replica, or auto (that replica when within max_replica_lag, else the primary); only the "
        "sidecar beside that node runs the slot. Without Sentinel: the one node",
    )
    max_replica_lag: PositiveDuration = Field(
        default=timedelta(seconds=10),
        description="a replica is fit to back up when it heard from the primary, and the primary had its "
        "ACK, within this long (Redis's min-replicas-max-lag measure)",
    )
    object_lock: bool = Field(
        default=False,
        description="write each backup's manifest.json under S3 Object Lock (audit.object_lock_mode, for "
        "audit.object_lock_days); the bucket must have Object Lock enabled",
    )

    def policy(self) -> Policy:
        return Policy(
            keep_last=self.keep_last,
            keep_daily=self.keep_daily,
            keep_weekly=self.keep_weekly,
            keep_monthly=self.keep_monthly,
            keep_within=self.keep_within,
        )


class BackupParams(Params):
    prune: bool = Field(
        default=True, description="apply retention after this backup (`run backup --no-prune`)"
    )
    cluster_id: str | None = Field(
        default=None,
        description="Redis Cluster: the cluster backup an ad hoc shard backup belongs to (`run backup "
        "--cluster-id ID`, the same ID on every shard's sidecar); scheduled runs use their slot",
    )

    @field_validator("cluster_id")
    @classmethod
    def _cluster_id(cls, value: str | None) -> str | None:
        from redis_maint.backup.cluster import check_cluster_id

        return None if value is None else check_cluster_id(value)


def run(ctx: JobContext) -> dict[str, Any]:
    s: BackupSettings = ctx.job_settings
    if ctx.dry_run:
        return _dry_run(ctx, s)
    return _backup(ctx, s)


def _backup(ctx: JobContext, s: BackupSettings) -> dict[str, Any]:
    target = ctx.settings.target.open()
    try:
        _check_object_lock(ctx, s, target)
        summary = _store_new_backup(ctx, s, target)
        try:
            summary["retention"] = _retention(ctx, s, target)
        except LeaseLostError:
            raise  # fenced out: another run owns the job now, so no checkpoint from this one either
        except MaintenanceError as exc:
            summary["retention"] = {"error": str(exc)}
            summary["checkpoint"] = _audit_checkpoint(ctx, target)
            raise JobFailedError(
                f"backup {summary['backup_id']} is complete, but retention failed: {exc}", summary
            ) from None
        summary["checkpoint"] = _audit_checkpoint(ctx, target)
        if "error" in summary["checkpoint"]:
            raise JobFailedError(
                f"backup {summary['backup_id']} is complete, but its audit checkpoint could not be written: "
                f"{summary['checkpoint']['error']}",
                summary,
            )
        return summary
    finally:
        target.close()


def _check_object_lock(ctx: JobContext, s: BackupSettings, target: Target) -> None:
    """With jobs.backup.object_lock, fail before any work unless manifests can be locked."""
    if not s.object_lock:
        return
    if ctx.settings.audit.object_lock() is None:
        raise MaintenanceError(
            "jobs.backup.object_lock = true needs audit.object_lock_mode (GOVERNANCE or COMPLIANCE) and "
            "audit.object_lock_days; set them, or turn jobs.backup.object_lock off"
        )
    target.check_object_lock()


def _audit_checkpoint(ctx: JobContext, target: Target) -> dict[str, Any]:
    """A checkpoint of the history's evidence chain next to the backups (redis_maint/audit/)."""
    from redis_maint.audit.checkpoints import write_checkpoint

    try:
        cp = write_checkpoint(
            ctx.store.engine, target, instance=ctx.settings.instance, lock=ctx.settings.audit.object_lock()
        )
    except MaintenanceError as exc:
        return {"error": str(exc)}
    return {k: cp[k] for k in ("key", "records", "head_seq", "head_hash", "retain_until") if k in cp}


def _store_new_backup(ctx: JobContext, s: BackupSettings, target: Target) -> dict[str, Any]:
    """Snapshot, check, upload and catalog one backup; any failure leaves it `failed`, never half-stored."""
    from redis_maint.history.catalog import Catalog

    now = utcnow()
    backup_id = stored.new_backup_id(now)
    location = stored.location_for(ctx.settings.instance, backup_id, now)
    staging = _staging_root(ctx, s) / backup_id
    summary: dict[str, Any] = {"backup_id": backup_id, "target": target.uri_for(location), "durations_s": {}}
    source = backup_source.for_run(ctx)  # behind Sentinel: which node, and why (fails if none is fit)
    if source is not None:
        summary["source"] = source
    catalog = Catalog(ctx.store)
    for abandoned in catalog.fail_abandoned(ctx.settings.instance, ctx.run_id):
        ctx.log.warning("marked an abandoned backup failed", extra={"backup_id": abandoned})
    try:
        summary["phase"] = "target check"
        target.preflight()  # a missing bucket fails now, not after BGSAVE and a long copy
        shard = _cluster_shard(ctx, backup_id)  # Redis Cluster: this node's shard, else None
        snapshot = _snapshot(ctx, s, staging, summary)
        shard = _cluster_shard(ctx, backup_id, before=shard)
        _add_to_catalog(catalog, ctx, backup_id, target, location, now, snapshot, shard)
        summary["checks"] = _integrity(ctx, s, snapshot, catalog, backup_id, summary)
        manifest = stored.build_manifest(
            backup_id=backup_id,
            created_at=now,
            instance=ctx.settings.instance,
            snapshot=snapshot,
            checks=summary["checks"],
            job_run_id=ctx.run_id,
            tool_version=_version(),
            node=backup_source.node_record(ctx.settings, snapshot.server, source),
            cluster=shard,
            fence=ctx.fence,
            archive=summary.get("archive"),
        )
        _upload(ctx, target, location, snapshot, manifest, summary)
        ctx.commit_point(f"record backup {backup_id} as complete")
        catalog.mark_complete(backup_id, size=snapshot.size, files=manifest["files"])
        if shard is not None:
            summary["cluster"] = _finish_cluster(ctx, catalog, target, shard, backup_id)
    except JobCancelledError:
        catalog.fail_if_pending(backup_id, "interrupted: the run was asked to stop")
        raise
    except JobFailedError:
        raise
    except MaintenanceError as exc:
        catalog.fail_if_pending(backup_id, str(exc))
        raise JobFailedError(str(exc), summary) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _snapshot(ctx: JobContext, s: BackupSettings, staging: Path, summary: dict[str, Any]) -> Snapshot:
    summary["phase"] = "snapshot"
    from redis_maint.snapshot.take import take_snapshot  # redis-py loads only when a backup runs

    snapshot = take_snapshot(
        ctx.node_redis(),
        Path(ctx.settings.data_dir),
        staging,
        checkpoint=ctx.checkpoint,
        bgsave=s.bgsave,
        bgsave_timeout=s.bgsave_timeout,
        rewrite_timeout=s.rewrite_timeout,
        guard_note=ctx.settings.aof_guard_note,
        progress=ctx.progress,
    )
    summary["durations_s"].update(
        bgsave=snapshot.timings["bgsave_s"],
        copy=round(snapshot.timings["aof_guard_s"] + snapshot.timings["copy_s"], 3),
    )
    summary.update(
        files=[f.to_json() for f in snapshot.files],
        bytes=snapshot.size,
        redis=snapshot.server,
        bgsave=None if snapshot.bgsave is None else {"mode": snapshot.bgsave["mode"]},
    )
    if ctx.settings.archive.enabled:
        summary["archive"] = _archive_position(ctx, snapshot)
    return snapshot


def _archive_position(ctx: JobContext, snapshot: Snapshot) -> dict[str, Any] | None:
    """The AOF archive generation and incr-file offset this backup covers (its copy of the live incr
    file ends there), so a restore to a later time can start from this backup's point in the archive."""
    from redis_maint.archive.layout import incr_seq
    from redis_maint.archive.state import ArchiveState

    incrs = [f for f in snapshot.files if f.path.endswith(".incr.aof")]
    if not incrs:
        return None
    last = max(incrs, key=lambda f: incr_seq(f.path))
    name = last.path.rsplit("/", 1)[-1]
    try:
        current = ArchiveState(ctx.store, ctx.settings.instance).current()
    except MaintenanceError as exc:
        return {"error": str(exc)}
    follows = current is not None and current.incr_file == name
    return {
        "generation": current.generation if follows else None,
        "incr_file": name,
        "offset": last.size,
        "archived_offset": current.offset if follows else None,
    }


def _add_to_catalog(catalog, ctx, backup_id, target, location, now, snapshot: Snapshot, shard=None) -> None:
    from redis_maint.history.catalog import BackupRecord, BackupStatus

    catalog.add(
        BackupRecord(
            id=backup_id,
            run_id=ctx.run_id,
            instance=ctx.settings.instance,
            target=target.uri_for(location),
            target_root=target.uri,
            location=location,
            created_at=now,
            status=BackupStatus.PENDING,
            size=snapshot.size,
            files=[f.to_json() for f in snapshot.files],
            redis_version=snapshot.server.get("redis_version"),
            server=snapshot.server,
            cluster_id=None if shard is None else shard["cluster_id"],
            shard=shard,
        )
    )


def _cluster_shard(
    ctx: JobContext, backup_id: str, before: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Redis Cluster (redis_maint/backup/cluster.py): the node's id, role, slot ranges and topology,
    and the cluster backup it joins (the run's slot, --cluster-id, else one of its own). Read again
    after the copy (`before`): slots that moved meanwhile fail the backup. None outside cluster mode."""
    from redis_maint.backup import cluster, cluster_node

    now = cluster_node.shard_of(ctx.node_redis(), ctx.settings.redis_url)
    if before is None:
        if now is None:
            return None
        run = ctx.store.get(ctx.run_id)
        slot = None if run is None else run.scheduled_for
        cid = cluster.cluster_id_for(explicit=ctx.params.cluster_id, scheduled_for=slot, backup_id=backup_id)
        return {"cluster_id": cid, **now}
    why = cluster_node.moved(before, now)
    if why:
        raise MaintenanceError(
            f"Redis Cluster: {why}; nothing was stored. Run the backup again once the cluster is stable"
        )
    return before


def _finish_cluster(
    ctx: JobContext, catalog: Catalog, target: Target, shard: dict[str, Any], backup_id: str
) -> dict[str, Any]:
    """The cluster manifest, if this shard completes its cluster backup (backup/cluster.py)."""
    from redis_maint.backup import cluster

    try:
        return cluster.finish(
            catalog, target, instance=ctx.settings.instance, cluster_id=shard["cluster_id"], run_id=ctx.run_id
        )
    except MaintenanceError as exc:
        raise MaintenanceError(
            f"shard backup {backup_id} is complete, but the manifest of cluster backup {shard['cluster_id']} "
            f"could not be written: {exc}"
        ) from None


def _integrity(ctx, s: BackupSettings, snapshot: Snapshot, catalog, backup_id, summary) -> list | None:
    if not s.verify_before_upload:
        return None
    summary["phase"] = "integrity check"
    t0 = time.monotonic()
    checks = ctx.check_snapshot(snapshot)
    summary["durations_s"]["verify"] = round(time.monotonic() - t0, 3)
    bad = [c for c in checks if c.get("verdict") != "ok"]
    if bad or not checks:
        summary["checks"] = checks
        what = (
            "; ".join(f"{c.get('file')}: {c.get('verdict')} ({c.get('tool')})" for c in bad)
            or "nothing checked"
        )
        message = f"the snapshot failed its integrity check, so nothing was uploaded: {what}"
        catalog.mark_failed(backup_id, message, checks)
        raise JobFailedError(message, summary)
    catalog.record_checks(backup_id, checks)
    return checks


def _upload(ctx, target: Target, location: str, snapshot: Snapshot, manifest, summary) -> None:
    summary["phase"] = "upload"
    ctx.progress.start(snapshot.size, "uploading", "bytes")
    t0 = time.monotonic()
    try:
        upload_backup(
            target,
            location,
            snapshot,
            manifest,
            checkpoint=ctx.checkpoint,
            on_bytes=ctx.progress.advance,
            manifest_lock=ctx.settings.audit.object_lock() if ctx.job_settings.object_lock else None,
            before_manifest=lambda: ctx.commit_point(f"publish backup {manifest['id']}'s manifest"),
        )
    finally:
        ctx.progress.finish()
    summary["files"] = manifest["files"]  # now with each object's ETag/VersionId where the target has them
    took = time.monotonic() - t0
    summary["durations_s"]["upload"] = round(took, 3)
    summary["upload_mib_s"] = round(snapshot.size / MIB / took, 1) if took > 0 else None
    summary.pop("phase")


def _retention(ctx: JobContext, s: BackupSettings, target: Target) -> dict[str, Any]:
    if not s.prune:
        return {"skipped": "jobs.backup.prune is off"}
    if not ctx.params.prune:
        return {"skipped": "run with --no-prune"}
    ctx.commit_point("apply retention (prune)")
    t0 = time.monotonic()
    result = _apply_retention(ctx, s, target, dry_run=False)
    result["duration_s"] = round(time.monotonic() - t0, 3)
    return result


def _apply_retention(ctx: JobContext, s: BackupSettings, target: Target, *, dry_run: bool) -> dict[str, Any]:
    from redis_maint.backup.prune import prune
    from redis_maint.history.catalog import Catalog

    return prune(
        Catalog(ctx.store),
        target,
        instance=ctx.settings.instance,
        policy=s.policy(),
        tz=ctx.settings.tz,
        now=utcnow(),
        incomplete_age=s.incomplete_after,
        dry_run=dry_run,
    )


def _dry_run(ctx: JobContext, s: BackupSettings) -> dict[str, Any]:
    from redis_maint.snapshot.take import planned_files

    files = planned_files(ctx.node_redis(), Path(ctx.settings.data_dir))
    target = ctx.settings.target.open()
    try:
        target.preflight()
        retention = _apply_retention(ctx, s, target, dry_run=True) if s.prune and ctx.params.prune else None
        location = stored.location_for(ctx.settings.instance, "<backup-id>", utcnow())
        return {
            "would_back_up": files,
            "bytes": sum(f["size"] or 0 for f in files),
            "target": target.uri_for(location),
            "bgsave": s.bgsave,
            "verify_before_upload": s.verify_before_upload,
            "retention": retention,
        }
    finally:
        target.close()


def _staging_root(ctx: JobContext, s: BackupSettings) -> Path:
    """The staging root, emptied of snapshots left by killed runs (we hold the job's lease)."""
    base = Path(s.staging_dir) if s.staging_dir else Path(tempfile.gettempdir()) / "redis-maint-staging"
    root = base / ctx.settings.instance
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        if child.is_dir() and _BACKUP_ID.match(child.name):
            ctx.log.warning("removing a staging dir left by an earlier run", extra={"path": str(child)})
            shutil.rmtree(child, ignore_errors=True)
    return root


def _version() -> str:
    try:
        return metadata.version("redis-maint")
    except metadata.PackageNotFoundError:
        return "unknown"


def _containers(s: BackupSettings) -> tuple[bool, str]:
    if s.verify_before_upload:
        return True, "verify_before_upload = true"
    return False, "verify_before_upload = false"


def _scope(settings: Any) -> str:
    """Once per slot across every sidecar; on a Redis Cluster once per slot per node, since every
    shard's sidecar backs up its own node and the shard backups of one slot make the cluster backup."""
    from redis import RedisError

    from redis_maint.redis_conn import connect

    try:
        client = connect(settings.node_redis_url, settings.redis_timeout)
        try:
            clustered = int(client.info("cluster").get("cluster_enabled", 0)) == 1
        finally:
            client.close()
    except (MaintenanceError, RedisError):  # Redis down: the run itself will fail and say why
        return "deployment"
    return "node" if clustered else "deployment"


JOB = Job(
    name="backup",
    scope="deployment",  # once per slot across every sidecar (per node on a Redis Cluster: _scope)
    scope_for=_scope,
    description="BGSAVE, consistent snapshot of dump.rdb + AOF, upload with manifest, catalog, retention",
    settings_model=BackupSettings,
    run=run,
    params_model=BackupParams,
    containers=_containers,
    eligibility=backup_source.eligible,
)
