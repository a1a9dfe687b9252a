"""PostgreSQL as the shared history: races that SQLite's BEGIN IMMEDIATE hid, and connection faults on a
real server (stopped, started and restarted with pg_ctl: a module-scoped server of its own, so the
session's server stays up). Credentials in the URL are masked everywhere."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import inspect as sa_inspect

import jobs
from config import load_settings
from jobs import REGISTRY
from redis_maint.errors import HistoryError, LockHeldError
from redis_maint.history import db, runs
from redis_maint.history.catalog import BackupRecord, Catalog
from redis_maint.history.db_errors import HistoryUnreachableError
from redis_maint.history.leases import Lease
from redis_maint.history.runs import HistoryStore
from redis_maint.run import runner
from redis_maint.timeutil import utcnow
from tests.support.common import json_out, wait_for
from tests.support.daemon import start_daemon
from tests.support.fixtures.postgres import start_postgres
from tests.support.history import current_store
from tests.support.services.postgres import PASSWORD

RACERS = 8
POOLED = 5  # SQLAlchemy's default pool size: the connections a pool keeps open
WAIT_CAP_S = 30  # a safety net so a broken test ends; never a speed assertion


def _at_once(n: int, work) -> list[object]:
    """Run work(i) in n threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def racer(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_CAP_S)
    return results


def _warm(store: HistoryStore, n: int) -> None:
    """n connections open in the pool, so that racers do not queue behind each other's connect."""
    conns = [store.engine.connect() for _ in range(n)]
    for conn in conns:
        conn.close()


# -- races, on both stores --------------------------------------------------------------------
def test_processes_opening_a_new_store_at_once_create_its_schema_once(history_url):
    engines = [db._create(history_url) for _ in range(RACERS)]  # one engine each, as separate processes have
    for engine in engines:  # connected before the race, so that the racers really overlap
        engine.connect().close()
    try:
        results = _at_once(RACERS, lambda i: db.ensure_schema(engines[i]))
        assert [r for r in results if r is not None] == []
        tables = set(sa_inspect(engines[0]).get_table_names())
        assert {"runs", "leases", "backups", "daemons"} <= tables
    finally:
        for engine in engines:
            engine.dispose()


def test_racing_takers_of_a_new_lease_get_one_holder_and_the_rest_see_it(history_url):
    store = HistoryStore(history_url)
    _warm(store, POOLED)
    results = _at_once(POOLED, lambda _i: Lease.acquire(store, "health", timedelta(minutes=1)))
    leases = [r for r in results if isinstance(r, Lease)]
    held = [r for r in results if isinstance(r, LockHeldError)]
    assert len(leases) == 1 and len(held) == POOLED - 1, results
    leases[0].release()


def test_a_lease_taken_between_the_reads_of_a_start_is_never_shared(postgres_url, monkeypatch):
    """PostgreSQL reads each statement afresh (READ COMMITTED): a lease row another run commits after
    a start first read "no holder" must still stop that start. Injected: right after the first read,
    another run takes the lease in its own transaction. The start is then recorded skipped, and the
    other run keeps the lease; it never runs beside it."""
    from redis_maint.history.runs import RunStatus
    from redis_maint.history.slots import open_run

    # (SQLite's BEGIN IMMEDIATE serializes whole starts: no second read can differ there.)
    store = HistoryStore(postgres_url)
    starting = Lease(store, "backup", timedelta(minutes=1))
    real_read = Lease.locked_holder
    other: list[Lease] = []

    def read_then_lose_the_race(self, conn):
        found = real_read(self, conn)
        if self is starting and not other:
            other.append(Lease.acquire(store, "backup", timedelta(minutes=1)))  # commits on its own
        return found

    monkeypatch.setattr(Lease, "locked_holder", read_then_lose_the_race)
    opened = open_run(store, starting, trigger="manual", requested_by="t", config_hash=None)
    assert opened.status == RunStatus.SKIPPED and opened.holder is not None
    assert starting.fence is None or starting.fence != other[0].fence
    assert other[0].still_held()
    assert [r.status for r in store.list(job="backup")] == [RunStatus.SKIPPED]
    other[0].release()


