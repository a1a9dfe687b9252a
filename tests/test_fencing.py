"""Fencing: every take of a lease gets a token that only grows, the run row and the backup
manifest carry it, and a run paused past its lease (a real SIGSTOP) while another process took the job
over cannot publish its backup, record success, or prune. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from redis_maint.history import db
from redis_maint.history.catalog import Catalog
from redis_maint.history.leases import Lease, store_now
from redis_maint.storage import open_target
from tests.support.builders.backups import fill_sessions
from tests.support.common import ROOT, json_out, wait_for
from tests.support.history import current_store

pytestmark = pytest.mark.usefixtures("history_url")  # each test on SQLite and on PostgreSQL

TTL = "1s"
WAIT_CAP_S = 60  # a safety net so a broken test ends; never a speed assertion


def _fence_of(name: str) -> int | None:
    with current_store().engine.connect() as conn:
        return conn.execute(select(db.leases.c.fence).where(db.leases.c.job == name)).scalar()


def test_each_take_of_a_lease_gets_a_larger_token_even_after_release_and_takeover():
    store = current_store()
    tokens = []
    for _ in range(3):
        with Lease.acquire(store, "backup", timedelta(minutes=1)) as lease:
            assert _fence_of("backup") == lease.fence
            tokens.append(lease.fence)
    # A holder that lapsed (by the store's clock) is taken over with the next token.
    lapsed = Lease.acquire(store, "backup", timedelta(minutes=1))
    with store.engine.begin() as conn:
        gone = store_now(conn) - timedelta(seconds=1)
        conn.execute(update(db.leases).where(db.leases.c.job == "backup").values(expires_at=gone))
    taker = Lease.acquire(store, "backup", timedelta(minutes=1))
    tokens += [lapsed.fence, taker.fence]
    assert tokens == sorted(set(tokens)) and len(tokens) == 5, tokens
    # The lapsed holder finds another token in the row: it no longer holds the lease.
    assert not lapsed.still_held() and lapsed.lost.is_set()
    assert taker.still_held()
    taker.release()
    # Another job's tokens are its own.
    with Lease.acquire(store, "health", timedelta(minutes=1)) as other:
        assert other.fence == 1


def _store_clock():
    with current_store().engine.connect() as conn:
        return store_now(conn)


def _start_paused(step: str, ready: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.processes.paused_backup", step, str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ},
    )


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _pause_at(step: str, tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    ready = tmp_path / f"paused-{step}.json"
    proc = _start_paused(step, ready)
    wait_for(
        lambda: ready.exists() and _stopped(proc.pid), timeout=WAIT_CAP_S, what="the run to pause itself"
    )
    paused = json.loads(ready.read_text())
    # Stopped, its heartbeat cannot renew: wait for the lease to lapse by the store's clock.
    with current_store().engine.connect() as conn:
        row = conn.execute(select(db.leases).where(db.leases.c.job == "backup")).mappings().one()
    assert row["fence"] == paused["fence"]
    wait_for(
        lambda: _store_clock() > row["expires_at"], timeout=WAIT_CAP_S, what="the paused run's lease to lapse"
    )
    return proc, paused


def _resume(proc: subprocess.Popen) -> dict:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=WAIT_CAP_S)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def local_backups(redis_server, backup_env, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", str(tmp_path / "backups"))
    monkeypatch.setenv("REDIS_MAINT_LOCK__LEASE_TTL", TTL)
    fill_sessions(redis_server.client(), 50)
    return tmp_path / "backups"


def test_a_paused_run_taken_over_cannot_publish_its_backup_or_succeed(local_backups, tmp_path, cli_process):
    proc, paused = _pause_at("commit_point", tmp_path)
    assert paused["what"].startswith("publish backup"), "paused with its files uploaded, before the manifest"
    try:
        taker = cli_process("run", "backup", "--json", "--as", "taker")
    finally:
        resumed = _resume(proc)
    assert taker.returncode == 0, taker.stderr
    took = json_out(taker)
    assert took["status"] == "succeeded" and took["fence"] > paused["fence"]

    # The paused run resumed at its commit point: failed, naming the lost lease and its token.
    assert resumed["id"] == paused["run_id"] and resumed["fence"] == paused["fence"]
    assert resumed["status"] == "failed"
    assert "no longer holds the job's lease" in resumed["error"]
    assert f"fencing token {paused['fence']} was superseded" in resumed["error"]

    catalog = {r.id: r for r in Catalog(current_store()).list()}
    mine = resumed["summary"]["backup_id"]
    assert catalog[mine].status == "failed", "never published as complete"
    assert catalog[took["summary"]["backup_id"]].status == "complete"
    # Nothing of the paused run's backup is left on the target: no manifest, so no backup.
    target = open_target(str(local_backups))
    assert not [o.key for o in target.list("") if mine in o.key]
    # The manifest of the backup that was published carries its run's token.
    manifest_key = next(
        o.key for o in target.list("") if o.key.endswith(f"{took['summary']['backup_id']}/manifest.json")
    )
    assert json.loads(b"".join(target.read_chunks(manifest_key)))["fence"] == took["fence"]


def test_a_paused_run_taken_over_cannot_prune(local_backups, tmp_path, cli_process, monkeypatch):
    for key, value in {"KEEP_WITHIN": "0s", "KEEP_LAST": "1", "KEEP_DAILY": "0", "KEEP_WEEKLY": "0"}.items():
        monkeypatch.setenv(f"REDIS_MAINT_JOBS__BACKUP__{key}", value)
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__KEEP_MONTHLY", "0")
    first = cli_process("run", "backup", "--json", "--no-prune")
    assert first.returncode == 0, first.stderr

    proc, _paused = _pause_at("_retention", tmp_path)  # its backup is complete: two now, keep_last = 1
    try:
        taker = cli_process("run", "backup", "--json", "--no-prune")
    finally:
        resumed = _resume(proc)
    assert taker.returncode == 0, taker.stderr
    assert resumed["status"] == "failed" and "did not apply retention (prune)" in resumed["error"]
    statuses = [r.status for r in Catalog(current_store()).list()]
    assert statuses == ["complete"] * 3, "nothing pruned by the run that lost its lease"
