"""An honest `jobs`: the daemon publishes its state in the history store; `doctor` reports a stale one."""

from __future__ import annotations

import signal
import socket
from datetime import timedelta

import pytest

from redis_maint.history import db
from redis_maint.history.daemons import DaemonState, all_daemons
from redis_maint.timeutil import utcnow
from tests.support.common import json_out, wait_for
from tests.support.daemon import start_daemon, stop_daemon
from tests.support.history import current_store
from tests.support.pty_cli import run_in_pty

BEAT = {"REDIS_MAINT_DAEMON__HEARTBEAT": "0.3s"}


def _jobs(cli) -> dict[str, dict]:
    result = cli("jobs", "--json")
    assert result.exit_code == 0, result.output
    return {j["name"]: j for j in json_out(result)}


def _daemon_check(cli) -> tuple[int, dict]:
    result = cli("doctor", "--json")
    return result.exit_code, {c["check"]: c for c in json_out(result)}["daemon"]


def test_jobs_shows_the_live_daemons_schedules_not_the_callers_config(redis_server, cli):
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", **BEAT)
    try:
        wait_for(lambda: _jobs(cli)["health"]["next_run"], timeout=20, what="the daemon's next run")
        listed = _jobs(cli)
        shown = run_in_pty("jobs", columns=120)
        first_beat = listed["health"]["daemon"]["heartbeat_at"]
        wait_for(lambda: _jobs(cli)["health"]["daemon"]["heartbeat_at"] != first_beat, what="a second beat")
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    health = listed["health"]
    # This process's config says `* * * * *`; the daemon runs `every 1h`, and that is what is shown.
    assert health["schedule"] == "every 1h"
    assert health["schedule_source"] == "daemon"
    assert health["daemon"]["pid"] == proc.pid
    assert health["daemon"]["host"] == socket.gethostname()
    assert health["daemon"]["heartbeat_age_s"] < 5
    assert f"daemon live on {socket.gethostname()} pid {proc.pid}" in shown.terminal.splitlines()[0]
    assert listed["backup"]["schedule"] == "off" and listed["backup"]["next_run"] is None
    # The shape people already parse is intact: the old keys, in order, then the added ones.
    assert list(health)[:6] == ["name", "description", "schedule", "timezone", "next_run", "last_run"]


@pytest.mark.usefixtures("history_url")
def test_after_a_clean_stop_jobs_shows_the_config_with_no_next_run(redis_server, cli):
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", **BEAT)
    try:
        wait_for(lambda: _jobs(cli)["health"]["schedule_source"] == "daemon", timeout=20, what="the daemon")
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    health = _jobs(cli)["health"]
    assert health["daemon"] is None and health["schedule_source"] == "config"
    assert health["schedule"] == "* * * * *" and health["next_run"] is None
    shown = run_in_pty("jobs", columns=120)  # what a person sees: the daemon's absence comes first
    assert shown.code == 0, shown.terminal
    assert shown.terminal.lstrip().startswith("no daemon running"), shown.terminal
    (row,) = all_daemons(current_store())
    assert row.stopped_at is not None and row.stop_reason == "clean shutdown"
    code, check = _daemon_check(cli)
    assert check["ok"] and check["detail"].startswith("no daemon running"), check


@pytest.mark.usefixtures("history_url")
def test_doctor_reports_a_killed_daemon_as_stale_until_one_starts_again(redis_server, cli):
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", **BEAT)
    wait_for(lambda: _jobs(cli)["health"]["schedule_source"] == "daemon", timeout=20, what="the daemon")
    code, check = _daemon_check(cli)
    assert check["ok"] and f"pid {proc.pid}" in check["detail"], check
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    code, check = _daemon_check(cli)
    assert code == 1 and not check["ok"]
    assert f"{socket.gethostname()} pid {proc.pid}" in check["detail"]
    assert "last seen" in check["detail"] and "never stopped cleanly" in check["detail"]
    assert _jobs(cli)["health"]["daemon"] is None

    # A new daemon on this host supersedes its dead predecessor.
    again = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", **BEAT)
    try:
        wait_for(
            lambda: _jobs(cli)["health"]["daemon"]["pid"] == again.pid, timeout=20, what="the new daemon"
        )
        code, check = _daemon_check(cli)
    finally:
        stop_daemon(again)
    assert check["ok"] and f"pid {again.pid}" in check["detail"], check


@pytest.mark.usefixtures("history_url")
def test_doctor_reports_a_daemon_on_another_host_whose_heartbeat_stopped(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path))
    store = current_store()
    seen = utcnow() - timedelta(minutes=3)
    with store.engine.begin() as conn:
        conn.execute(
            db.daemons.insert().values(
                id="elsewhere",
                host="sidecar-b",
                pid=4242,
                started_at=seen - timedelta(hours=1),
                heartbeat_at=seen,
                heartbeat_s=5.0,
                timezone="UTC",
                schedules={},
            )
        )
    _code, check = _daemon_check(cli)
    assert not check["ok"]
    assert "sidecar-b pid 4242" in check["detail"] and "no heartbeat for 180s" in check["detail"]


def _state(**changes) -> DaemonState:
    now = utcnow()
    base = dict(
        id="x",
        host="sidecar-b",
        pid=1,
        started_at=now,
        heartbeat_at=now,
        heartbeat_s=5.0,
        stopped_at=None,
        stop_reason=None,
        timezone="UTC",
        schedules={},
    )
    return DaemonState(**{**base, **changes})


def test_a_late_beat_is_not_a_death_but_three_missed_beats_are():
    now = utcnow()
    assert _state(heartbeat_at=now - timedelta(seconds=14)).live(now)
    assert not _state(heartbeat_at=now - timedelta(seconds=16)).live(now)
    assert _state(heartbeat_at=now - timedelta(hours=1), stopped_at=now).gone(now) is None
