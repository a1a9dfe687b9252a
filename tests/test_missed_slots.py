"""Every slot that passed while no daemon ran is recorded as `missed`, once, on the next start."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from redis_maint.history import db
from redis_maint.history.daemons import all_daemons
from redis_maint.history.runs import Run, RunStatus
from redis_maint.run import missed_slots
from redis_maint.run.daemon import Daemon
from redis_maint.schedules import parse_schedule
from redis_maint.timeutil import utcnow
from tests.support.common import wait_for
from tests.support.daemon import only_health_settings, start_daemon, stop_daemon
from tests.support.history import current_store


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _missed(job: str) -> list[Run]:
    return [r for r in current_store().list(job=job, status="missed")]


def _expected_every(rows: list[Run], interval: timedelta, after: datetime, until: datetime) -> set[datetime]:
    """The slots in (after, until] in the phase of the first daemon's own scheduled runs."""
    anchor = max(r.scheduled_for for r in rows if r.trigger == "scheduled" and r.scheduled_for)
    k = 1
    while anchor - k * interval > after:  # the phase carries backwards too (anchor may be late)
        k += 1
    slot, out = anchor - (k - 1) * interval, set()
    while slot <= until:
        if slot > after:
            out.add(slot)
        slot += interval
    return out


def _expected_minutes(after: datetime, until: datetime) -> set[datetime]:
    minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    out = set()
    while minute <= until:
        out.add(minute)
        minute += timedelta(minutes=1)
    return out


def test_a_restarted_daemon_records_exactly_the_slots_that_passed_while_it_was_down(redis_server, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    env = {
        "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "every 1s",
        # backup never succeeds: its target is under a file
        "REDIS_MAINT_JOBS__BACKUP__SCHEDULE": "every 2s",
        "REDIS_MAINT_TARGET__URI": str(blocked / "backups"),
        "REDIS_MAINT_JOBS__BACKUP_AGE__SCHEDULE": "* * * * *",
    }
    first = start_daemon(**env)
    try:
        wait_for(
            lambda: (
                len([r for r in current_store().list(job="health") if r.trigger == "scheduled"]) >= 2
                and [r for r in current_store().list(job="backup") if r.trigger == "scheduled"]
            ),
            timeout=30,
            what="scheduled runs of the first daemon",
        )
    finally:
        code, err = stop_daemon(first)
    assert code == 0, err
    stopped = time.monotonic()
    time.sleep(3.5)  # down for a measured interval
    second = start_daemon(**env)
    try:
        wait_for(
            lambda: [
                r
                for r in current_store().list(job="health")
                if r.pid == second.pid and r.trigger == "scheduled" and r.status != "missed"
            ],
            timeout=30,
            what="the second daemon's first scheduled run",
        )
    finally:
        code, err = stop_daemon(second)
    assert code == 0, err
    down_measured = time.monotonic() - stopped

    store = current_store()
    daemons = {d.pid: d for d in all_daemons(store)}
    old, new = daemons[first.pid], daemons[second.pid]
    assert old.stopped_at is not None
    missed = {job: _missed(job) for job in ("health", "backup", "backup-age")}
    rows = [r for job_rows in missed.values() for r in job_rows]
    windows = {(r.summary["down_from"], r.summary["down_to"]) for r in rows}
    assert len(windows) == 1, windows
    ((down_from, down_to),) = windows
    down_from, down_to = _parse(down_from), _parse(down_to)
    # The window runs from the old daemon's clean stop to the new one's start-up, as measured.
    assert down_from == old.stopped_at
    first_new_run = min(r.started_at for r in store.list() if r.pid == second.pid and r.status != "missed")
    assert new.started_at <= down_to <= first_new_run
    assert timedelta(seconds=3.5) < down_to - down_from < timedelta(seconds=down_measured)

    for job, interval in (("health", timedelta(seconds=1)), ("backup", timedelta(seconds=2))):
        first_rows = [r for r in store.list(job=job) if r.pid == first.pid]
        expected = _expected_every(first_rows, interval, down_from, down_to)
        assert {r.scheduled_for for r in missed[job]} == expected, job
        assert len(missed[job]) == len(expected) >= 2, job
    assert store.list(job="backup", status="succeeded") == [], "backup never succeeded"
    assert {r.scheduled_for for r in missed["backup-age"]} == _expected_minutes(down_from, down_to)

    for row in rows:
        assert row.started_at == row.scheduled_for and row.trigger == "scheduled"
        assert row.requested_by == "daemon" and row.os_user and len(row.config_hash) == 64
        assert row.summary["missed_slots"] == 1 and row.pid == second.pid
    # The catch-up run stands in for the newest missed slot.
    (catch_up,) = [r for r in store.list(job="health") if r.pid == second.pid and r.trigger == "catch-up"]
    assert catch_up.scheduled_for == max(r.scheduled_for for r in missed["health"])
    # Scheduled runs record their slot: the health job's follow the interval exactly.
    new_slots = sorted(
        r.scheduled_for
        for r in store.list(job="health")
        if r.pid == second.pid and r.trigger == "scheduled" and r.status != "missed"
    )
    assert all(r.started_at >= r.scheduled_for for r in store.list(job="health") if r.scheduled_for)
    assert all((b - a) % timedelta(seconds=1) == timedelta(0) for a, b in itertools.pairwise(new_slots))


def _previous_daemon(store, stopped_at: datetime | None, heartbeat_at: datetime, schedules=None) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            db.daemons.insert().values(
                id=f"earlier-{heartbeat_at.timestamp()}",
                host="elsewhere",
                pid=4242,
                started_at=heartbeat_at - timedelta(hours=1),
                heartbeat_at=heartbeat_at,
                heartbeat_s=5.0,
                stopped_at=stopped_at,
                timezone="UTC",
                schedules=schedules or {},
            )
        )


