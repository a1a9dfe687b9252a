"""The `aof-check` job: redis-check-aof and redis-check-rdb on a snapshot, in a throwaway container.

It never checks live files: it takes the backup's consistent snapshot (without BGSAVE: it checks
what is on disk) into docker.snapshot_dir, checks that copy, and removes it. Any verdict other
than `ok` fails the run (exit 1) with the verdicts in the summary; `--fix` is never run.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from config.types import JobSettings, PositiveDuration, ScheduleField, schedule_default
from jobs.base import Job, JobContext
from redis_maint.errors import JobFailedError


class AofCheckSettings(JobSettings):
    schedule: ScheduleField = schedule_default("30 3 * * *")
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=30), description="the run fails once it has run this long"
    )
    include_rdb: bool = Field(default=True, description="also check dump.rdb with redis-check-rdb")
    rewrite_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="how long to wait for a running AOF rewrite to finish before copying",
    )


def run(ctx: JobContext) -> dict[str, Any]:
    s: AofCheckSettings = ctx.job_settings
    staging = Path(ctx.settings.docker.snapshot_dir) / f"aof-check-{ctx.run_id}"
    if ctx.dry_run:
        return {"checks": [], "would_snapshot": ctx.settings.data_dir, "staging": str(staging), **_image(ctx)}
    return _check(ctx, s, staging)


def _check(ctx: JobContext, s: AofCheckSettings, staging: Path) -> dict[str, Any]:
    # Infrastructure loads when the job runs: listing jobs and reading settings stays light.
    from redis_maint.checks import integrity
    from redis_maint.snapshot.datafiles import discover_layout
    from redis_maint.snapshot.take import take_snapshot

    data_dir = Path(ctx.settings.data_dir)
    # No BGSAVE here, so a Redis that never saved has no RDB: check the AOF alone then.
    rdb = discover_layout(ctx.node_redis()).rdb  # the node whose files data_dir holds
    with_rdb = s.include_rdb and (data_dir / rdb).exists()
    try:
        snapshot = take_snapshot(
            ctx.node_redis(),
            data_dir,
            staging,
            checkpoint=ctx.checkpoint,
            bgsave=False,
            include_rdb=with_rdb,
            rewrite_timeout=s.rewrite_timeout,
            guard_note=ctx.settings.aof_guard_note,
        )
        checks = ctx.check_snapshot(snapshot)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = {
        "checks": checks,
        "skipped": []
        if with_rdb or not s.include_rdb
        else [f"{rdb}: not in the data dir (Redis never saved)"],
        "files": [f.to_json() for f in snapshot.files],
        "server": snapshot.server,
        "timings": snapshot.timings,
        **_image(ctx),
    }
    if not integrity.checks_ok(checks):
        raise JobFailedError(f"integrity check failed: {integrity.describe_failures(checks)}", summary)
    return summary


def _image(ctx: JobContext) -> dict[str, Any]:
    return {"image": ctx.settings.check_image}


JOB = Job(
    name="aof-check",
    scope="node",  # once per slot for each Redis node, by the sidecar beside it
    description="redis-check-aof/rdb on a snapshot of the data files, in a throwaway container",
    settings_model=AofCheckSettings,
    run=run,
    containers=lambda s: (True, "runs redis-check-aof/rdb in a container"),
)
