"""Leases on a real history store (SQLite and PostgreSQL): renewal, expiry across hosts, and a run that
loses its lease."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import jobs
from config import load_settings
from jobs import REGISTRY
from redis_maint.history import db
from redis_maint.history.runs import Run
from redis_maint.run import runner
from redis_maint.timeutil import utcnow
from tests.support.common import ROOT, json_out, wait_for
from tests.support.history import current_store

pytestmark = pytest.mark.usefixtures("history_url")  # each test on SQLite and on PostgreSQL

WAIT_CAP_S = 30  # a safety net so a broken test ends; never a speed assertion


def _health_lease() -> str:
    """health runs once per Redis node: its lease is named after the node (history/slots.py)."""
    from redis_maint.history.leases import lease_name
    from redis_maint.history.slots import node_scope

    return lease_name("health", node_scope(os.environ["REDIS_MAINT_REDIS_URL"]))


def _lease_row(job: str | None = None):
    job = job or _health_lease()
    with current_store().engine.connect() as conn:
        return conn.execute(select(db.leases).where(db.leases.c.job == job)).mappings().first()


def _take_over(job: str | None = None, host: str = "elsewhere") -> None:
    """What another process's Lease._try_take writes once our lease has lapsed."""
    job = job or _health_lease()
    now = utcnow()
    with current_store().engine.begin() as conn:
        conn.execute(
            update(db.leases)
            .where(db.leases.c.job == job)
            .values(
                owner_host=host,
                owner_pid=4242,
                owner_token="other",
                run_id=None,
                acquired_at=now,
                expires_at=now + timedelta(minutes=1),
            )
        )


class _Blocking:
    """Replaces a job's body: it reports that it started, then waits (optionally at checkpoints)."""

    def __init__(self, checkpoints: bool = False):
        self.started = threading.Event()
        self.go = threading.Event()
        self.checkpoints = checkpoints

    def __call__(self, ctx) -> dict:
        self.started.set()
        deadline = time.monotonic() + WAIT_CAP_S
        while not self.go.wait(0.05) and time.monotonic() < deadline:
            if self.checkpoints:
                ctx.checkpoint()
        return {"done": True}


def _run_in_thread(monkeypatch, body: _Blocking, lease_ttl: str) -> tuple[threading.Thread, list[Run]]:
    monkeypatch.setenv("REDIS_MAINT_LOCK__LEASE_TTL", lease_ttl)
    monkeypatch.setitem(jobs.REGISTRY, "health", dataclasses.replace(jobs.REGISTRY["health"], run=body))
    settings = load_settings(jobs=REGISTRY)
    result: list[Run] = []
    thread = threading.Thread(
        target=lambda: result.append(runner.execute(settings, "health", trigger="manual", requested_by="t"))
    )
    thread.start()
    assert body.started.wait(WAIT_CAP_S)
    return thread, result


def _other_process_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scheduler.py"), "run", "health", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_the_heartbeat_keeps_a_long_run_leased_past_several_ttls(redis_server, monkeypatch):
    body = _Blocking()
    thread, result = _run_in_thread(monkeypatch, body, "1s")
    try:
        first = _lease_row()
        seen = [first["expires_at"]]
        # Watch for more than four TTLs: each renewal moves expires_at forward.
        while utcnow() < first["acquired_at"] + timedelta(seconds=4):
            time.sleep(0.1)
            row = _lease_row()
            assert row["owner_pid"] == os.getpid() and row["acquired_at"] == first["acquired_at"]
            if row["expires_at"] != seen[-1]:
                seen.append(row["expires_at"])
        assert seen == sorted(seen) and len(seen) >= 4, seen
        assert seen[-1] > first["acquired_at"] + timedelta(seconds=4)
        # Another process still finds it held: the lease outlived four TTLs without lapsing.
        other = _other_process_run()
        assert other.returncode == 75, other.stderr
        assert f"pid {os.getpid()} (run {first['run_id']})" in json_out(other)["error"]
    finally:
        body.go.set()
        thread.join(WAIT_CAP_S)
    assert result[0].status == "succeeded"
    assert _lease_row() is None, "released by its owner"


def test_a_holder_on_another_host_blocks_until_its_lease_expires_then_another_process_takes_it(redis_server):
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is dead here: on another host a pid proves nothing either way
    now = utcnow()
    with current_store().engine.begin() as conn:
        conn.execute(
            db.leases.insert().values(
                job=_health_lease(),
                owner_host="elsewhere",
                owner_pid=gone.pid,
                owner_token="remote",
                run_id=None,
                acquired_at=now,
                expires_at=now + timedelta(minutes=1),
            )
        )
    blocked = _other_process_run()
    assert blocked.returncode == 75, blocked.stderr
    assert f"elsewhere pid {gone.pid}" in json_out(blocked)["error"]
    # The remote holder stops renewing: its lease lapses half a second from now.
    lapse = utcnow() + timedelta(seconds=0.5)
    with current_store().engine.begin() as conn:
        conn.execute(update(db.leases).where(db.leases.c.job == _health_lease()).values(expires_at=lapse))
    wait_for(lambda: utcnow() > lapse, what="the lease to lapse")
    taken = _other_process_run()
    assert taken.returncode == 0, taken.stderr
    assert json_out(taken)["status"] == "succeeded"
    assert _lease_row() is None


def test_a_run_that_lost_its_lease_stops_at_its_next_checkpoint_and_fails(redis_server, monkeypatch):
    body = _Blocking(checkpoints=True)
    thread, result = _run_in_thread(monkeypatch, body, "0.6s")
    _take_over()
    thread.join(WAIT_CAP_S)
    assert not body.go.is_set(), "the job was stopped, not released"
    (run,) = result
    assert run.status == "failed"
    assert "another process took over this job's lease" in run.error
    assert _lease_row()["owner_host"] == "elsewhere", "the new holder's lease is left alone"


def test_a_run_that_lost_its_lease_without_noticing_is_not_recorded_as_succeeded(redis_server, monkeypatch):
    # A 60 s TTL: no heartbeat before the end, so the final check must catch it.
    body = _Blocking()
    thread, result = _run_in_thread(monkeypatch, body, "60s")
    _take_over()
    body.go.set()
    thread.join(WAIT_CAP_S)
    (run,) = result
    assert run.status == "failed" and run.summary["done"] is True
    assert "lost its lease to another process" in run.error
    assert _lease_row()["owner_host"] == "elsewhere"
