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
from redis_maint.history.db_errors import HistoryUnreachableError
from redis_maint.history.leases import now_of
from redis_maint.history.runs import HistoryStore, RunStatus, Trigger
from redis_maint.history.slots import Claim, SlotTaken
from redis_maint.redact import redact
from redis_maint.run import exactly_once, missed_slots
from redis_maint.run.interrupts import signals_cancel
from redis_maint.run.runner import build_runner, reap_interrupted
from redis_maint.timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from config.schema import Settings

log = logging.getLogger("redis_maint.run.daemon")

MISFIRE_GRACE_S = 3600
# Not a job: the daemon's own check for AOF rewrites left paused by a dead run (its history rows).
AOF_RESTORE = "aof-rewrite-restore"
# Not a job: the daemon's look for claimed slots whose run died, for jobs with long periods.
SLOT_FAILOVER = "slot-failover"


# A history server that is down when the daemon starts is waited for: retries back off to this.
STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 30.0


def open_store(url: str, stopping: threading.Event) -> HistoryStore:
    """The history store, retried with a backoff (each attempt logged) while its server is
    unreachable; SIGTERM/SIGINT meanwhile ends the daemon cleanly (exit 0). Other errors raise."""
    delay, attempt = STORE_RETRY_FIRST_S, 1
    while True:
        try:
            return HistoryStore(url)
        except HistoryUnreachableError as exc:
            log.warning(
                "history store unreachable; the daemon retries",
                extra={"attempt": attempt, "retry_in_s": delay, "error": str(exc)},
            )
        with signals_cancel(stopping):
            if stopping.wait(delay):
                log.info("daemon stopped before the history store answered")
                raise SystemExit(0)
        delay, attempt = min(delay * 2, STORE_RETRY_MAX_S), attempt + 1


class Daemon:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.store = open_store(settings.history_url, self.stopping)
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
        return Claim(name, self.runner.scope_of(name), at)

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

    # -- start-up -----------------------------------------------------------------------
    def reap(self) -> None:
        for name in REGISTRY:
            reap_interrupted(self.store, name)

    def restore_aof_rewrites(self, trigger: str = Trigger.CATCH_UP) -> int | None:
        """Restore auto-aof-rewrite-percentage left at 0 by a run that died, and record it.

        Returns the history row's id, or None when nothing needed restoring. Never raises:
        Redis may be down while the daemon starts; the next check retries.
        """
        note = self.settings.aof_guard_note
        if not note.exists():
            return None
        try:
            repair = self._restore_from(note)
            if repair is None:
                return None
            summary = {**repair.summary(), "note": str(note)}
            log.warning("restored auto-aof-rewrite-percentage left paused by a dead run", extra=summary)
            return self.store.record(
                AOF_RESTORE,
                trigger,
                RunStatus.SUCCEEDED,
                requested_by="daemon",
                summary=summary,
                config_hash=self.runner.config_hash,
            )
        except Exception as exc:
            log.warning(
                "could not check AOF rewrites left paused; retrying later",
                extra={"note": str(note), "error": redact(str(exc))},
            )
            return None

    def _restore_from(self, note):
        from redis_maint.redis_conn import connect
        from redis_maint.snapshot.aof_guard import restore_if_orphaned

        # The node whose AOF it is: node_url beside a Sentinel-managed node, else redis_url.
        client = connect(self.settings.node_redis_url, self.settings.redis_timeout)
        try:
            return restore_if_orphaned(client, note, self.store)
        finally:
            client.close()

    def catch_up(self) -> list[str]:
        """Jobs whose last success is older than their period (or that never succeeded) run now."""
        due = []
        now = utcnow()
        tz = self.settings.tz
        for name in REGISTRY:
            schedule = self.settings.job(name).schedule
            if schedule.kind == "off":
                continue
            last_ok = self.store.last(name, status=RunStatus.SUCCEEDED)
            nxt = schedule.next_after(now, tz)
            period = schedule.next_after(nxt, tz) - nxt
            if last_ok is not None and now - last_ok.started_at <= period:
                continue
            previous = schedule.previous_at_or_before(now, tz)
            last_any = self.store.last(name)
            if previous and last_ok and (last_any is None or last_any.started_at < previous):
                self.runner.record_slot(
                    self._slot(name, previous),
                    RunStatus.MISSED,
                    trigger=Trigger.SCHEDULED,
                    requested_by="daemon",
                    started_at=previous,
                    error="the daemon was not running at this scheduled time; catching up now",
                )
                self.catch_up_slots.setdefault(name, previous)
            due.append(name)
        return due

    def _previous_downtime(self) -> missed_slots.Downtime | None:
        try:
            return missed_slots.previous_downtime(self.store)
        except Exception as exc:  # evidence we cannot read must not keep the daemon from running
            log.error("could not read when the previous daemon stopped", extra={"error": redact(str(exc))})
            return None

    def record_missed_slots(self, until: datetime | None = None) -> dict[str, int]:
        """One `missed` row per slot that passed while no daemon ran (bounded per job); {job: slots}."""
        down = self.downtime
        if down is None:
            return {}
        until = until or utcnow()
        counts: dict[str, int] = {}
        for name in REGISTRY:
            try:
                counts[name] = self._record_missed(name, down, until)
            except Exception as exc:
                log.error(
                    "could not record the slots missed while the daemon was down",
                    extra={"job": name, "error": redact(str(exc))},
                )
        if any(counts.values()):
            log.warning(
                "slots missed while no daemon was running",
                extra={"down_from": isoformat(down.since), "down_to": isoformat(until), "missed": counts},
            )
        return {name: n for name, n in counts.items() if n}

    def _record_missed(self, name: str, down: missed_slots.Downtime, until: datetime) -> int:
        schedule = self.settings.job(name).schedule
        slots = missed_slots.missed(self.store, name, schedule, self.settings.tz, down, until)
        for row in missed_slots.rows(name, slots, down, until):
            # A slot another sidecar claimed (it ran it) is not missed: record_slot records nothing.
            slot = self._slot(name, row.pop("scheduled_for"))
            self.runner.record_slot(
                slot, RunStatus.MISSED, trigger=Trigger.SCHEDULED, requested_by="daemon", **row
            )
        if slots.last is not None:
            self.catch_up_slots[name] = slots.last
        return slots.total

    # -- run ----------------------------------------------------------------------------
    def run(self) -> int:
        self.started_at = utcnow()
        # First: start-up may wait on Redis or the store, and a SIGTERM then must still end cleanly.
        self._install_signal_handlers()
        self.downtime = self._previous_downtime()
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
