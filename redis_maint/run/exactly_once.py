"""What the daemon needs so that several sidecars run each scheduled slot once (history/slots.py).

- Every sidecar must name a slot the same way. `every` schedules fire on a grid anchored at the
  Unix epoch (`every 30s` at :00 and :30 of each minute), not at each daemon's start; cron slots
  are the cron's own fire times.
- The slot a run belongs to is read from the store's clock (PostgreSQL's), plus a small
  tolerance so a host whose clock runs slightly ahead of the database still names the slot it
  fires for. A host whose clock is minutes off fires at odd moments but names real slots, which
  the claims then give to one sidecar each.
- A claimed slot whose run died (SIGKILL: its lease lapsed, or its pid is gone on this host) is
  run again once, as `catch-up`, by the next sidecar that looks, if it is still within the
  misfire grace.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from redis_maint.history import slots
from redis_maint.history.leases import now_of
from redis_maint.history.runs import HistoryStore, Trigger
from redis_maint.redact import redact
from redis_maint.schedules import Schedule
from redis_maint.timeutil import utcnow

if TYPE_CHECKING:
    from redis_maint.run.runner import Runner

log = logging.getLogger("redis_maint.run.exactly_once")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A host clock ahead of the database's by up to this (capped at a quarter period) names the right slot.
SLOT_TOLERANCE = timedelta(milliseconds=500)
# A slot's run waits at most this long for another run of its job to finish before it is skipped.
MAX_LEASE_WAIT = timedelta(seconds=5)


def grid_floor(moment: datetime, interval: timedelta) -> datetime:
    return EPOCH + ((moment - EPOCH) // interval) * interval


def trigger(schedule: Schedule, tz: tzinfo, now: datetime) -> Any:
    """The APScheduler trigger; an `every` one starts on the epoch-anchored grid."""
    if schedule.kind != "every":
        return schedule.trigger(tz)
    from apscheduler.triggers.interval import IntervalTrigger

    start = grid_floor(now, schedule.interval)
    return IntervalTrigger(seconds=schedule.interval.total_seconds(), start_date=start, timezone=tz)


def period(schedule: Schedule, tz: tzinfo, now: datetime) -> timedelta | None:
    if schedule.kind == "every":
        return schedule.interval
    if schedule.kind != "cron":
        return None
    nxt = schedule.next_after(now, tz)
    after = schedule.next_after(nxt, tz) if nxt else None
    return None if after is None else after - nxt


def slot_at(
    schedule: Schedule, tz: tzinfo, now: datetime, tolerance: timedelta = SLOT_TOLERANCE
) -> datetime | None:
    """The slot a run firing at `now` belongs to: the last at or before `now` + tolerance (a quarter
    period at most), so a clock slightly behind the one that fired still names the slot fired for."""
    every = schedule.interval if schedule.kind == "every" else None
    moment = now + (min(tolerance, every / 4) if every else tolerance)
    if every:
        return grid_floor(moment, every)
    if schedule.kind == "cron":
        slot = schedule.previous_at_or_before(moment, tz)
        return None if slot is None else slot.astimezone(UTC)
    return None


def current_slot(store: HistoryStore, schedule: Schedule, tz: tzinfo) -> datetime | None:
    """The slot of a run firing now. While this host's clock agrees with the store's (within the
    tolerance), APScheduler fired on it: the last slot at or before it, never a later one. A host
    whose clock is off names the slot by the store's clock."""
    host, store_clock = utcnow(), now_of(store)
    if abs(store_clock - host) <= SLOT_TOLERANCE:
        return slot_at(schedule, tz, host, tolerance=timedelta(0))
    return slot_at(schedule, tz, store_clock)


def lease_wait(schedule: Schedule, tz: tzinfo, ttl: timedelta, now: datetime) -> timedelta:
    """How long a slot's run waits for the job's lease (a catch-up of the previous slot may hold it)."""
    every = period(schedule, tz, now) or MAX_LEASE_WAIT * 2
    return min(every / 2, ttl / 2, MAX_LEASE_WAIT)


def take_over_orphans(runner: Runner, name: str, grace: timedelta, **run: Any) -> list[datetime]:
    """Run once, as `catch-up`, each slot of `name` (this sidecar's scope) whose claimed run died
    within the grace; returns the slots this sidecar ran. Never raises."""
    ran: list[datetime] = []
    try:
        scope = runner.scope_of(name)
        found = slots.orphans(runner.store, name, scope, now_of(runner.store) - grace)
    except Exception as exc:
        log.warning("could not look for orphaned slots", extra={"job": name, "error": redact(str(exc))})
        return ran
    for slot in found:
        log.warning(
            "a slot's run died without an outcome; running it again as catch-up",
            extra={"job": name, "scheduled_for": slot.isoformat()},
        )
        try:
            runner.execute(name, trigger=Trigger.CATCH_UP, scheduled_for=slot, claim=True, **run)
            ran.append(slot)
        except slots.SlotTaken:
            continue  # another sidecar took it over first
        except Exception:
            log.exception("catch-up of an orphaned slot failed", extra={"job": name})
    return ran
