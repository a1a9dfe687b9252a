"""AOF rewrites paused by a run that died: the note names its owner, the daemon restores the
setting once no owner is alive (and records it), and health warns meanwhile. Real redis-server,
real processes (SIGKILL), real SQLite history."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import update

from config import load_settings
from jobs import REGISTRY
from redis_maint.history import db
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.run.daemon import AOF_RESTORE, Daemon
from redis_maint.snapshot.aof_guard import aof_rewrite_paused
from redis_maint.snapshot.aof_note import Note, Owner, read_note, write_note
from redis_maint.timeutil import utcnow
from tests.support.common import ROOT, json_out, wait_for
from tests.support.daemon import Scheduled, only_health_settings, start_daemon, stop_daemon
from tests.support.history import current_store

PARAM = "auto-aof-rewrite-percentage"
MINUTE = timedelta(minutes=1)


def _pct(server) -> str:
    return server.client().config_get(PARAM)[PARAM]


def _holder(job: str = "aof-check") -> tuple[subprocess.Popen, int]:
    """A real run of `job` (another process) that has paused rewrites and holds the pause."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.processes.aof_guard_holder", job],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    assert line.startswith("paused "), proc.communicate(timeout=10)[1]
    return proc, int(line.split()[1])


def _release(proc: subprocess.Popen) -> str:
    out, err = proc.communicate("go\n", timeout=30)
    assert proc.returncode == 0, err
    return out


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


def test_the_note_names_the_run_that_paused_rewrites(redis_server):
    redis_server.client().config_set(PARAM, 77)
    note = load_settings(jobs=REGISTRY).aof_guard_note
    proc, run_id = _holder()
    try:
        saved = read_note(note)
        assert _pct(redis_server) == "0"
        assert saved.original == "77"
        (owner,) = saved.owners
        assert (owner.job, owner.run_id, owner.host, owner.pid) == (
            "aof-check",
            run_id,
            socket.gethostname(),
            proc.pid,
        )
        assert utcnow() - owner.since < MINUTE
    finally:
        assert "finished succeeded" in _release(proc)
    assert _pct(redis_server) == "77"
    assert not note.exists()


def test_a_pause_shared_by_two_processes_is_restored_by_the_last_one_out(redis_server):
    client = redis_server.client()
    client.config_set(PARAM, 77)
    note = load_settings(jobs=REGISTRY).aof_guard_note
    proc, run_id = _holder()
    try:
        with aof_rewrite_paused(client, checkpoint=lambda: None, timeout=MINUTE, note=note):
            assert {o.pid for o in read_note(note).owners} == {proc.pid, os.getpid()}
        # we left first: the other process is still copying, so rewrites stay paused
        assert _pct(redis_server) == "0"
        assert [o.run_id for o in read_note(note).owners] == [run_id]
    finally:
        _release(proc)
    assert _pct(redis_server) == "77"
    assert not note.exists()


def test_daemon_restores_a_pause_left_by_a_killed_run_and_records_it(redis_server, cli):
    redis_server.client().config_set(PARAM, 77)
    note = load_settings(jobs=REGISTRY).aof_guard_note
    proc, run_id = _holder()
    _kill(proc)
    assert _pct(redis_server) == "0" and note.exists()

    health = json_out(cli("run", "health", "--json"))["summary"]
    assert health["level"] == "warning"
    (reason,) = [r for r in health["reasons"] if "AOF auto-rewrite is paused" in r]
    assert f"aof-check run {run_id}" in reason and f"pid {proc.pid}" in reason
    assert "no longer running" in reason and f"CONFIG SET {PARAM} 77" in reason

    daemon = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="off")
    try:
        wait_for(lambda: current_store().list(job=AOF_RESTORE), timeout=20, what="the restore row")
    finally:
        code, err = stop_daemon(daemon)
    assert code == 0, err
    assert _pct(redis_server) == "77"
    assert not note.exists()
    assert "restored auto-aof-rewrite-percentage left paused by a dead run" in err
    (row,) = [r for r in json_out(cli("history", "--json")) if r["job"] == AOF_RESTORE]
    assert row["status"] == "succeeded" and row["requested_by"] == "daemon" and row["trigger"] == "catch-up"
    summary = row["summary"]
    assert (summary["restored_to"], summary["paused_by_run"], summary["paused_by_job"]) == (
        "77",
        run_id,
        "aof-check",
    )
    assert summary["paused_since"] and str(proc.pid) in summary["paused_by"]
    assert current_store().get(run_id).status == RunStatus.INTERRUPTED