def _succeeded_at(store, when: datetime) -> None:
    with freeze_time(when):
        run_id = store.start_run("health", "scheduled", "daemon", scheduled_for=when.replace(second=0))
        store.finish_run(run_id, RunStatus.SUCCEEDED, {}, None)


@pytest.mark.usefixtures("history_url")  # SQLite and PostgreSQL
def test_the_issue_example_down_from_21_30_36_to_21_32_01_misses_21_31_and_21_32_once():
    store = current_store()
    _succeeded_at(store, datetime(2026, 3, 10, 21, 30, 0, 200000, tzinfo=UTC))
    _previous_daemon(
        store, datetime(2026, 3, 10, 21, 30, 36, tzinfo=UTC), datetime(2026, 3, 10, 21, 30, 35, tzinfo=UTC)
    )
    daemon = Daemon(only_health_settings("* * * * *"))
    daemon.downtime = missed_slots.previous_downtime(store)
    start = datetime(2026, 3, 10, 21, 32, 1, tzinfo=UTC)

    assert daemon.record_missed_slots(until=start) == {"health": 2}
    with freeze_time(start):
        assert daemon.catch_up() == ["health"]  # its own look at the newest slot adds nothing

    rows = store.list(job="health", status="missed")
    slots = [datetime(2026, 3, 10, 21, 32, tzinfo=UTC), datetime(2026, 3, 10, 21, 31, tzinfo=UTC)]
    assert [r.scheduled_for for r in rows] == [r.started_at for r in rows] == slots
    assert daemon.catch_up_slots == {"health": slots[0]}
    assert rows[0].summary["down_from"] == "2026-03-10T21:30:36Z"


@pytest.mark.usefixtures("history_url")  # SQLite and PostgreSQL
def test_a_job_that_never_ran_gets_its_missed_slots_from_the_daemons_last_heartbeat():
    """A daemon killed without a clean stop: its last heartbeat is its last sign of life."""
    store = current_store()
    _previous_daemon(store, None, datetime(2026, 3, 10, 21, 0, 10, tzinfo=UTC))
    daemon = Daemon(only_health_settings("*/15 * * * *"))
    daemon.downtime = missed_slots.previous_downtime(store)
    assert daemon.record_missed_slots(until=datetime(2026, 3, 10, 22, 0, tzinfo=UTC)) == {"health": 4}
    assert [r.scheduled_for.minute for r in reversed(store.list(job="health"))] == [15, 30, 45, 0]


@pytest.mark.usefixtures("history_url")  # SQLite and PostgreSQL
def test_a_job_the_previous_daemon_had_off_and_a_store_without_history_miss_nothing():
    store = current_store()
    daemon = Daemon(only_health_settings("every 1m"))
    daemon.downtime = missed_slots.previous_downtime(store)
    assert daemon.downtime is None
    assert daemon.record_missed_slots() == {}
    _previous_daemon(
        store, None, utcnow() - timedelta(hours=1), {"health": {"schedule": "off", "next_run": None}}
    )
    daemon.downtime = missed_slots.previous_downtime(store)
    assert daemon.record_missed_slots() == {}
    assert store.list(job="health") == []


@pytest.mark.usefixtures("history_url")  # SQLite and PostgreSQL
def test_without_a_daemon_row_the_newest_daemon_run_marks_the_last_sign_of_life():
    store = current_store()
    run_id = store.record("health", "scheduled", RunStatus.SKIPPED, started_at=utcnow() - timedelta(hours=2))
    with freeze_time(utcnow() + timedelta(hours=1)):
        store.start_run("health", "manual", "alice")  # a manual run is no sign of a daemon
    down = missed_slots.previous_downtime(store)
    assert down is not None and down.since == store.get(run_id).finished_at


