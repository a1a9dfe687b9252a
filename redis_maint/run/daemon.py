"""The daemon: APScheduler 3.x wired to the run path, with catch-up and a bounded drain.

APScheduler's defaults drop a run that starts 1 s late, swallow job exceptions and never
time out on shutdown; each of those is set or handled here. The daemon owns one Runner: every
scheduled, catch-up, missed and skipped run is written through it, so its observers (notifications,
metrics) see them all, and /healthz and the drain read the runs it has in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jobs import REGISTRY
from redis_maint.history.daemons import DaemonPublisher, Schedules
from redis_maint.history.leases import now_of
from redis_maint.history.runs import RunStatus, Trigger
from redis_maint.history.slots import Claim, SlotTaken
from redis_maint.redact import redact
from redis_maint.run import exactly_once, missed_slots, startup
from redis_maint.run.runner import build_runner
from redis_maint.run.startup import AOF_RESTORE
from redis_maint.timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from config.schema import Settings

log = logging.getLogger("redis_maint.run.daemon")

MISFIRE_GRACE_S = 3600
# Not a job: the daemon's look for claimed slots whose run died, for jobs with long periods.
SLOT_FAILOVER = "slot-failover"


class Daemon:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.store = startup.open_store(settings.history_url, self.stopping)
        self.runner = build_runner(settings, self.store)
        self.started_at: datetime | None = None
        self.scheduler = None
        self.endpoint = None
        self.metrics = None
        # The AOF archiver's thread (archive.enabled): redis_maint/archive/service.py.
        self.archiver = None
        # The previous daemon's last sign of life, read before our row supersedes it.
        self.downtime: missed_slots.Downtime | None = None
        # The slot each catch-up run stands in for: the newest one that passed while we were down.
        self.catch_up_slots: dict[str, datetime] = {}
        # Our row in the history store: `jobs` shows what this daemon has in force, `doctor` a stale one.
        self.publisher = DaemonPublisher(
            self.store, settings.daemon.heartbeat, settings.timezone, self.schedules_in_force
        )

    # -- wiring -------------------------------------------------------------------------
    def build_scheduler(self):
        from apscheduler.events import (
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
            EVENT_SCHEDULER_STARTED,
        )
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.blocking import BlockingScheduler

        scheduler = BlockingScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=len(REGISTRY) * 2 + 1)},
            job_defaults={"misfire_grace_time": MISFIRE_GRACE_S, "coalesce": True, "max_instances": 1},
            timezone=self.settings.tz,
        )
        for name in REGISTRY:
            # `every` slots on the epoch-anchored grid, the same on every sidecar (run/exactly_once.py).
            trigger = exactly_once.trigger(self.settings.job(name).schedule, self.settings.tz, utcnow())
            if trigger is None:
                continue
            scheduler.add_job(self._fire, trigger, args=[name, Trigger.SCHEDULED], id=name, name=name)
        # A run killed while AOF rewrites were paused is noticed once its lease lapses.
        scheduler.add_job(
            self.restore_aof_rewrites,
            "interval",
            seconds=self.settings.lock.lease_ttl.total_seconds(),
            args=[Trigger.SCHEDULED],
            id=AOF_RESTORE,
            name=AOF_RESTORE,
        )
        # A sidecar that died mid-run: its slot runs again elsewhere (jobs with short periods check at each slot).
        scheduler.add_job(
            self.fail_over_slots,
            "interval",
            seconds=self.settings.lock.lease_ttl.total_seconds(),
            id=SLOT_FAILOVER,
            name=SLOT_FAILOVER,
        )
        scheduler.add_listener(self._shutdown_scheduler, EVENT_SCHEDULER_STARTED)
        scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        # Next-run times move when the scheduler starts and when a job fires: publish them then.
        scheduler.add_listener(
            lambda _e: self.publisher.beat_soon(), EVENT_SCHEDULER_STARTED | EVENT_JOB_SUBMITTED
        )
        self.scheduler = scheduler
        return scheduler

    def _fire(self, name: str, trigger: str, scheduled_for: datetime | None = None) -> None:
        """Every scheduled or catch-up run; never raises into APScheduler."""
        if self.stopping.is_set():
            return
        try:
            if trigger == Trigger.SCHEDULED:
                scheduled_for = self._slot_of(name)
            if not self._eligible(name, scheduled_for):
                return
            if trigger == Trigger.SCHEDULED:
                # First the slots whose run died elsewhere, so the one due now follows without a gap.
                exactly_once.take_over_orphans(
                    self.runner, name, self._grace(), requested_by="daemon", cancel=self.stopping
                )
            schedule = self.settings.job(name).schedule
            self.runner.execute(
                name,
                trigger=trigger,
                requested_by="daemon",
                cancel=self.stopping,
                scheduled_for=scheduled_for,
                claim=True,
                lease_wait=exactly_once.lease_wait(
                    schedule, self.settings.tz, self.settings.lock.lease_ttl, utcnow()
                ),
            )
        except SlotTaken as taken:
            # Another sidecar claimed this slot: it runs it; nothing recorded here.
            log.debug("slot claimed by another sidecar", extra={"job": name, "why": str(taken)})
            if self.metrics is not None:
                self.metrics.claim_lost(name)
        except Exception:
            log.exception("run path failed", extra={"job": name})

    def _grace(self) -> timedelta:
        return timedelta(seconds=MISFIRE_GRACE_S)

    def fail_over_slots(self) -> None:
        """Claimed slots whose run died, for jobs whose next slot is further away than this check."""
        every = self.settings.lock.lease_ttl
        for name in REGISTRY:
            schedule = self.settings.job(name).schedule
            span = exactly_once.period(schedule, self.settings.tz, utcnow())
            if span is None or span <= every * 2 or self.stopping.is_set():
                continue
            if self._eligible(name, None):
                exactly_once.take_over_orphans(
                    self.runner, name, self._grace(), requested_by="daemon", cancel=self.stopping
                )

    def _catch_up_slot(self, name: str) -> datetime | None:
        """The newest missed slot, else the current one: never one the store's clock has not reached."""
        slot = self.catch_up_slots.get(name)
        if slot is None or slot > now_of(self.store):
            return self._slot_of(name)
        return slot

    def _slot(self, name: str, at: datetime) -> Claim:
        return startup.slot(self.runner, name, at)

    def _eligible(self, name: str, scheduled_for: datetime | None) -> bool:
        """Whether this sidecar takes the slot (Job.eligible). One that does not records nothing:
        the sidecar beside the eligible node runs it."""
        try:
            why_not = REGISTRY[name].eligible(self.settings)
        except Exception as exc:  # a check that fails must not lose the slot: the run records why
            log.warning(
                "could not tell whether this sidecar may run the slot; running it",
                extra={"job": name, "error": redact(str(exc))},
            )
            return True
        if why_not is not None:
            log.debug(
                "not eligible for this slot",
                extra={"job": name, "scheduled_for": isoformat(scheduled_for), "why": why_not},
            )
            return False
        return True

    def _slot_of(self, name: str) -> datetime | None:
        """The slot a scheduled run firing now belongs to (APScheduler does not pass it on), by the
        history store's clock, so every sidecar names it alike."""
        return exactly_once.current_slot(self.store, self.settings.job(name).schedule, self.settings.tz)

    def _job_name(self, job_id: str) -> str | None:
        name = job_id.split(":", 1)[0]
        return name if name in REGISTRY else None  # the daemon's own checks have no history

    def _on_missed(self, event) -> None:
        try:
            name = self._job_name(event.job_id)
            if name is None:
                return
            # Only if no sidecar claimed the slot (then the missed row holds the claim).
            self.runner.record_slot(
                self._slot(name, event.scheduled_run_time),
                RunStatus.MISSED,
                trigger=Trigger.SCHEDULED,
                requested_by="daemon",
                started_at=event.scheduled_run_time,
                error=f"scheduled for {event.scheduled_run_time.isoformat()} but not started within the misfire grace",
            )
        except Exception:  # listeners must never raise: APScheduler swallows it
            log.exception("could not record a missed run")

    def _on_max_instances(self, event) -> None:
        try:
            name = self._job_name(event.job_id)
            if name is None:
                return
            times = ", ".join(t.isoformat() for t in event.scheduled_run_times)
            self.runner.record_slot(
                self._slot(name, max(event.scheduled_run_times)),
                RunStatus.SKIPPED,
                trigger=Trigger.SCHEDULED,
                requested_by="daemon",
                error=f"run due at {times} skipped: the previous run of {name!r} is still running",
            )
        except Exception:
            log.exception("could not record a skipped run")

    def schedules_in_force(self) -> Schedules:
        """Each job's schedule and its next run as APScheduler has it (None: off, or not started yet)."""
        next_runs: dict[str, datetime] = {}
        for job in self.scheduler.get_jobs() if self.scheduler is not None else []:
            name = self._job_name(job.id)
            at = getattr(job, "next_run_time", None)  # unset on jobs added before start
            if name is not None and at is not None:
                next_runs[name] = min(at, next_runs.get(name, at))  # a catch-up run counts too
        return {
            name: {
                "schedule": str(self.settings.job(name).schedule),
                "next_run": isoformat(next_runs.get(name)),
            }
            for name in REGISTRY
        }

    # -- start-up (redis_maint/run/startup.py) --------------------------------------------
    def reap(self) -> None:
        startup.reap(self.store)

    def restore_aof_rewrites(self, trigger: str = Trigger.CATCH_UP) -> int | None:
        """Restore AOF rewrites left paused by a dead run and record it (row id, or None); never raises."""
        return startup.restore_aof_rewrites(self.settings, self.store, self.runner, trigger)

    def catch_up(self) -> list[str]:
        """Jobs whose last success is older than their period (or that never succeeded) run now."""
        return startup.catch_up(self.settings, self.store, self.runner, self.catch_up_slots)

    def record_missed_slots(self, until: datetime | None = None) -> dict[str, int]:
        """One `missed` row per slot that passed while no daemon ran (bounded per job); {job: slots}."""
        if self.downtime is None:
            return {}
        return startup.record_missed_slots(
            self.settings, self.store, self.runner, self.downtime, until or utcnow(), self.catch_up_slots
        )

    # -- run ----------------------------------------------------------------------------
    def run(self) -> int:
        self.started_at = utcnow()
        # First: start-up may wait on Redis or the store, and a SIGTERM then must still end cleanly.
        self._install_signal_handlers()
        self.downtime = startup.previous_downtime(self.store)
        self.publisher.start()
        try:
            return self._run()
        except BaseException:
            self.publisher.stop("exited on an error (see its log)")
            raise

    def _run(self) -> int:
        self.reap()
        self.restore_aof_rewrites()
        scheduler = self.build_scheduler()
        self.record_missed_slots()
        if self.settings.daemon.catch_up:
            for name in self.catch_up():
                scheduler.add_job(
                    self._fire,
                    "date",
                    run_date=utcnow(),
                    args=[name, Trigger.CATCH_UP, self._catch_up_slot(name)],
                    id=f"{name}:catch-up",
                )
        self.start_archiver()
        self.start_observability()
        schedules = {name: str(self.settings.job(name).schedule) for name in REGISTRY}
        log.info("daemon started", extra={"pid": os.getpid(), "schedules": schedules})
        scheduler.start()  # blocks until shutdown()
        return self.drain()

    def start_archiver(self) -> None:
        """The AOF archiver as a long-lived thread when archive.enabled (it takes its own lease and
        archives only while this sidecar's node is the primary)."""
        if not self.settings.archive.enabled:
            return
        from redis_maint.run.archiving import build_service

        self.archiver = build_service(self.settings, self.store, config_hash=self.runner.config_hash)
        self.archiver.start()
        log.info(
            "archiver thread started", extra={"interval_s": self.settings.archive.interval.total_seconds()}
        )

    def stop_archiver(self) -> None:
        if self.archiver is not None:
            self.archiver.stop(timeout=self.settings.daemon.drain_grace.total_seconds())
            self.archiver = None

    def start_observability(self) -> None:
        """Metrics from every run, and /healthz + /metrics when http.port is not 0."""
        from redis_maint.observe import liveness
        from redis_maint.observe.http_endpoint import HttpEndpoint
        from redis_maint.observe.metrics import Metrics

        metrics = Metrics(self.store, list(REGISTRY), self.settings.instance)
        self.runner.add_observer(metrics.observe)
        self.metrics = metrics
        if self.archiver is not None:
            metrics.archive_clock = self.archiver.redis_now
        http = self.settings.http
        if http.port == 0:
            return
        self.endpoint = HttpEndpoint(
            http.bind,
            http.port,
            health=lambda: liveness.problems(
                self.scheduler, self.store, http.stuck_grace, self.runner.active_runs()
            ),
            metrics=metrics.exposition,
        )
        self.endpoint.start()

    def _install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self.stopping.set()
            # Nothing that takes a lock here: the signal may land while this very thread holds one
            # (APScheduler's job store, or its executor's while submitting a job), and shutdown()
            # takes both. A thread of its own waits for them instead of deadlocking.
            threading.Thread(target=self._stop_requested, args=(signum,), name="stop", daemon=True).start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _stop_requested(self, signum: int) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        self._shutdown_scheduler()

    def _shutdown_scheduler(self, _event=None) -> None:
        """Stop scheduling if a stop was requested; before the scheduler runs, its start event does it."""
        from apscheduler.schedulers import SchedulerNotRunningError

        if not self.stopping.is_set() or self.scheduler is None:
            return
        # Not started yet (its start event calls us again) or already stopped: nothing to do.
        with contextlib.suppress(SchedulerNotRunningError):
            # Never while a pass over the due jobs runs: shutdown() marks the scheduler stopped before
            # it takes the job store's lock, and the pass then fails to remove a one-shot job it just
            # fired (JobLookupError out of start(): exit 1). Paused, no pass starts; remove_all_jobs
            # takes that lock, so it waits for the pass in progress.
            self.scheduler.pause()
            self.scheduler.remove_all_jobs()
            # wait=False: the drain below waits for running jobs, with its own deadline.
            self.scheduler.shutdown(wait=False)

    def drain(self) -> int:
        """Let running jobs finish within the grace period, then mark the rest interrupted."""
        self.stop_archiver()
        deadline = time.monotonic() + self.settings.daemon.drain_grace.total_seconds()
        while self.runner.active_runs() and time.monotonic() < deadline:
            time.sleep(0.1)
        leftovers = self.runner.active_runs()
        if self.endpoint is not None:
            self.endpoint.stop()
        if leftovers:
            ids = [ctx.run_id for ctx in leftovers]
            self.store.mark_interrupted(
                ids, "the daemon stopped before this run finished (drain grace exceeded)"
            )
            log.warning("runs interrupted at shutdown", extra={"runs": ids})
            self.publisher.stop("clean shutdown; runs past the drain grace were marked interrupted")
            logging.shutdown()
            os._exit(0)  # worker threads cannot be killed; their leases lapse
        self.publisher.stop()
        log.info("daemon stopped")
        return 0