def test_concurrent_catalog_changes_keep_every_event(history_url):
    store = HistoryStore(history_url)
    catalog = Catalog(store)
    catalog.add(
        BackupRecord(
            id="20260101T000000Z-aaaaaa",
            run_id=None,
            instance="default",
            target="/t/x",
            target_root="/t",
            location="x",
            created_at=utcnow(),
            status="complete",
        )
    )
    _warm(store, POOLED)
    results = _at_once(
        POOLED, lambda i: catalog.record_verify("20260101T000000Z-aaaaaa", {"ok": True, "round": i})
    )
    assert results == [None] * POOLED
    events = catalog.get("20260101T000000Z-aaaaaa").events
    assert [e["event"] for e in events].count("verified") == POOLED, events


# -- faults, on a server of this module's own -------------------------------------------------
@pytest.fixture(scope="module")
def pg():
    server = start_postgres()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(pg, monkeypatch) -> str:
    """A fresh database on the module's server (started if a test left it stopped), in the env."""
    if not pg.running():
        pg.start()
    url = pg.url(pg.create_database())
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", url)
    yield url
    db.dispose_all()
    if not pg.running():
        pg.start()


def _where(pg) -> str:
    return f"127.0.0.1:{pg.port}"


def test_a_run_with_postgresql_down_exits_1_naming_the_host_with_the_password_masked(pg, pg_url, cli):
    pg.stop()
    result = cli("run", "health", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"nothing accepts connections at {_where(pg)}" in result.stderr
    assert f"postgresql+psycopg://maint:***@{_where(pg)}/" in result.stderr
    assert PASSWORD not in result.output and "Traceback" not in result.output


def test_doctor_config_show_and_jobs_mask_the_password(pg, pg_url, cli):
    shown = cli("config", "show", "--origin")
    assert shown.exit_code == 0, shown.output
    assert f"maint:***@{_where(pg)}" in shown.stdout and PASSWORD not in shown.output
    assert PASSWORD not in cli("config", "show", "--json").output
    pg.stop()
    doctor = cli("doctor", "--json")
    history = {c["check"]: c for c in json_out(doctor)}["history"]
    assert doctor.exit_code == 1 and not history["ok"]
    assert (
        f"maint:***@{_where(pg)}" in history["detail"] and "nothing accepts connections" in history["detail"]
    )
    listed = cli("jobs", "--json")
    assert listed.exit_code == 1 and f"maint:***@{_where(pg)}" in listed.stderr
    assert PASSWORD not in doctor.output + listed.output


class _LineReader:
    """Collects a process's stderr lines as they come (the daemon logs JSON lines)."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._thread.start()

    def matching(self, msg: str) -> list[dict]:
        found = []
        for line in list(self.lines):
            if line.startswith("{") and json.loads(line).get("msg") == msg:
                found.append(json.loads(line))
        return found


def test_the_daemon_waits_for_postgresql_at_start_then_runs(pg, pg_url, redis_server):
    pg.stop()
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h")
    reader = _LineReader(proc.stderr)
    try:
        wait_for(
            lambda: len(reader.matching("history store unreachable; the daemon retries")) >= 2,
            timeout=WAIT_CAP_S,
            what="two logged attempts",
        )
        assert proc.poll() is None, "the daemon keeps waiting instead of dying"
        pg.start()
        wait_for(
            lambda: current_store().list(job="health", status="succeeded"),
            timeout=WAIT_CAP_S,
            what="catch-up",
        )
    finally:
        proc.send_signal(15)
        proc.wait(WAIT_CAP_S)
    assert proc.returncode == 0
    attempts = reader.matching("history store unreachable; the daemon retries")
    assert [a["attempt"] for a in attempts[:2]] == [1, 2]
    assert attempts[0]["retry_in_s"] < attempts[1]["retry_in_s"]
    assert f"nothing accepts connections at {_where(pg)}" in attempts[0]["error"]
    assert f"maint:***@{_where(pg)}" in attempts[0]["error"]
    assert PASSWORD not in "".join(reader.lines)


def test_sigterm_while_the_daemon_waits_for_postgresql_exits_0(pg, pg_url):
    pg.stop()
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h")
    reader = _LineReader(proc.stderr)
    wait_for(
        lambda: reader.matching("history store unreachable; the daemon retries"),
        timeout=WAIT_CAP_S,
        what="a logged attempt",
    )
    proc.send_signal(15)
    assert proc.wait(WAIT_CAP_S) == 0
    time.sleep(0.1)  # the reader thread drains the pipe
    assert reader.matching("daemon stopped before the history store answered")


class _Blocking:
    """Replaces health's body: reports that it started, then waits to be let go."""

    def __init__(self):
        self.started = threading.Event()
        self.go = threading.Event()

    def __call__(self, ctx) -> dict:
        self.started.set()
        self.go.wait(WAIT_CAP_S)
        return {"done": True}


def _blocked_run(monkeypatch, lease_ttl: str = "60s") -> tuple[_Blocking, threading.Thread, list]:
    body = _Blocking()
    monkeypatch.setenv("REDIS_MAINT_LOCK__LEASE_TTL", lease_ttl)
    monkeypatch.setitem(jobs.REGISTRY, "health", dataclasses.replace(jobs.REGISTRY["health"], run=body))
    settings = load_settings(jobs=REGISTRY)
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(runner.execute(settings, "health", trigger="manual", requested_by="t"))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert body.started.wait(WAIT_CAP_S)
    return body, thread, outcome


def test_a_run_that_ends_while_postgresql_restarts_records_its_outcome_once_it_is_back(
    pg, pg_url, monkeypatch, caplog
):
    body, thread, outcome = _blocked_run(monkeypatch)
    (running,) = current_store().running("health")
    pg.stop()
    body.go.set()  # the job ends while the server is down: its final write must wait for it
    wait_for(
        lambda: any(r.getMessage() == "history store unreachable; retrying" for r in caplog.records),
        timeout=WAIT_CAP_S,
        what="a retried final write",
    )
    pg.start()
    thread.join(WAIT_CAP_S)
    (run,) = outcome
    assert not isinstance(run, Exception), run
    assert run.id == running.id and run.status == "succeeded" and run.summary["done"] is True
    assert current_store().get(running.id).status == "succeeded"
    assert PASSWORD not in caplog.text


def test_a_run_whose_outcome_cannot_be_written_is_marked_interrupted_by_the_next_run(pg, pg_url, monkeypatch):
    monkeypatch.setattr(runs, "FINAL_WRITE_RETRY_S", 1.0)
    body, thread, outcome = _blocked_run(monkeypatch, lease_ttl="1s")
    (lost,) = current_store().running("health")
    pg.stop()
    body.go.set()
    thread.join(WAIT_CAP_S)
    (error,) = outcome
    assert isinstance(error, HistoryUnreachableError)
    assert "marked interrupted by the job's next run" in str(error) and PASSWORD not in str(error)
    pg.start()
    assert current_store().get(lost.id).status == "running", "nothing could record it"
    # The dead run's lease lapses (1 s); the next run reaps its row.
    wait_for(lambda: _next_run_is_not_skipped(), timeout=WAIT_CAP_S, what="the lease to lapse")
    reaped = current_store().get(lost.id)
    assert reaped.status == "interrupted" and "stopped without recording an outcome" in reaped.error


def _next_run_is_not_skipped() -> bool:
    settings = load_settings(jobs=REGISTRY)
    return runner.execute(settings, "health", trigger="manual", requested_by="t").status != "skipped"


def test_an_unreachable_store_is_retried_only_for_a_server_never_for_a_sqlite_file(tmp_path):
    path = tmp_path / "is-a-dir.db"
    path.mkdir()
    with pytest.raises(HistoryError) as caught:
        HistoryStore(f"sqlite:///{path}")
    assert not isinstance(caught.value, HistoryUnreachableError)
