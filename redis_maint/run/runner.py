"""The one run path, for scheduled and ad hoc runs alike:
lease -> `running` row -> job -> outcome -> observers (metrics, notifications)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from jobs import get_job
from jobs.base import JobContext, Params, Progress
from redis_maint.errors import (
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    JobCancelledError,
    JobFailedError,
    LockHeldError,
    MaintenanceError,
)
from redis_maint.history.leases import Lease, active_holder
from redis_maint.history.runs import HistoryStore, Run, RunStatus
from redis_maint.observe import notify
from redis_maint.redact import redact
from redis_maint.run.current_run import RunRef, current_run
from redis_maint.run.interrupts import signals_cancel

log = logging.getLogger("redis_maint.run.runner")

RunObserver = Callable[[Run], None]
_observers: list[RunObserver] = []
_active: dict[int, JobContext] = {}
_active_lock = threading.Lock()


def add_observer(observer: RunObserver) -> None:
    """Called with every finished run (also skipped and missed ones). Errors are logged, never raised."""
    _observers.append(observer)


def active_runs() -> list[JobContext]:
    with _active_lock:
        return list(_active.values())


def default_requester() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def execute(
    settings: Any,
    job_name: str,
    *,
    trigger: str,
    requested_by: str | None = None,
    dry_run: bool = False,
    params: Params | dict[str, Any] | None = None,
    store: HistoryStore | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Run:
    """Run one job now and return its history row. Bad parameters raise UsageError before anything
    is recorded or locked."""
    job = get_job(job_name)
    parsed = job.parse_params(params)
    store = store or HistoryStore(settings.history_url)
    try:
        lease = Lease.acquire(store, job.name, settings.lock.lease_ttl)
    except LockHeldError as exc:
        log.warning("run skipped: lock held", extra={"job": job.name, "reason": str(exc)})
        run_id = store.record(job.name, trigger, RunStatus.SKIPPED, requested_by=requested_by, error=str(exc))
        return _notify(store.get(run_id))
    ctx = None
    try:
        reap_interrupted(store, job.name)
        run_id = store.start_run(job.name, trigger, requested_by)
        lease.attach_run(run_id)
        lease.start_heartbeat()
        ctx = JobContext(
            job=job,
            settings=settings,
            store=store,
            run_id=run_id,
            trigger=trigger,
            requested_by=requested_by,
            dry_run=dry_run,
            params=parsed,
            cancel=cancel or threading.Event(),
            progress=progress or Progress(),
            lease_lost=lease.lost,
        )
        with _active_lock:
            _active[run_id] = ctx
        log.info(
            "run started", extra={"job": job.name, "run_id": run_id, "trigger": trigger, "dry_run": dry_run}
        )
        # A foreground `run` turns SIGTERM/^C into a cancel, so the job's cleanup runs (a no-op in
        # the daemon's worker threads, where the daemon's own handler sets the same event).
        token = current_run.set(RunRef(job.name, run_id))
        try:
            with signals_cancel(ctx.cancel):
                status, summary, error = _invoke(ctx)
        finally:
            current_run.reset(token)
        if status == RunStatus.SUCCEEDED and not lease.still_held():
            # Another process took the job over: our work may overlap with its, so never "succeeded".
            status, error = RunStatus.FAILED, _lost_lease(job.name)
        store.finish_run(run_id, status, summary, error)
        log.log(
            logging.INFO if status == RunStatus.SUCCEEDED else logging.ERROR,
            "run finished",
            extra={"job": job.name, "run_id": run_id, "status": str(status), "error": error},
        )
    finally:
        if ctx is not None:
            with _active_lock:
                _active.pop(ctx.run_id, None)
            ctx.close()
        lease.release()
    run = store.get(run_id)
    # Notifications are part of the run path, so every caller (daemon, CLI) sends them exactly once.
    notify.after_run(settings, store, run)
    return _notify(run)


def _invoke(ctx: JobContext) -> tuple[RunStatus, dict[str, Any] | None, str | None]:
    t0 = time.monotonic()
    summary: dict[str, Any] | None = None
    try:
        summary = ctx.job.run(ctx) or {}
        status, error = RunStatus.SUCCEEDED, None
    except JobFailedError as exc:
        summary, status, error = exc.summary, RunStatus.FAILED, str(exc)
    except JobCancelledError as exc:
        status, error = RunStatus.INTERRUPTED, str(exc)
    except MaintenanceError as exc:
        status, error = RunStatus.FAILED, str(exc)
    except Exception as exc:  # a job's bug must never stop the daemon
        log.exception("job raised an unexpected error", extra={"job": ctx.job.name, "run_id": ctx.run_id})
        status, error = RunStatus.FAILED, f"unexpected {type(exc).__name__}: {redact(str(exc))}"
    # History stores JSON: anything a job left in its summary that JSON cannot hold becomes text.
    summary = json.loads(json.dumps(summary or {}, default=str))
    summary.setdefault("duration_s", round(time.monotonic() - t0, 3))
    if ctx.dry_run:
        summary["dry_run"] = True
    if recorded := ctx.params.recorded():
        summary["params"] = recorded
    return status, summary, error


def _lost_lease(job: str) -> str:
    return (
        f"{job}: lost its lease to another process before it finished (it could not renew it within "
        "lock.lease_ttl); see `redis-maint history --status running` for the run that took over"
    )


def _notify(run: Run) -> Run:
    for observer in list(_observers):
        try:
            observer(run)
        except Exception:
            log.exception("run observer failed", extra={"job": run.job, "run_id": run.id})
    return run


def reap_interrupted(store: HistoryStore, job: str) -> int:
    """Rows left `running` by a process that died become `interrupted`.

    Safe when nobody live holds the job's lease (or we hold it ourselves, before our own row exists).
    """
    holder = active_holder(store, job)
    stale = [r for r in store.running(job) if holder is None or r.id != holder.run_id]
    if stale:
        reason = "the process running this job stopped without recording an outcome (killed or crashed)"
        n = store.mark_interrupted([r.id for r in stale], reason)
        log.warning("marked interrupted", extra={"job": job, "runs": [r.id for r in stale], "count": n})
        return n
    return 0


def exit_code_for(run: Run) -> int:
    if run.status == RunStatus.SUCCEEDED:
        return EXIT_OK
    if run.status == RunStatus.SKIPPED:
        return EXIT_LOCKED
    return EXIT_FAILED
