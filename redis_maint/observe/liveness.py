"""Is the sidecar itself healthy? (/healthz). It describes the sidecar, not Redis:
an unreachable Redis is a failed health run, seen in metrics and alerts, not a sick sidecar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from redis_maint.history.runs import HistoryStore
from redis_maint.redact import redact
from redis_maint.timeutil import isoformat, utcnow

# A due time this far in the past means the scheduler's loop is no longer dispatching.
STALL_GRACE = timedelta(seconds=60)


def problems(scheduler: Any, store: HistoryStore, stuck_grace: timedelta, active: Iterable[Any]) -> list[str]:
    """Reasons the sidecar is unhealthy; empty when it is healthy. `active`: the daemon's runs in
    flight (each with job.name, run_id and deadline)."""
    return [*_scheduler_problems(scheduler), *_history_problems(store), *_stuck_runs(active, stuck_grace)]


def _scheduler_problems(scheduler: Any) -> list[str]:
    from apscheduler.schedulers.base import STATE_RUNNING

    if scheduler is None or scheduler.state != STATE_RUNNING:
        return ["scheduler is not running"]
    now = utcnow()
    late = [
        f"{job.id} was due at {isoformat(job.next_run_time)}"
        for job in scheduler.get_jobs()
        if job.next_run_time is not None and job.next_run_time < now - STALL_GRACE
    ]
    return [f"scheduler loop stalled: {'; '.join(late)}"] if late else []


def _history_problems(store: HistoryStore) -> list[str]:
    try:
        store.check_writable()
    except Exception as exc:
        return [f"history store not writable: {redact(str(exc))}"]
    return []


def _stuck_runs(active: Iterable[Any], grace: timedelta) -> list[str]:
    now = utcnow()
    return [
        f"run {ctx.run_id} of {ctx.job.name} is past its timeout (deadline {isoformat(ctx.deadline)})"
        for ctx in active
        if now > ctx.deadline + grace
    ]
