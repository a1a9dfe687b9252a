"""The weekly `backup-verify` job: a restore drill of the newest complete backup.

Downloads it (sha256 against its manifest), runs redis-check-aof/rdb on the copy and loads
it into a throwaway redis-server container, then records the result in the catalog. A drill
whose backup fails any step fails the run; with no backup yet there is nothing to drill.

With `archive.enabled` the drill also restores the AOF archive to `latest` (redis_maint/archive/drill.py)
and checks that the keys it loaded match the source's key count at that instant (keys expired by
TTL allowed for): the summary's `archive: {to, keys, source_keys, expired, ok}`; a failure fails the run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from redis_maint.errors import JobFailedError

# The archive drill waits at most 3 archive.interval and this long for the archive to reach its start.
CATCH_UP_SLACK_S = 10.0


class BackupVerifySettings(JobSettings):
    schedule: ScheduleField = schedule_default("0 4 * * 0")
    timeout: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the run (download, checks, load) fails once it has run this long",
    )


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.checks import restore_drill  # sqlalchemy, docker: only when a drill runs
    from redis_maint.history.catalog import BackupStatus, Catalog

    catalog = Catalog(ctx.store)
    newest = catalog.list(instance=ctx.settings.instance, status=BackupStatus.COMPLETE, limit=1)
    if not newest:
        # A fresh install has nothing to drill yet; a missing backup is backup-age's alarm, not ours.
        ctx.log.warning("no complete backup to verify yet", extra={"instance": ctx.settings.instance})
        summary = {"backup_id": None, "verified": False, "reason": "no complete backup in the catalog yet"}
        return _with_archive(ctx, summary, ok=True)
    record = newest[0]
    if ctx.dry_run:
        return _with_archive(ctx, {"would_verify": record.id, "target": record.target}, ok=True)
    target = ctx.settings.target.open(record.target_root)
    try:
        result = _drill(ctx, target, record)
    finally:
        target.close()
    # The RTO parts, the key counts and the depth: in the summary and in the catalog's event.
    result.update(restore_drill.evidence(result))
    catalog.record_verify(
        record.id, result, restore_drill.verified_by(result, run_id=ctx.run_id, requested_by=ctx.requested_by)
    )
    summary = {"backup_id": record.id, "created_at": record.created_at.isoformat(), **result}
    if not result["ok"]:
        _with_archive(ctx, summary, ok=False)
        raise JobFailedError(
            f"backup {record.id} failed its restore drill: {'; '.join(result['problems'])}", summary
        )
    return _with_archive(ctx, summary, ok=True)


def _with_archive(ctx: JobContext, summary: dict[str, Any], *, ok: bool) -> dict[str, Any]:
    """The archive's drill (archive.enabled): `summary["archive"]`; JobFailedError when it fails and
    the backup's drill did not already (`ok`)."""
    if not ctx.settings.archive.enabled:
        return summary
    if ctx.dry_run:
        summary["archive"] = {"would_restore": "latest"}
        return summary
    summary["archive"] = _archive_drill(ctx)
    if ok and not summary["archive"]["ok"]:
        raise JobFailedError(
            f"the AOF archive failed its restore drill: {summary['archive']['error']}", summary
        )
    return summary


def _archive_drill(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.archive import drill
    from redis_maint.archive import restore as pitr

    # The drill restores into a private directory of its own: `directory` is not used.
    request = pitr.Request.bounded_as(ctx.drill_options(), Path(), force=False, to_ts=None)
    catch_up = ctx.settings.archive.interval.total_seconds() * 3 + CATCH_UP_SLACK_S
    target = ctx.settings.target.open()
    try:
        return drill.drill(
            ctx.check_env(),
            target,
            ctx.store,
            ctx.settings.instance,
            ctx.node_redis(),
            request,
            catch_up_s=catch_up,
        )
    finally:
        target.close()


def _drill(ctx: JobContext, target: Any, record: Any) -> dict[str, Any]:
    from redis_maint.backup import stored
    from redis_maint.checks import restore_drill

    result = stored.verify(
        target,
        record.location,
        record.id,
        catalog_files=record.files,
        checkpoint=ctx.checkpoint,
        progress=ctx.progress,
    )
    return restore_drill.add_deep(ctx.check_env(), target, record.location, result, ctx.drill_options())


JOB = Job(
    name="backup-verify",
    scope="deployment",  # once per slot across every sidecar
    description="weekly restore drill: download the newest backup, check it and load it in a throwaway Redis",
    settings_model=BackupVerifySettings,
    run=run,
    containers=lambda s: (True, "its restore drill runs in containers"),
)
