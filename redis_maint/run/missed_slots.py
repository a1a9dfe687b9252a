"""Every schedule slot that passed while no daemon was running, found when a daemon starts.

"While no daemon was running" runs from the last sign of life of the previous daemon using this
history store (its clean stop, else its last heartbeat; with no daemon row at all, the newest run
a daemon wrote) to now. With no history at all, nothing was missed. A slot a run already belongs
to (a dead daemon may have run one after its last heartbeat) is not missed: the look-back starts
after the job's newest recorded slot.

Slots come from the job's schedule: cron fire times from APScheduler's CronTrigger, and `every`
slots in the previous daemon's phase (its newest recorded slot, else the next run it published).
Past MAX_ROWS slots for a job, the first MAX_ROWS get a row each and one more row counts the rest.

APScheduler never sees these slots (its job store is in memory and starts empty), so its own
misfire events cannot record them twice; the catch-up run belongs to the newest missed slot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select

from redis_maint.history import db, db_errors
from redis_maint.history.daemons import all_daemons
from redis_maint.history.leases import PROCESS_TOKEN
from redis_maint.history.runs import HistoryStore, Trigger
from redis_maint.schedules import Schedule
from redis_maint.timeutil import isoformat, parse_iso

log = logging.getLogger("redis_maint.run.missed_slots")

MAX_ROWS = 1000
# Cron slots past the first MAX_ROWS are counted one by one (~30 µs each); past this many the
# count row says "at least" rather than hold up the daemon's start.
COUNT_CAP = 200_000
DAEMON_TRIGGERS = (Trigger.SCHEDULED, Trigger.CATCH_UP)


@dataclass(frozen=True)
class Slots:
    """Fire times in a window, oldest first: the first MAX_ROWS, then a count of the rest."""

    first: list[datetime] = field(default_factory=list)
    rest: int = 0
    rest_from: datetime | None = None
    rest_to: datetime | None = None
    at_least: bool = False  # counting stopped at COUNT_CAP

    @property
    def total(self) -> int:
        return len(self.first) + self.rest

    @property
    def last(self) -> datetime | None:
        return self.rest_to or (self.first[-1] if self.first else None)


@dataclass(frozen=True)
class Downtime:
    """The previous daemon's last sign of life and the schedules it had in force ({} if unknown)."""

    since: datetime
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)


def slots_between(
    schedule: Schedule,
    tz: tzinfo,
    after: datetime,
    until: datetime,
    *,
    anchor: datetime | None = None,
    limit: int = MAX_ROWS,
    count_cap: int = COUNT_CAP,
) -> Slots:
    """The fire times of `schedule` in (after, until], in UTC.

    `every` slots are anchor + k * interval (any k, so the phase of a previous daemon carries
    over), or after + k * interval without an anchor.
    """
    if schedule.kind == "every":
        return _every(schedule.interval, anchor or after, after, until, limit)
    if schedule.kind == "cron":
        return _cron(schedule, tz, after, until, limit, count_cap)
    return Slots()


def _every(interval: timedelta, base: datetime, after: datetime, until: datetime, limit: int) -> Slots:
    first_k = (after - base) // interval + 1  # the first slot strictly after `after`
    last_k = (until - base) // interval  # the last one at or before `until`
    n = last_k - first_k + 1
    if n <= 0:
        return Slots()
    first = [(base + k * interval).astimezone(UTC) for k in range(first_k, first_k + min(n, limit))]
    if n <= limit:
        return Slots(first)
    rest_from = (base + (first_k + limit) * interval).astimezone(UTC)
    return Slots(first, n - limit, rest_from, (base + last_k * interval).astimezone(UTC))


def _cron(
    schedule: Schedule, tz: tzinfo, after: datetime, until: datetime, limit: int, count_cap: int
) -> Slots:
    trigger = schedule.trigger(tz)
    first: list[datetime] = []
    rest, rest_from, rest_to = 0, None, None
    fire = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while fire is not None and fire <= until:
        fire = fire.astimezone(UTC)
        if len(first) < limit:
            first.append(fire)
        else:
            rest, rest_from, rest_to = rest + 1, rest_from or fire, fire
            if rest >= count_cap:
                return Slots(first, rest, rest_from, rest_to, at_least=True)
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return Slots(first, rest, rest_from, rest_to)


