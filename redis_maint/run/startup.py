"""What the daemon does once before it schedules anything: open the history store (waiting for its
server), then write the rows owed for the time it was down.

Each later step reads the store and writes through the daemon's Runner, so its observers see the
rows. `Daemon` (redis_maint/run/daemon.py) calls them in order: mark dead rows interrupted, restore
AOF rewrites a dead run left paused, record the slots missed while no daemon ran, then pick the jobs
to catch up.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jobs import REGISTRY
from redis_maint.history.db_errors import HistoryUnreachableError
from redis_maint.history.runs import HistoryStore, RunStatus, Trigger
from redis_maint.history.slots import Claim
from redis_maint.redact import redact
from redis_maint.run import missed_slots
from redis_maint.run.interrupts import signals_cancel
from redis_maint.run.runner import Runner, reap_interrupted
from redis_maint.timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from config.schema import Settings
    from redis_maint.snapshot.aof_guard import Repair

log = logging.getLogger("redis_maint.run.daemon")

# Not a job: the daemon's own check for AOF rewrites left paused by a dead run (its history rows).
AOF_RESTORE = "aof-rewrite-restore"


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


def slot(runner: Runner, name: str, at: datetime) -> Claim:
    return Claim(name, runner.scope_of(name), at)


def reap(store: HistoryStore) -> None:
    for name in REGISTRY:
        reap_interrupted(store, name)


def restore_aof_rewrites(settings: Settings, store: HistoryStore, runner: Runner, trigger: str) -> int | None:
    """Restore auto-aof-rewrite-percentage left at 0 by a run that died, and record it.

    Returns the history row's id, or None when nothing needed restoring. Never raises:
    Redis may be down while the daemon starts; the next check retries.
    """
    note = settings.aof_guard_note
    if not note.exists():
        return None
    try:
        repair = _restore_from(settings, store, note)
        if repair is None:
            return None
        summary = {**repair.summary(), "note": str(note)}
        log.warning("restored auto-aof-rewrite-percentage left paused by a dead run", extra=summary)
        return store.record(
            AOF_RESTORE,
            trigger,
            RunStatus.SUCCEEDED,
            requested_by="daemon",
            summary=summary,
            config_hash=runner.config_hash,
        )
    except Exception as exc:
        log.warning(
            "could not check AOF rewrites left paused; retrying later",
            extra={"note": str(note), "error": redact(str(exc))},
        )
        return None


def _restore_from(settings: Settings, store: HistoryStore, note: Path) -> Repair | None:
    from redis_maint.redis_conn import connect
    from redis_maint.snapshot.aof_guard import restore_if_orphaned

    # The node whose AOF it is: node_url beside a Sentinel-managed node, else redis_url.
    client = connect(settings.node_redis_url, settings.redis_timeout)
    try:
        return restore_if_orphaned(client, note, store)
    finally:
        client.close()


def catch_up(
    settings: Settings, store: HistoryStore, runner: Runner, slots: dict[str, datetime]
) -> list[str]:
    """Jobs whose last success is older than their period (or that never succeeded) run now.
    A job whose previous slot has no run gets a `missed` row for it, kept in `slots` (unless a
    slot is there already) as the one its catch-up run belongs to."""
    due = []
    now = utcnow()
    tz = settings.tz
    for name in REGISTRY:
        schedule = settings.job(name).schedule
        if schedule.kind == "off":
            continue
        last_ok = store.last(name, status=RunStatus.SUCCEEDED)
        nxt = schedule.next_after(now, tz)
        period = schedule.next_after(nxt, tz) - nxt
        if last_ok is not None and now - last_ok.started_at <= period:
            continue
        previous = schedule.previous_at_or_before(now, tz)
        last_any = store.last(name)
        if previous and last_ok and (last_any is None or last_any.started_at < previous):
            runner.record_slot(
                slot(runner, name, previous),
                RunStatus.MISSED,
                trigger=Trigger.SCHEDULED,
                requested_by="daemon",
                started_at=previous,
                error="the daemon was not running at this scheduled time; catching up now",
            )
            slots.setdefault(name, previous)
        due.append(name)
    return due


def previous_downtime(store: HistoryStore) -> missed_slots.Downtime | None:
    try:
        return missed_slots.previous_downtime(store)
    except Exception as exc:  # evidence we cannot read must not keep the daemon from running
        log.error("could not read when the previous daemon stopped", extra={"error": redact(str(exc))})
        return None


def record_missed_slots(
    settings: Settings,
    store: HistoryStore,
    runner: Runner,
    down: missed_slots.Downtime,
    until: datetime,
    slots: dict[str, datetime],
) -> dict[str, int]:
    """One `missed` row per slot that passed while no daemon ran (bounded per job); {job: slots}.
    Each job's newest missed slot goes into `slots`: its catch-up run belongs to it."""
    counts: dict[str, int] = {}
    for name in REGISTRY:
        try:
            counts[name] = _record_missed(settings, store, runner, name, down, until, slots)
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


def _record_missed(
    settings: Settings,
    store: HistoryStore,
    runner: Runner,
    name: str,
    down: missed_slots.Downtime,
    until: datetime,
    slots: dict[str, datetime],
) -> int:
    schedule = settings.job(name).schedule
    found = missed_slots.missed(store, name, schedule, settings.tz, down, until)
    for row in missed_slots.rows(name, found, down, until):
        # A slot another sidecar claimed (it ran it) is not missed: record_slot records nothing.
        claim = slot(runner, name, row.pop("scheduled_for"))
        runner.record_slot(claim, RunStatus.MISSED, trigger=Trigger.SCHEDULED, requested_by="daemon", **row)
    if found.last is not None:
        slots[name] = found.last
    return found.total
