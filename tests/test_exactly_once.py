"""Several sidecars on one history: each scheduled slot runs once. Claims the store enforces,
the loser recording nothing; node and deployment scopes; a SIGKILLed sidecar's slot interrupted when its
lease lapses and run once more as catch-up; one clock (the database's) for a sidecar whose host clock is
minutes off; and three real daemons on PostgreSQL with one SIGKILLed and restarted."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from config import load_settings
from jobs import REGISTRY
from redis_maint.history import db, slots
from redis_maint.history.leases import Lease, store_now
from redis_maint.history.runs import HistoryStore
from redis_maint.run import exactly_once
from redis_maint.run.runner import build_runner
from redis_maint.schedules import parse_schedule
from redis_maint.timeutil import utcnow
from tests.support.common import ROOT, json_out, wait_for
from tests.support.exactly_once import (
    figures,
    kill_sidecar,
    sidecar_env,
    start_sidecar,
    started,
    stop_sidecar,
)
from tests.support.history import current_store

WAIT_CAP_S = 60  # a safety net so a broken test ends; never a speed assertion
TWO_S = timedelta(seconds=2)


def _slot():
    return exactly_once.grid_floor(utcnow(), TWO_S)


def _runs(job: str):
    return current_store().list(job=job)


def _claim_row(job: str, slot):
    with current_store().engine.connect() as conn:
        c = db.slot_claims.c
        return (
            conn.execute(select(db.slot_claims).where(c.job == job, c.scheduled_for == slot)).mappings().one()
        )


@pytest.mark.usefixtures("history_url")
def test_a_slot_is_claimed_once_and_the_loser_records_nothing(redis_server):
    runner = build_runner(load_settings(jobs=REGISTRY))
    slot = _slot()
    run = runner.execute("health", trigger="scheduled", requested_by="daemon", scheduled_for=slot, claim=True)
    assert run.status == "succeeded" and run.scheduled_for == slot and run.fence >= 1
    other = build_runner(load_settings(jobs=REGISTRY))  # another sidecar's runner, same node
    with pytest.raises(slots.SlotTaken):
        other.execute("health", trigger="scheduled", requested_by="daemon", scheduled_for=slot, claim=True)
    assert [r.id for r in _runs("health")] == [run.id], "the loser wrote no row"
    # A missed or skipped record of a claimed slot is not written either.
    claim = slots.Claim("health", runner.scope_of("health"), slot)
    assert other.record_slot(claim, "missed", trigger="scheduled", requested_by="daemon", error="x") is None
    row = _claim_row("health", slot)
    assert (row["state"], row["run_id"], row["fence"], row["attempts"]) == ("done", run.id, run.fence, 1)
    # Ad hoc runs claim nothing: two in a row both run.
    assert runner.execute("health", trigger="manual").status == "succeeded"
    assert runner.execute("health", trigger="manual").status == "succeeded"


@pytest.mark.usefixtures("history_url")
def test_node_jobs_are_claimed_once_per_node_and_deployment_jobs_once_in_all(cli):
    store = current_store()
    slot = _slot()
    opened = []
    for scope in ("node:10.0.0.1:6379", "node:10.0.0.2:6379"):
        lease = Lease(store, "health", timedelta(minutes=1), scope)
        claim = slots.Claim("health", scope, slot)
        opened.append(
            slots.open_run(store, lease, trigger="scheduled", requested_by="d", config_hash=None, claim=claim)
        )
        with pytest.raises(slots.SlotTaken):
            again = Lease(store, "health", timedelta(minutes=1), scope)
            slots.open_run(store, again, trigger="scheduled", requested_by="d", config_hash=None, claim=claim)
        lease.release()
    assert [o.status for o in opened] == ["running", "running"], "each node runs its own slot"
    for _ in range(2):
        lease = Lease(store, "backup-age", timedelta(minutes=1))
        claim = slots.Claim("backup-age", "deployment", slot)
        try:
            slots.open_run(store, lease, trigger="scheduled", requested_by="d", config_hash=None, claim=claim)
        except slots.SlotTaken:
            continue
        lease.release()
    assert len([c for c in slots.claims(store, "backup-age")]) == 1
    assert slots.node_scope("redis://:secret@10.0.0.1:7000/0") == "node:10.0.0.1:7000", "no credential"
    shown = {j["name"]: j["scope"] for j in json_out(cli("jobs", "--json"))}
    assert shown["health"] == shown["aof-check"] == "node"
    assert {shown[j] for j in ("backup", "session-sweep", "backup-verify", "backup-age")} == {"deployment"}


def _hold_slot(job: str, slot) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.processes.slot_holder", job, slot.isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    assert line.startswith("running "), proc.stderr.read() if proc.poll() is not None else line
    return proc, int(line.split()[1])


@pytest.mark.usefixtures("history_url")
def test_a_killed_sidecars_slot_is_interrupted_when_its_lease_lapses_and_run_once_as_catch_up(redis_server):
    runner = build_runner(load_settings(jobs=REGISTRY))
    grace = timedelta(hours=1)
    slot = _slot()
    proc, dead_run = _hold_slot("health", slot)
    assert exactly_once.take_over_orphans(runner, "health", grace, requested_by="daemon") == []
    proc.kill()
    proc.wait(10)
    # As if it ran on another host: its pid proves nothing, only its lease's expiry (the store's clock).
    name = Lease(runner.store, "health", timedelta(0), runner.scope_of("health")).name
    with runner.store.engine.begin() as conn:
        conn.execute(update(db.leases).where(db.leases.c.job == name).values(owner_host="elsewhere"))
    assert exactly_once.take_over_orphans(runner, "health", grace, requested_by="daemon") == []
    assert current_store().get(dead_run).status == "running", "not before its lease lapses"
    with runner.store.engine.begin() as conn:
        lapsed = store_now(conn) - timedelta(seconds=1)
        conn.execute(update(db.leases).where(db.leases.c.job == name).values(expires_at=lapsed))

    assert exactly_once.take_over_orphans(runner, "health", grace, requested_by="daemon") == [slot]
    assert exactly_once.take_over_orphans(runner, "health", grace, requested_by="daemon") == [], "once"
    dead, caught_up = sorted(_runs("health"), key=lambda r: r.id)
    assert dead.id == dead_run and dead.status == "interrupted" and dead.scheduled_for == slot
    assert (
        caught_up.trigger == "catch-up"
        and caught_up.status == "succeeded"
        and caught_up.scheduled_for == slot
    )
    assert caught_up.fence > dead.fence
    row = _claim_row("health", slot)
    assert (row["run_id"], row["attempts"], row["state"]) == (caught_up.id, 2, "done")


@pytest.mark.usefixtures("history_url")
def test_an_orphan_outside_the_misfire_grace_is_not_run_again(redis_server):
    runner = build_runner(load_settings(jobs=REGISTRY))
    old = _slot() - timedelta(hours=2)
    proc, dead_run = _hold_slot("health", old)
    proc.kill()
    proc.wait(10)
    assert exactly_once.take_over_orphans(runner, "health", timedelta(hours=1), requested_by="daemon") == []
    assert [r.id for r in _runs("health")] == [dead_run]


def test_the_slot_named_by_the_store_clock_is_the_same_slot_for_a_clock_slightly_ahead():
    every = parse_schedule("every 2s")
    fired = exactly_once.EPOCH + timedelta(days=20000, seconds=10)  # a grid point
    assert exactly_once.slot_at(every, exactly_once.UTC, fired) == fired
    # This host fired 200 ms early by the store's clock: it still names the slot it fired for.
    assert exactly_once.slot_at(every, exactly_once.UTC, fired - timedelta(milliseconds=200)) == fired
    assert exactly_once.slot_at(every, exactly_once.UTC, fired + timedelta(seconds=1.2)) == fired
    cron = parse_schedule("*/15 * * * *")
    quarter = exactly_once.EPOCH + timedelta(days=20000, minutes=15)
    assert exactly_once.slot_at(cron, exactly_once.UTC, quarter - timedelta(milliseconds=300)) == quarter


def test_a_sidecar_whose_clock_is_minutes_ahead_cannot_take_a_live_lease(postgres_url, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", postgres_url)
    store = HistoryStore(postgres_url)
    with Lease.acquire(store, "backup-age", timedelta(minutes=1)) as held:
        # Its clock runs 10 minutes ahead: by its own clock our lease lapsed long ago.
        ahead = subprocess.run(
            [sys.executable, "-m", "tests.support.processes.skewed", "600", "run", "backup-age", "--json"],
            capture_output=True,
            text=True,
            timeout=WAIT_CAP_S,
            cwd=ROOT,
        )
        assert held.still_held()
    assert ahead.returncode == 75, ahead.stderr
    row = json_out(ahead)
    assert row["status"] == "skipped" and "already running" in row["error"]
    # Its row is stamped by the store's clock too, not its own.
    assert abs((store.get(row["id"]).started_at - utcnow()).total_seconds()) < 60


JOBS = ["health", "backup-age", "session-sweep"]


def test_three_sidecars_on_postgresql_run_each_slot_once_through_a_sigkill(
    postgres_url, redis_server, tmp_path
):
    """The goal benchmark's short version (bench/exactly_once.py runs it for 5 minutes)."""
    env = sidecar_env(JOBS, "every 2s", REDIS_MAINT_HISTORY_URL=postgres_url)
    skews = [None, None, 180]  # the third one's clock runs 3 minutes ahead
    logs = [tmp_path / f"sidecar{i}.log" for i in range(len(skews))]
    sidecars = [start_sidecar(env, skew=s, log=log) for s, log in zip(skews, logs, strict=True)]
    store = HistoryStore(postgres_url)
    kills = []
    try:
        # Every sidecar up (a loaded machine starts processes slowly), and slots being run.
        wait_for(lambda: all(map(started, logs)), timeout=WAIT_CAP_S, what="the sidecars to start")
        wait_for(
            lambda: len({r.pid for r in store.list() if r.status == "succeeded"}) >= 2,
            timeout=WAIT_CAP_S,
            what="the sidecars to run slots",
        )
        start = exactly_once.grid_floor(utcnow(), TWO_S) + TWO_S
        time.sleep(6)
        kills.append(utcnow())
        kill_sidecar(sidecars[0])
        time.sleep(2)
        sidecars[0] = start_sidecar(env, log=tmp_path / "sidecar0-again.log")
        wait_for(lambda: started(tmp_path / "sidecar0-again.log"), timeout=WAIT_CAP_S, what="the restart")
        time.sleep(8)
        end = exactly_once.grid_floor(utcnow(), TWO_S) - TWO_S
    finally:
        codes = [stop_sidecar(p) for p in sidecars]
    assert codes == [0, 0, 0], [
        (tmp_path / f).read_text()[-2000:] for f in ("sidecar0-again.log", "sidecar1.log", "sidecar2.log")
    ]
    fig = figures(store, JOBS, TWO_S, start, end, kills)
    assert fig.run_twice == [], "\n".join(fig.lines())
    assert fig.lost_beyond == [], "\n".join(fig.lines())
    assert fig.slots >= 3 * 6 and len(fig.by_pid) >= 2, "\n".join(fig.lines())


@pytest.mark.usefixtures("history_url")
def test_a_daemon_that_loses_a_slots_claim_records_nothing_and_counts_it(redis_server, monkeypatch):
    from redis_maint.run.daemon import Daemon
    from tests.support.daemon import only_health_settings

    monkeypatch.setenv("REDIS_MAINT_HTTP__PORT", "0")
    first, second = (Daemon(only_health_settings("every 1h")) for _ in range(2))
    for daemon in (first, second):
        daemon.start_observability()
        daemon._fire("health", "scheduled")
    (run,) = _runs("health")
    assert run.status == "succeeded" and run.scheduled_for == exactly_once.grid_floor(
        utcnow(), timedelta(hours=1)
    )
    lost = 'redis_maint_slot_claims_lost_total{job="health"} 1.0'
    assert lost in second.metrics.exposition().decode()
    assert lost not in first.metrics.exposition().decode()
