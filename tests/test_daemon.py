"""The daemon: scheduled runs, catch-up, missed runs, signals and crash recovery."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from config import load_settings
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.run.daemon import Daemon
from redis_maint.timeutil import utcnow
from tests.support.builders.sessions import seed
from tests.support.common import wait_for
from tests.support.daemon import (
    WAIT_S,
    Scheduled,
    only_health_settings,
    start_daemon,
    stop_daemon,
    stop_daemon_then,
    wait_logged,
)
from tests.support.history import current_store
from tests.support.services.redis import frozen

# A run against a frozen Redis blocks until the test lets it go (or for 300 s).
BLOCKED_ENV = {"REDIS_MAINT_REDIS_TIMEOUT": "300s", "REDIS_MAINT_JOBS__HEALTH__TIMEOUT": "300s"}


@pytest.mark.usefixtures("history_url")
def test_daemon_catches_up_then_runs_on_schedule_and_stops_on_sigterm(redis_server):
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1s")
    try:
        wait_for(
            lambda: len(current_store().list(job="health", status="succeeded")) >= 3,
            timeout=WAIT_S,
            what="3 runs",
        )
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    runs = list(reversed(current_store().list(job="health")))
    assert runs[0].trigger == "catch-up"  # never succeeded before
    assert {r.trigger for r in runs[1:]} == {"scheduled"}
    assert all(r.status == "succeeded" for r in runs)
    assert all(line.startswith("{") for line in err.strip().splitlines()), "logs are JSON lines"
    assert '"msg": "daemon stopped"' in err


@pytest.mark.usefixtures("history_url")
def test_sigkill_mid_run_then_restart_marks_the_run_interrupted(redis_server):
    with frozen(redis_server):  # the run is still going when the daemon is killed
        first = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", **BLOCKED_ENV)
        wait_for(lambda: current_store().running("health"), timeout=WAIT_S, what="catch-up run to start")
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert current_store().running("health")[0].pid == first.pid
    second = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="off")
    try:
        wait_for(lambda: not current_store().running("health"), timeout=WAIT_S, what="reaping")
    finally:
        stop_daemon(second)
    killed = [r for r in current_store().list(job="health") if r.pid == first.pid]
    assert [r.status for r in killed] == [RunStatus.INTERRUPTED]


def test_sigterm_waits_for_the_drain_grace_then_marks_interrupted(redis_server):
    with frozen(redis_server):  # the run cannot finish before Redis is back (or its 300 s timeout)
        proc = start_daemon(
            REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", REDIS_MAINT_DAEMON__DRAIN_GRACE="1s", **BLOCKED_ENV
        )
        wait_logged(proc, "run started")
        t0 = time.monotonic()
        code, err = stop_daemon(proc)
        took = time.monotonic() - t0
    assert code == 0, err
    assert took < 60, "the drain is bounded by drain_grace, not by the job (blocked for 300 s)"
    (run,) = current_store().list(job="health")
    assert run.status == "interrupted" and "drain grace" in run.error


def _succeeded_at(store: HistoryStore, when: datetime) -> None:
    with freeze_time(when):
        run_id = store.start_run("health", "scheduled", "daemon")
        store.finish_run(run_id, RunStatus.SUCCEEDED, {}, None)


@pytest.mark.usefixtures("history_url")
def test_catch_up_runs_a_job_that_missed_its_nightly_slot_and_records_the_miss():
    settings = only_health_settings("0 3 * * *")
    store = current_store()
    _succeeded_at(store, datetime(2026, 3, 8, 3, 0, 5, tzinfo=UTC))
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        due = Daemon(settings).catch_up()
    assert due == ["health"]
    missed = store.list(job="health", status="missed")
    assert [m.started_at for m in missed] == [datetime(2026, 3, 10, 3, 0, tzinfo=UTC)]


@pytest.mark.usefixtures("history_url")
def test_catch_up_skips_a_job_that_ran_within_its_period():
    settings = only_health_settings("0 3 * * *")
    store = current_store()
    _succeeded_at(store, datetime(2026, 3, 10, 3, 0, 5, tzinfo=UTC))
    with freeze_time(datetime(2026, 3, 10, 23, 0, tzinfo=UTC)):
        assert Daemon(settings).catch_up() == []
    assert store.list(job="health", status="missed") == []


@pytest.mark.usefixtures("history_url")
def test_catch_up_runs_a_job_that_never_succeeded_without_inventing_a_miss():
    settings = only_health_settings("0 3 * * *")
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        assert Daemon(settings).catch_up() == ["health"]
    assert current_store().list(job="health") == []


def test_catch_up_ignores_jobs_that_are_off():
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        assert Daemon(only_health_settings("off")).catch_up() == []


@pytest.mark.usefixtures("history_url")
def test_a_run_still_going_at_its_next_slot_is_recorded_as_skipped_by_the_real_scheduler(monkeypatch):
    import jobs

    release = threading.Event()

    def slow(ctx):  # longer than its `every 1s` interval
        release.wait(30)
        return {}

    monkeypatch.setitem(jobs.REGISTRY, "health", dataclasses.replace(jobs.REGISTRY["health"], run=slow))
    with Scheduled(only_health_settings("every 1s")):
        try:
            wait_for(
                lambda: current_store().list(job="health", status="skipped"), timeout=20, what="max_instances"
            )
        finally:
            release.set()
    skipped = current_store().list(job="health", status="skipped")[-1]
    assert skipped.trigger == "scheduled" and skipped.requested_by == "daemon"
    assert "the previous run of 'health' is still running" in skipped.error
    assert [r.status for r in current_store().list(job="health", status="succeeded")], (
        "the slow run itself finished"
    )


@pytest.mark.usefixtures("history_url")
def test_a_slot_missed_beyond_the_misfire_grace_is_recorded_by_the_real_scheduler():
    scheduled = Scheduled(only_health_settings("0 3 * * *"))
    due = (utcnow() - timedelta(seconds=10)).replace(microsecond=0)
    # As if the process had been stalled for 10 s past a slot whose grace is 1 s.
    scheduled.scheduler.modify_job("health", next_run_time=due, misfire_grace_time=1)
    with scheduled:
        wait_for(
            lambda: current_store().list(job="health", status="missed"), timeout=20, what="the missed event"
        )
    (row,) = current_store().list(job="health")
    assert row.status == "missed"
    assert row.started_at == due and row.trigger == "scheduled" and "misfire grace" in row.error


def test_sigterm_lets_a_run_that_finishes_within_the_drain_grace_succeed(redis_server):
    with frozen(redis_server) as stopped:
        proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", **BLOCKED_ENV)
        wait_logged(proc, "run started")
        # The run is blocked on Redis when the stop is requested; Redis is back within the 25 s drain grace.
        code, err = stop_daemon_then(proc, lambda: os.kill(stopped.proc.pid, signal.SIGCONT))
    assert code == 0, err
    (run,) = current_store().list(job="health")
    assert run.status == "succeeded", run.error
    assert '"msg": "stop requested"' in err and '"msg": "daemon stopped"' in err
    assert "runs interrupted at shutdown" not in err


def test_sigterm_during_start_up_exits_cleanly(tmp_path):
    """Start-up can wait on Redis (the AOF-guard check); a SIGTERM then must not kill the daemon."""
    from redis_maint.snapshot.aof_note import Note, write_note

    mute = socket.socket()  # accepts connections, never answers: a hung Redis
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    write_note(tmp_path / "state" / "aof-rewrite-percentage.note", Note("100", []))
    proc = start_daemon(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1s",
        REDIS_MAINT_REDIS_URL=f"redis://127.0.0.1:{mute.getsockname()[1]}/0",
        REDIS_MAINT_REDIS_TIMEOUT="2s",
    )
    try:
        mute.settimeout(WAIT_S)
        conn, _ = mute.accept()  # the daemon is inside its start-up check now
        code, err = stop_daemon(proc)
        conn.close()
    finally:
        mute.close()
    assert code == 0, err
    assert '"msg": "stop requested"' in err and '"msg": "daemon stopped"' in err
    assert current_store().list(job="health") == [], "nothing was scheduled after the stop request"


def test_schedules_use_the_configured_timezone():
    import jobs

    settings = load_settings(
        jobs=jobs.REGISTRY,
        environ={
            **os.environ,
            "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "0 3 * * *",
            "REDIS_MAINT_TIMEZONE": "America/New_York",
        },
    )
    scheduler = Daemon(settings).build_scheduler()
    trigger = scheduler.get_job("health").trigger
    nxt = trigger.get_next_fire_time(None, datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    assert nxt.astimezone(UTC) == datetime(2026, 1, 11, 8, 0, tzinfo=UTC)
    assert nxt - datetime(2026, 1, 10, 12, 0, tzinfo=UTC) < timedelta(days=1)


def test_a_scheduled_sweep_runs_in_its_idle_thread_and_deletes_the_stale_sessions(redis_server):
    client = redis_server.client()
    stale = seed(client, 300)
    proc = start_daemon(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="off", REDIS_MAINT_JOBS__SESSION_SWEEP__SCHEDULE="every 1h"
    )
    try:
        wait_for(
            lambda: current_store().list(job="session-sweep", status="succeeded"),
            timeout=WAIT_S,
            what="the sweep",
        )
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    run = current_store().list(job="session-sweep")[0]
    assert run.trigger == "catch-up"
    assert run.summary["deleted"]["stale"] == stale == 150
    assert client.dbsize() == 150