def test_the_daemon_leaves_the_pause_alone_while_its_owner_runs(redis_server, cli):
    redis_server.client().config_set(PARAM, 77)
    note = load_settings(jobs=REGISTRY).aof_guard_note
    proc, _ = _holder()
    try:
        assert Daemon(load_settings(jobs=REGISTRY)).restore_aof_rewrites() is None
        assert _pct(redis_server) == "0" and note.exists()
        summary = json_out(cli("run", "health", "--json"))["summary"]
        assert summary["level"] == "ok", summary["reasons"]
        assert summary["aof_rewrite"]["owner_alive"] is True
    finally:
        _release(proc)
    assert current_store().list(job=AOF_RESTORE) == []
    assert _pct(redis_server) == "77"


def _foreign_run(
    store: HistoryStore, job: str, host: str = "elsewhere", pid: int = 4242
) -> tuple[int, Owner]:
    """A `running` run with a live lease, held by a process on another host (rows as it writes them)."""
    run_id = store.start_run(job, "manual", "someone")
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            db.leases.insert().values(
                job=job,
                owner_host=host,
                owner_pid=pid,
                owner_token="t",
                run_id=run_id,
                acquired_at=now,
                expires_at=now + MINUTE,
            )
        )
    return run_id, Owner(job=job, run_id=run_id, host=host, pid=pid, token="t", since=now)


def _expire_lease(store: HistoryStore, job: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(db.leases).where(db.leases.c.job == job).values(expires_at=utcnow() - MINUTE))


def test_an_owner_on_another_host_counts_as_alive_until_its_lease_lapses(redis_server):
    settings = load_settings(jobs=REGISTRY)
    store = current_store()
    run_id, owner = _foreign_run(store, "backup")
    write_note(settings.aof_guard_note, Note("64", [owner]))
    redis_server.client().config_set(PARAM, 0)
    daemon = Daemon(settings)
    assert daemon.restore_aof_rewrites() is None, "its run is running with a live lease"
    assert _pct(redis_server) == "0"
    _expire_lease(store, "backup")
    row_id = daemon.restore_aof_rewrites()
    assert _pct(redis_server) == "64"
    assert store.get(row_id).summary["paused_by_run"] == run_id


def test_an_old_one_number_note_is_restored_once_no_run_is_alive(redis_server):
    settings = load_settings(jobs=REGISTRY)
    store = current_store()
    settings.aof_guard_note.parent.mkdir(parents=True)
    settings.aof_guard_note.write_text("55\n")
    redis_server.client().config_set(PARAM, 0)
    _foreign_run(store, "aof-check")
    daemon = Daemon(settings)
    assert daemon.restore_aof_rewrites() is None, "owner unknown: a live aof-check run may have written it"
    _expire_lease(store, "aof-check")
    row = store.get(daemon.restore_aof_rewrites())
    assert _pct(redis_server) == "55"
    assert row.summary["restored_to"] == "55" and row.summary["paused_by_run"] is None
    assert "older redis-maint" in row.summary["paused_by"]


def test_a_value_already_set_by_hand_only_removes_the_stale_note(redis_server):
    settings = load_settings(jobs=REGISTRY)
    write_note(settings.aof_guard_note, Note("64", []))
    redis_server.client().config_set(PARAM, 90)
    assert Daemon(settings).restore_aof_rewrites() is None
    assert _pct(redis_server) == "90"
    assert not settings.aof_guard_note.exists()


def test_a_running_daemon_restores_a_pause_whose_owner_dies_later(redis_server, monkeypatch):
    redis_server.client().config_set(PARAM, 77)
    monkeypatch.setenv("REDIS_MAINT_LOCK__LEASE_TTL", "1s")  # the daemon checks once per lease TTL
    proc, run_id = _holder()
    with Scheduled(only_health_settings("off")):
        _kill(proc)  # e.g. an operator's `run backup` OOM-killed while the daemon keeps running
        wait_for(lambda: current_store().list(job=AOF_RESTORE), timeout=20, what="the periodic restore")
    (row,) = current_store().list(job=AOF_RESTORE)
    assert row.trigger == "scheduled" and row.summary["paused_by_run"] == run_id
    assert _pct(redis_server) == "77"
