"""The daemon: scheduled runs, catch-up, missed runs, signals and crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from config import load_settings
from redis_maint.daemon import Daemon
from redis_maint.history import HistoryStore, RunStatus
from tests.conftest import ROOT
from tests.services import wait_for


def _store() -> HistoryStore:
    return HistoryStore(os.environ["REDIS_MAINT_HISTORY_URL"])


def _only_health_env(schedule: str) -> dict[str, str]:
    """Every job off except health, scheduled as `schedule`."""
    import jobs

    env = {f"REDIS_MAINT_JOBS__{name.upper().replace('-', '_')}__SCHEDULE": "off" for name in jobs.REGISTRY}
    return {**env, "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": schedule}


def _daemon(**env: str) -> subprocess.Popen:
    env = {**_only_health_env(env.pop("REDIS_MAINT_JOBS__HEALTH__SCHEDULE")), **env}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "daemon"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_daemon_catches_up_then_runs_on_schedule_and_stops_on_sigterm(redis_server):
    proc = _daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1s")
    try:
        wait_for(lambda: len(_store().list(job="health", status="succeeded")) >= 3, timeout=20, what="3 runs")
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    runs = list(reversed(_store().list(job="health")))
    assert runs[0].trigger == "catch-up"  # never succeeded before
    assert {r.trigger for r in runs[1:]} == {"scheduled"}
    assert all(r.status == "succeeded" for r in runs)
    assert all(line.startswith("{") for line in err.strip().splitlines()), "logs are JSON lines"
    assert '"msg": "daemon stopped"' in err


def test_sigkill_mid_run_then_restart_marks_the_run_interrupted(redis_server):
    sleeper = subprocess.Popen(
        ["redis-cli", "-p", str(redis_server.port), "DEBUG", "SLEEP", "3"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.2)
    first = _daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", REDIS_MAINT_REDIS_TIMEOUT="20s")
    wait_for(lambda: _store().running("health"), timeout=15, what="catch-up run to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    sleeper.wait()
    assert _store().running("health")[0].pid == first.pid
    second = _daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="off")
    try:
        wait_for(lambda: not _store().running("health"), timeout=15, what="reaping")
    finally:
        _stop(second)
    killed = [r for r in _store().list(job="health") if r.pid == first.pid]
    assert [r.status for r in killed] == [RunStatus.INTERRUPTED]


def test_sigterm_waits_for_the_drain_grace_then_marks_interrupted(redis_server):
    sleeper = subprocess.Popen(
        ["redis-cli", "-p", str(redis_server.port), "DEBUG", "SLEEP", "6"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.2)
    proc = _daemon(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h",
        REDIS_MAINT_REDIS_TIMEOUT="20s",
        REDIS_MAINT_DAEMON__DRAIN_GRACE="1s",
    )
    wait_for(lambda: _store().running("health"), timeout=15, what="run to start")
    t0 = time.monotonic()
    code, err = _stop(proc)
    took = time.monotonic() - t0
    sleeper.wait()
    assert code == 0, err
    assert took < 5, "the drain is bounded by drain_grace, not by the job"
    (run,) = _store().list(job="health")
    assert run.status == "interrupted" and "drain grace" in run.error


def _settings(schedule: str):
    return load_settings(environ={**os.environ, **_only_health_env(schedule)})


def _succeeded_at(store: HistoryStore, when: datetime) -> None:
    with freeze_time(when):
        run_id = store.start_run("health", "scheduled", "daemon")
        store.finish_run(run_id, RunStatus.SUCCEEDED, {}, None)


def test_catch_up_runs_a_job_that_missed_its_nightly_slot_and_records_the_miss():
    settings = _settings("0 3 * * *")
    store = _store()
    _succeeded_at(store, datetime(2026, 3, 8, 3, 0, 5, tzinfo=UTC))
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        due = Daemon(settings).catch_up()
    assert due == ["health"]
    missed = store.list(job="health", status="missed")
    assert [m.started_at for m in missed] == [datetime(2026, 3, 10, 3, 0, tzinfo=UTC)]


def test_catch_up_skips_a_job_that_ran_within_its_period():
    settings = _settings("0 3 * * *")
    store = _store()
    _succeeded_at(store, datetime(2026, 3, 10, 3, 0, 5, tzinfo=UTC))
    with freeze_time(datetime(2026, 3, 10, 23, 0, tzinfo=UTC)):
        assert Daemon(settings).catch_up() == []
    assert store.list(job="health", status="missed") == []


def test_catch_up_runs_a_job_that_never_succeeded_without_inventing_a_miss():
    settings = _settings("0 3 * * *")
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        assert Daemon(settings).catch_up() == ["health"]
    assert _store().list(job="health") == []


def test_catch_up_ignores_jobs_that_are_off():
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        assert Daemon(_settings("off")).catch_up() == []


def test_a_missed_scheduler_event_is_recorded():
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    daemon = Daemon(_settings("0 3 * * *"))
    due = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    daemon._on_missed(JobExecutionEvent(EVENT_JOB_MISSED, "health", "default", due))
    (row,) = _store().list(job="health")
    assert row.status == "missed" and row.started_at == due and row.trigger == "scheduled"


def test_schedules_use_the_configured_timezone():
    settings = load_settings(
        environ={
            **os.environ,
            "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "0 3 * * *",
            "REDIS_MAINT_TIMEZONE": "America/New_York",
        }
    )
    scheduler = Daemon(settings).build_scheduler()
    trigger = scheduler.get_job("health").trigger
    nxt = trigger.get_next_fire_time(None, datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    assert nxt.astimezone(UTC) == datetime(2026, 1, 11, 8, 0, tzinfo=UTC)
    assert nxt - datetime(2026, 1, 10, 12, 0, tzinfo=UTC) < timedelta(days=1)


def test_a_scheduled_sweep_runs_in_its_idle_thread_and_deletes_the_stale_sessions(redis_server):
    from tests.session_data import seed

    client = redis_server.client()
    stale = seed(client, 300)
    proc = _daemon(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="off", REDIS_MAINT_JOBS__SESSION_SWEEP__SCHEDULE="every 1h"
    )
    try:
        wait_for(lambda: _store().list(job="session-sweep", status="succeeded"), timeout=20, what="the sweep")
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    run = _store().list(job="session-sweep")[0]
    assert run.trigger == "catch-up"
    assert run.summary["deleted"]["stale"] == stale == 150
    assert client.dbsize() == 150