def latest_slot(trigger: Any, schedule: Schedule, tz: tzinfo, now: datetime) -> datetime | None:
    """The slot a run firing now belongs to: the last fire time at or before `now`.

    For `every`, from the APScheduler trigger's own start (its phase); for cron, from the schedule.
    """
    if schedule.kind == "every":
        start = getattr(trigger, "start_date", None)
        if start is None or now < start:
            return None
        return (start + ((now - start) // schedule.interval) * schedule.interval).astimezone(UTC)
    if schedule.kind == "cron":
        slot = schedule.previous_at_or_before(now, tz)
        return None if slot is None else slot.astimezone(UTC)
    return None


# -- what the history says ------------------------------------------------------------------------
def previous_downtime(store: HistoryStore) -> Downtime | None:
    """When the previous daemon was last seen, or None when no daemon ever used this store.

    Read before this daemon's row supersedes dead ones (that marks them stopped *now*).
    """
    earlier = [d for d in all_daemons(store) if d.id != PROCESS_TOKEN]
    if earlier:
        seen = max(max(d.heartbeat_at, d.stopped_at or d.heartbeat_at) for d in earlier)
        newest = max(earlier, key=lambda d: d.started_at)
        return Downtime(seen, dict(newest.schedules or {}))
    query = select(func.max(func.coalesce(db.runs.c.finished_at, db.runs.c.started_at))).where(
        db.runs.c.trigger.in_([str(t) for t in DAEMON_TRIGGERS])
    )
    with db_errors.guard(store.url, "read when a daemon last ran"), store.engine.connect() as conn:
        newest_run = conn.execute(query).scalar()
    return None if newest_run is None else Downtime(_utc(newest_run))


def newest_slot(store: HistoryStore, job: str) -> datetime | None:
    """The newest schedule slot a row of `job` belongs to."""
    query = select(func.max(db.runs.c.scheduled_for)).where(db.runs.c.job == job)
    with db_errors.guard(store.url, "read a job's newest slot"), store.engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else _utc(found)


def newest_daemon_run(store: HistoryStore, job: str) -> datetime | None:
    """When the daemon last ran `job` (its slot, or its start in rows from before slots were recorded)."""
    query = select(func.max(func.coalesce(db.runs.c.scheduled_for, db.runs.c.started_at))).where(
        db.runs.c.job == job, db.runs.c.trigger.in_([str(t) for t in DAEMON_TRIGGERS])
    )
    with db_errors.guard(store.url, "read a job's newest run"), store.engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else _utc(found)


def _utc(value: Any) -> datetime:
    """A timestamp from an aggregate: SQLAlchemy skips the column type there (text on SQLite)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def missed(
    store: HistoryStore, job: str, schedule: Schedule, tz: tzinfo, down: Downtime, until: datetime
) -> Slots:
    """The slots of `job` that passed between the previous daemon's last sign of life and `until`."""
    if schedule.kind == "off":
        return Slots()
    prior = down.schedules.get(job) or {}
    if prior.get("schedule") == "off":
        return Slots()  # not scheduled when the daemon went down: nothing was due
    after = max(down.since, newest_daemon_run(store, job) or down.since)
    anchor = None
    if schedule.kind == "every" and prior.get("schedule") in (None, str(schedule)):
        anchor = newest_slot(store, job) or parse_iso(prior.get("next_run"))
    return slots_between(schedule, tz, after, until, anchor=anchor)


def rows(job: str, slots: Slots, down: Downtime, until: datetime) -> list[dict[str, Any]]:
    """The `missed` rows to record: one per slot, then one counting the rest (keyword arguments
    of Runner.record past job, trigger and status)."""
    window = {"down_from": isoformat(down.since), "down_to": isoformat(until)}
    out = [
        {
            "started_at": slot,
            "scheduled_for": slot,
            "summary": {"missed_slots": 1, "from": isoformat(slot), "to": isoformat(slot), **window},
            "error": (
                f"no daemon was running at this scheduled time (down from {isoformat(down.since)} "
                f"to {isoformat(until)}); {job} did not run"
            ),
        }
        for slot in slots.first
    ]
    if slots.rest:
        many = f"at least {slots.rest:,}" if slots.at_least else f"{slots.rest:,}"
        out.append(
            {
                "started_at": slots.rest_from,
                "scheduled_for": slots.rest_from,
                "summary": {
                    "missed_slots": slots.rest,
                    "from": isoformat(slots.rest_from),
                    "to": isoformat(slots.rest_to),
                    **({"at_least": True} if slots.at_least else {}),
                    **window,
                },
                "error": (
                    f"{many} more scheduled times of {job}, from {isoformat(slots.rest_from)} to "
                    f"{isoformat(slots.rest_to)}, passed while no daemon was running; past the first "
                    f"{MAX_ROWS:,} missed slots one row counts the rest"
                ),
            }
        )
    return out
