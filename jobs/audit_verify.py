"""The `audit-verify` job: `redis-maint audit verify`, as a run in history. Never scheduled.

Recomputes the history's evidence chain, compares every run and backup row with its latest chained
record, and reads the newest checkpoints on the backup target (redis_maint/audit/). The summary is
the verification result; the run fails (exit 1) on any break, on a missing checkpoint, and when the
target cannot be read: without the checkpoints a history cut back to an earlier, valid chain cannot
be told apart, so the verification is incomplete and never reported as intact. Its own final row
is chained after the check.
"""

from __future__ import annotations

from typing import Any

from config.types import OnDemandSettings
from jobs.base import Job, JobContext
from redis_maint.errors import JobFailedError


class AuditVerifySettings(OnDemandSettings):
    """audit-verify runs only from `redis-maint audit verify`."""


def run(ctx: JobContext) -> dict[str, Any]:
    from redis_maint.audit.check import verify_against  # sqlalchemy: only when a run needs it

    result = verify_against(ctx.store.engine, ctx.settings.target.open, ctx.settings.instance)
    if not result["intact"]:
        raise JobFailedError(failure_message(result), result)
    return result


def failure_message(result: dict[str, Any]) -> str:
    breaks, checkpoint = result["breaks"], result["checkpoint"]
    if breaks:
        first = breaks[0]
        at = f"record {first['seq']}" if first["seq"] is not None else "a row outside the chain"
        more = f" ({result['breaks_total']} breaks in all)" if result["breaks_total"] > 1 else ""
        return (
            f"the history is not intact: first break at {at} ({first['kind']} {first['ref']}): "
            f"{first['how']}: {first['detail']}{more}"
        )
    return (
        f"the chain is intact ({result['records']} records), but the checkpoints on {checkpoint['target']} "
        f"could not be read, so a history cut back to an earlier chain would go unseen: {checkpoint.get('error')}. "
        "Fix access to the target and run `redis-maint audit verify` again"
    )


JOB = Job(
    name="audit-verify",
    description="recompute the history's hash chain and compare it with the checkpoints on the target; never scheduled",
    settings_model=AuditVerifySettings,
    run=run,
)
