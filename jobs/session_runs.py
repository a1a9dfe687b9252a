"""What session-sweep, session-delete and `redis-maint sessions` share: the key layout and batch sizes
from [sessions], the plan built from them, and a sweep run with the run's progress and deadline.

Not a job itself, so neither job imports the other.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.schema import SessionsSettings
    from jobs.base import JobContext
    from redis_maint import sessions


def layout(s: SessionsSettings) -> sessions.Layout:
    from redis_maint import sessions

    return sessions.Layout(
        pattern=s.key_pattern, created_field=s.created_field, org_field=s.organisation_field
    )


def batching(s: SessionsSettings) -> sessions.Batching:
    from redis_maint import sessions

    return sessions.Batching(scan_count=s.scan_count, read_batch=s.read_batch, act_batch=s.act_batch)


def plan(s: SessionsSettings, mode: sessions.Mode, dry_run: bool, **fields: Any) -> sessions.Plan:
    """A plan over the configured keys; `fields` are the Plan fields this run sets itself."""
    from redis_maint import sessions

    return sessions.Plan(mode=mode, dry_run=dry_run, layout=layout(s), **fields)


def run_plan(ctx: JobContext, plan: sessions.Plan) -> dict[str, Any]:
    """Sweep every primary with `plan`, drawing progress and honouring the run's deadline."""
    from redis_maint import sessions

    s = ctx.settings.sessions

    def on_tick(n: int) -> None:
        ctx.progress.advance(n)
        ctx.checkpoint()

    t0 = time.monotonic()
    try:
        report = sessions.sweep(
            ctx.redis(),
            ctx.settings.redis_url,
            plan,
            batching=batching(s),
            timeout=ctx.settings.redis_timeout,
            idle_cpu=s.idle_cpu,
            on_start=lambda total: ctx.progress.start(total, _label(plan), "keys"),
            on_tick=on_tick,
            sample_limit=s.unreadable_samples,
        )
    finally:
        ctx.progress.finish()
    summary = report.summary(time.monotonic() - t0)
    summary["mode"] = str(plan.mode)
    return summary


def _label(plan: sessions.Plan) -> str:
    what = "sweeping sessions" if plan.mode == "sweep" else "deleting sessions"
    return f"{what} (dry run)" if plan.dry_run else what
