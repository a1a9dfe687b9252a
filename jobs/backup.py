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
from typing import TYPE_CHECKING, Any

from pydantic import Field

from config.types import Duration, JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext, Params
from redis_maint.backup import stored
from redis_maint.backup.prune import prune
from redis_maint.backup.retention import Policy
from redis_maint.backup.upload import upload_backup
from redis_maint.errors import JobCancelledError, JobFailedError, MaintenanceError
from redis_maint.history.catalog import BackupRecord, BackupStatus, Catalog
from redis_maint.storage import Target
from redis_maint.timeutil import utcnow

if TYPE_CHECKING:
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


def run(ctx: JobContext) -> dict[str, Any]:
    s: BackupSettings = ctx.job_settings
    if ctx.dry_run:
        return _dry_run(ctx, s)
    return _backup(ctx, s)


def _backup(ctx: JobContext, s: BackupSettings) -> dict[str, Any]:
    target = ctx.settings.target.open()
    try:
        summary = _store_new_backup(ctx, s, target)
        try:
            summary["retention"] = _retention(ctx, s, target)
        except MaintenanceError as exc:
            summary["retention"] = {"error": str(exc)}
            raise JobFailedError(
                f"backup {summary['backup_id']} is complete, but retention failed: {exc}", summary
            ) from None
        return summary
    finally:
        target.close()


def _store_new_backup(ctx: JobContext, s: BackupSettings, target: Target) -> dict[str, Any]:
    """Snapshot, check, upload and catalog one backup; any failure leaves it `failed`, never half-stored."""
    now = utcnow()
    backup_id = stored.new_backup_id(now)
    location = stored.location_for(ctx.settings.instance, backup_id, now)
    staging = _staging_root(ctx, s) / backup_id
    summary: dict[str, Any] = {"backup_id": backup_id, "target": target.uri_for(location), "durations_s": {}}
    catalog = Catalog(ctx.store)
    _fail_abandoned(ctx, catalog)
    try:
        summary["phase"] = "target check"
        target.preflight()  # a missing bucket fails now, not after BGSAVE and a long copy
        snapshot = _snapshot(ctx, s, staging, summary)
        _add_to_catalog(catalog, ctx, backup_id, target, location, now, snapshot)
        summary["checks"] = _integrity(ctx, s, snapshot, catalog, backup_id, summary)
        manifest = stored.build_manifest(
            backup_id=backup_id,
            created_at=now,
            instance=ctx.settings.instance,
            snapshot=snapshot,
            checks=summary["checks"],
            job_run_id=ctx.run_id,
            tool_version=_version(),
        )
        _upload(ctx, target, location, snapshot, manifest, summary)
        catalog.mark_complete(backup_id, size=snapshot.size, files=manifest["files"])
    except JobCancelledError:
        _mark_failed(catalog, backup_id, "interrupted: the run was asked to stop")
        raise
    except JobFailedError:
        raise
    except MaintenanceError as exc:
        _mark_failed(catalog, backup_id, str(exc))
        raise JobFailedError(str(exc), summary) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _snapshot(ctx: JobContext, s: BackupSettings, staging: Path, summary: dict[str, Any]) -> Snapshot:
    summary["phase"] = "snapshot"
    from redis_maint.snapshot.take import take_snapshot  # redis-py loads only when a backup runs

    snapshot = take_snapshot(
        ctx.redis(),
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
    return snapshot


def _add_to_catalog(catalog, ctx, backup_id, target, location, now, snapshot: Snapshot) -> None:
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
        )
    )


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
            target, location, snapshot, manifest, checkpoint=ctx.checkpoint, on_bytes=ctx.progress.advance
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
    t0 = time.monotonic()
    result = _apply_retention(ctx, s, target, dry_run=False)
    result["duration_s"] = round(time.monotonic() - t0, 3)
    return result


def _apply_retention(ctx: JobContext, s: BackupSettings, target: Target, *, dry_run: bool) -> dict[str, Any]:
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

    files = planned_files(ctx.redis(), Path(ctx.settings.data_dir))
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


def _fail_abandoned(ctx: JobContext, catalog: Catalog) -> None:
    """`pending` rows of runs that died (SIGKILL, OOM): we hold the job's lease, so none is live."""
    for record in catalog.list(instance=ctx.settings.instance, status=BackupStatus.PENDING):
        ctx.log.warning("marking an abandoned backup failed", extra={"backup_id": record.id})
        catalog.mark_failed(record.id, f"abandoned: run {record.run_id} stopped without finishing it")


def _mark_failed(catalog: Catalog, backup_id: str, error: str) -> None:
    record = catalog.get(backup_id)
    if record is not None and record.status == BackupStatus.PENDING:
        catalog.mark_failed(backup_id, error)


def _version() -> str:
    try:
        return metadata.version("redis-maint")
    except metadata.PackageNotFoundError:
        return "unknown"


def _containers(s: BackupSettings) -> tuple[bool, str]:
    if s.verify_before_upload:
        return True, "verify_before_upload = true"
    return False, "verify_before_upload = false"


JOB = Job(
    name="backup",
    description="BGSAVE, consistent snapshot of dump.rdb + AOF, upload with manifest, catalog, retention",
    settings_model=BackupSettings,
    run=run,
    params_model=BackupParams,
    containers=_containers,
)