# -- the slot computation (pure logic) -----------------------------------------------------------
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_past_1000_slots_one_more_row_counts_the_rest():
    down = missed_slots.Downtime(T0)
    until = T0 + timedelta(hours=1)
    slots = missed_slots.slots_between(parse_schedule("every 1s"), UTC, T0, until)
    assert slots.total == 3600 and len(slots.first) == 1000 and slots.rest == 2600
    assert slots.first[0] == T0 + timedelta(seconds=1) and slots.first[-1] == T0 + timedelta(seconds=1000)
    rows = missed_slots.rows("health", slots, down, until)
    assert len(rows) == 1001
    assert rows[-1]["summary"] == {
        "missed_slots": 2600,
        "from": "2026-03-10T12:16:41Z",
        "to": "2026-03-10T13:00:00Z",
        "down_from": "2026-03-10T12:00:00Z",
        "down_to": "2026-03-10T13:00:00Z",
    }
    assert rows[-1]["scheduled_for"] == T0 + timedelta(seconds=1001)
    assert "2,600 more scheduled times of health" in rows[-1]["error"]


def test_cron_slots_are_bounded_the_same_way_and_the_count_can_be_capped():
    cron = parse_schedule("* * * * *")
    slots = missed_slots.slots_between(cron, UTC, T0, T0 + timedelta(minutes=1500))
    assert (len(slots.first), slots.rest) == (1000, 500)
    assert slots.rest_from == T0 + timedelta(minutes=1001) and slots.rest_to == T0 + timedelta(minutes=1500)
    capped = missed_slots.slots_between(cron, UTC, T0, T0 + timedelta(days=30), count_cap=50)
    assert capped.rest == 50 and capped.at_least
    (last,) = missed_slots.rows("health", capped, missed_slots.Downtime(T0), T0)[1000:]
    assert last["summary"]["at_least"] is True and last["error"].startswith("at least 50 more")


def test_every_slots_keep_the_previous_daemons_phase_and_the_window_is_open_closed():
    every = parse_schedule("every 2s")
    anchor = T0 + timedelta(milliseconds=300)
    slots = missed_slots.slots_between(
        every, UTC, T0 + timedelta(seconds=1), T0 + timedelta(seconds=6.3), anchor=anchor
    )
    assert slots.first == [anchor + timedelta(seconds=s) for s in (2, 4, 6)]
    exact = missed_slots.slots_between(every, UTC, anchor, anchor + timedelta(seconds=4), anchor=anchor)
    assert exact.first == [anchor + timedelta(seconds=2), anchor + timedelta(seconds=4)]
    assert missed_slots.slots_between(every, UTC, T0, T0 + timedelta(seconds=1.9)).total == 0


def test_cron_slots_follow_the_configured_timezone():
    nightly = parse_schedule("0 3 * * *")
    from zoneinfo import ZoneInfo

    slots = missed_slots.slots_between(nightly, ZoneInfo("America/New_York"), T0, T0 + timedelta(days=2))
    assert slots.first == [datetime(2026, 3, 11, 7, 0, tzinfo=UTC), datetime(2026, 3, 12, 7, 0, tzinfo=UTC)]


def test_the_slot_of_a_scheduled_run_is_the_last_fire_time_at_or_before_now():
    from apscheduler.triggers.interval import IntervalTrigger

    trigger = IntervalTrigger(seconds=2, start_date=T0, timezone=UTC)
    every = parse_schedule("every 2s")
    assert missed_slots.latest_slot(trigger, every, UTC, T0 + timedelta(seconds=5.5)) == T0 + timedelta(
        seconds=4
    )
    assert missed_slots.latest_slot(trigger, every, UTC, T0 - timedelta(seconds=1)) is None
    cron = parse_schedule("*/15 * * * *")
    assert missed_slots.latest_slot(None, cron, UTC, T0 + timedelta(minutes=16)) == T0 + timedelta(minutes=15)


def test_a_recovery_after_a_long_downtime_is_notified_past_its_missed_rows():
    """More missed rows than the look-back between a failure and the next success hide nothing."""
    from redis_maint.observe.notify import events_for

    store = current_store()
    failed_at = utcnow() - timedelta(hours=1)
    with freeze_time(failed_at):
        failed = store.start_run("health", "scheduled", "daemon")
        store.finish_run(failed, RunStatus.FAILED, {}, "Redis did not answer")
    for k in range(1, 251):
        slot = failed_at + timedelta(seconds=10 * k)
        store.record("health", "scheduled", RunStatus.MISSED, started_at=slot, scheduled_for=slot)
    ok = store.start_run("health", "catch-up", "daemon")
    store.finish_run(ok, RunStatus.SUCCEEDED, {"level": "ok"}, None)
    assert "recovery" in [e.kind for e in events_for(store, store.get(ok))]
