"""The one run path, for scheduled runs, ad hoc runs and operator operations alike:
parameters -> pre-check -> lease -> `running` row -> job -> outcome -> observers.

A Runner holds its observers and the runs it has in flight; nothing here is module state.
The daemon owns one Runner (its /healthz and its drain read the runs in flight), and the CLI
builds one per process (`App.runner()`). Notifications and metrics are both observers: each is
called with every row the Runner writes (succeeded, failed, interrupted, skipped, missed).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobs import get_job
from jobs.base import JobContext, Params, Progress
from redis_maint.errors import (
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    JobCancelledError,
    JobFailedError,
    MaintenanceError,
    UsageError,
)
from redis_maint.history.leases import Lease, held_error, live_holders
from redis_maint.history.runs import HistoryStore, Run, RunStatus
from redis_maint.history.slots import (
    Claim,
    SlotTaken,
    fenced_outcome,
    open_run,
    record_claimed,
    scope_key,
)
from redis_maint.provenance import config_hash, requester
from redis_maint.redact import redact
from redis_maint.run.current_run import RunRef, current_run
from redis_maint.run.interrupts import signals_cancel

if TYPE_CHECKING:
    from config.schema import Settings

log = logging.getLogger("redis_maint.run.runner")

RunObserver = Callable[[Run], None]
"""Called with every row a Runner writes. Its errors are logged, never raised."""

# What the run path adds to a job's summary (a job's own summary may hold the same names).
RUN_PATH_KEYS = ("duration_s", "dry_run", "params")


class Runner:
    def __init__(
        self, settings: Settings, store: HistoryStore | None = None, observers: Iterable[RunObserver] = ()
    ):
        self.settings = settings
        self.store = store or HistoryStore(settings.history_url)
        self._observers: list[RunObserver] = list(observers)
        self._active: dict[int, JobContext] = {}
        self._active_lock = threading.Lock()
        # Every row this Runner writes records the settings it runs under (masked, hashed).
        self.config_hash = config_hash(settings)

    def add_observer(self, observer: RunObserver) -> None:
        self._observers.append(observer)

    def active_runs(self) -> list[JobContext]:
        """Runs of this Runner that have a `running` row now."""
        with self._active_lock:
            return list(self._active.values())

    def execute(
        self,
        job_name: str,
        *,
        trigger: str,
        requested_by: str | None = None,
        dry_run: bool = False,
        params: Params | dict[str, Any] | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        scheduled_for: datetime | None = None,
        claim: bool = False,
        lease_wait: timedelta | None = None,
    ) -> Run:
        """Run one job now and return its history row.

        Bad parameters, and a request its job's pre-check refuses, raise UsageError before
        anything is locked or recorded (exit 2, no row). `scheduled_for` is the schedule slot a
        scheduled or catch-up run belongs to; with `claim` (the daemon), the run claims that slot
        first (history/slots.py) and raises SlotTaken, recording nothing, when another sidecar has
        it. `lease_wait`: how long a claimed slot waits for another run of the job to finish before
        it is recorded skipped.
        """
        job = get_job(job_name)
        parsed = job.parse_params(params)
        scope = self.scope_of(job.name)
        slot = None
        if claim and scheduled_for is not None:
            slot = Claim(job.name, scope, scheduled_for, takeover=trigger == "catch-up")
        refused = self._pre_check(job.name, parsed)
        if refused is not None:
            return self._refused(job.name, trigger, requested_by, refused, scheduled_for, slot)
        lease = Lease(self.store, job.name, self.settings.lock.lease_ttl, scope)
        opened = open_run(
            self.store,
            lease,
            trigger=trigger,
            requested_by=requested_by,
            config_hash=self.config_hash,
            claim=slot,
            scheduled_for=scheduled_for,
            wait_s=lease_wait.total_seconds() if lease_wait else 0.0,
            skipped_error=lambda holder: str(held_error(job.name, holder)),
        )
        if opened.status == RunStatus.SKIPPED:
            log.warning("run skipped: lock held", extra={"job": job.name, "holder": opened.holder.describe()})
            return self._observed(self.store.get(opened.run_id))
        run_id = opened.run_id
        ctx = None
        try:
            lease.start_heartbeat()
            ctx = JobContext(
                job=job,
                settings=self.settings,
                store=self.store,
                run_id=run_id,
                trigger=trigger,
                requested_by=requested_by,
                dry_run=dry_run,
                params=parsed,
                cancel=cancel or threading.Event(),
                progress=progress or Progress(),
                lease_lost=lease.lost,
                fence=lease.fence,
                fence_check=lease.still_held,
            )
            with self._active_lock:
                self._active[run_id] = ctx
            self._run_job(ctx, lease, slot)
        finally:
            if ctx is not None:
                with self._active_lock:
                    self._active.pop(ctx.run_id, None)
                ctx.close()
            lease.release()
        return self._observed(self.store.get(run_id))

    def scope_of(self, job_name: str) -> str:
        """The claim and lease scope of a job here: "deployment", or this sidecar's Redis node."""
        return scope_key(get_job(job_name).scope_in(self.settings), self.settings.node_redis_url)

    def _refused(self, job, trigger, requested_by, error, scheduled_for, slot: Claim | None) -> Run:
        if slot is None:
            return self.record(
                job,
                trigger,
                RunStatus.FAILED,
                requested_by=requested_by,
                error=error,
                scheduled_for=scheduled_for,
            )
        run_id = record_claimed(
            self.store,
            slot,
            RunStatus.FAILED,
            trigger=trigger,
            requested_by=requested_by,
            config_hash=self.config_hash,
            error=error,
        )
        if run_id is None:
            raise SlotTaken(f"{job} slot {scheduled_for} is claimed")
        return self._observed(self.store.get(run_id))

    def record_slot(self, slot: Claim, status: RunStatus, *, trigger: str, **kwargs: Any) -> Run | None:
        """A skipped or missed row for a slot nobody claimed (it then holds the claim); None when
        another sidecar claimed it (nothing recorded)."""
        run_id = record_claimed(
            self.store, slot, status, trigger=trigger, config_hash=self.config_hash, **kwargs
        )
        return None if run_id is None else self._observed(self.store.get(run_id))

    def record(
        self,
        job: str,
        trigger: str,
        status: RunStatus,
        *,
        requested_by: str | None = None,
        error: str | None = None,
        started_at: datetime | None = None,
        scheduled_for: datetime | None = None,
        summary: dict[str, Any] | None = None,
    ) -> Run:
        """A row for a run that never ran (skipped, missed, refused by a failed pre-check), observed
        like any other."""
        run_id = self.store.record(
            job,
            trigger,
            status,
            requested_by=requested_by,
            error=error,
            started_at=started_at,
            scheduled_for=scheduled_for,
            summary=summary,
            config_hash=self.config_hash,
        )
        return self._observed(self.store.get(run_id))

    # -- steps --------------------------------------------------------------------------------
    def _pre_check(self, job: str, params: Params) -> str | None:
        """A job's Params may override `before_lease(settings, store)`: checks of the request against
        the world (the backup exists and is not pruned, no Redis runs on the restore directory).

        Its UsageError is raised (exit 2, nothing recorded). Any other error (S3 unreachable, a
        hostile manifest) is returned as the error of a failed row, so it is recorded and notified
        without running the job into the same wall a second time.
        """
        try:
            params.before_lease(self.settings, self.store)
        except UsageError:
            raise
        except MaintenanceError as exc:
            return str(exc)
        except Exception as exc:
            log.exception("pre-check raised an unexpected error", extra={"job": job})
            return f"unexpected {type(exc).__name__}: {redact(str(exc))}"
        return None

    def _run_job(self, ctx: JobContext, lease: Lease, slot: Claim | None = None) -> None:
        name, run_id = ctx.job.name, ctx.run_id
        log.info(
            "run started",
            extra={"job": name, "run_id": run_id, "trigger": ctx.trigger, "dry_run": ctx.dry_run},
        )
        # A foreground `run` turns SIGTERM/^C into a cancel, so the job's cleanup runs (a no-op in
        # the daemon's worker threads, where the daemon's own handler sets the same event).
        token = current_run.set(RunRef(name, run_id))
        try:
            with signals_cancel(ctx.cancel):
                status, summary, error = _invoke(ctx)
        finally:
            current_run.reset(token)
        # Fenced: in the transaction that records the outcome, the lease row must still carry our
        # token, else another process took the job over and this run is never "succeeded".
        outcome: dict[str, Any] = {}

        def fenced(conn, status_in, error_in):
            result = fenced_outcome(lease, slot, run_id, _lost_lease(name))(conn, status_in, error_in)
            outcome["status"], outcome["error"] = result
            return result

        self.store.finish_run(run_id, status, summary, error, fenced=fenced)
        status, error = outcome.get("status", status), outcome.get("error", error)
        log.log(
            logging.INFO if status == RunStatus.SUCCEEDED else logging.ERROR,
            "run finished",
            extra={"job": name, "run_id": run_id, "status": str(status), "error": error},
        )

    def _observed(self, run: Run) -> Run:
        for observer in list(self._observers):
            try:
                observer(run)
            except Exception:
                log.exception("run observer failed", extra={"job": run.job, "run_id": run.id})
        return run


def build_runner(settings: Settings, store: HistoryStore | None = None) -> Runner:
    """The Runner of a process, with the observers every process has: notifications.
    The daemon adds metrics to its own."""
    from redis_maint.observe.notify import Notifier

    store = store or HistoryStore(settings.history_url)
    runner = Runner(settings, store)
    runner.add_observer(Notifier(settings.notify, settings.instance, store))
    return runner


def execute(settings: Settings, job_name: str, *, store: HistoryStore | None = None, **kwargs: Any) -> Run:
    """One run on a Runner of its own (scripts, tests, callers not yet given one); the CLI's
    commands use `App.runner()`."""
    return build_runner(settings, store).execute(job_name, **kwargs)


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


def default_requester() -> str:
    """$USER, else $LOGNAME, else the OS user (a `docker compose exec` sets neither variable)."""
    return requester()


def reap_interrupted(store: HistoryStore, job: str) -> int:
    """Rows left `running` by a process that died become `interrupted`.

    A row is alive while a live holder of one of the job's leases (any scope) runs it.
    """
    alive = {holder.run_id for _job, holder in live_holders(store, job)}
    stale = [r for r in store.running(job) if r.id not in alive]
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
