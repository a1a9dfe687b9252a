"""Helpers for the evidence-chain tests: tampering with a history store as an intruder would, with
plain SQL (the stdlib sqlite3 module, or psycopg on PostgreSQL) and never through redis-maint."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from sqlalchemy.engine import make_url

from redis_maint.history.runs import HistoryStore, RunStatus
from tests.support.common import json_out


def tamper(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one SQL statement on the store behind `url` outside redis-maint; returns its rows.

    Write it with `?` placeholders: they become `%s` on PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database)
        try:
            with conn:
                rows = conn.execute(sql, params).fetchall()
            return rows
        finally:
            conn.close()
    import psycopg

    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def ledger(url: str) -> list[dict[str, Any]]:
    """Every ledger record, in seq order, as dicts."""
    cols = ("seq", "kind", "ref", "record", "prev_hash", "hash")
    rows = tamper(url, f"SELECT {', '.join(cols)} FROM ledger ORDER BY seq")
    return [dict(zip(cols, row, strict=True)) for row in rows]


def sha256_link(prev_hash: str, record: str) -> str:
    """The documented link: SHA-256 over the previous hash followed by the canonical record."""
    return hashlib.sha256((prev_hash + record).encode()).hexdigest()


def some_history(store: HistoryStore) -> dict[str, int]:
    """Runs as operators leave them: an org's sessions deleted by alice, a sweep, a skipped backup."""
    delete = store.start_run("session-delete", "manual", "alice")
    store.finish_run(delete, RunStatus.SUCCEEDED, {"deleted": 610, "org": "org-7", "scanned": 2000}, None)
    sweep = store.start_run("session-sweep", "scheduled", "daemon")
    store.finish_run(sweep, RunStatus.SUCCEEDED, {"deleted": 3, "scanned": 2000}, None)
    skipped = store.record("backup", "scheduled", RunStatus.SKIPPED, requested_by="daemon", error="lock held")
    return {"delete": delete, "sweep": sweep, "skipped": skipped}


def verify(cli) -> tuple[int, dict[str, Any]]:
    """`audit verify --json`: (exit code, result)."""
    result = cli("audit", "verify", "--json")
    return result.exit_code, json_out(result)


def events_without(url: str, backup_id: str, event: str) -> None:
    """Remove one kind of event from a backup's `events`, as an intruder editing the JSON would."""
    (raw,) = tamper(url, "SELECT events FROM backups WHERE id = ?", (backup_id,))[0]
    events = raw if isinstance(raw, list) else json.loads(raw)
    kept = json.dumps([e for e in events if e.get("event") != event])
    value = "?" if make_url(url).get_backend_name() == "sqlite" else "CAST(? AS json)"
    tamper(url, f"UPDATE backups SET events = {value} WHERE id = ?", (kept, backup_id))


# The history store's schema as it was before the evidence chain was added, in plain SQL.
SCHEMA_BEFORE_CHAIN = """
CREATE TABLE runs (
    id INTEGER NOT NULL, job VARCHAR(64) NOT NULL, "trigger" VARCHAR(16) NOT NULL,
    requested_by VARCHAR(128), host VARCHAR(255), pid INTEGER, started_at DATETIME NOT NULL,
    finished_at DATETIME, status VARCHAR(16) NOT NULL, summary JSON, error TEXT, PRIMARY KEY (id)
);
CREATE INDEX ix_runs_job ON runs (job);
CREATE INDEX ix_runs_status ON runs (status);
CREATE INDEX ix_runs_started_at ON runs (started_at);
CREATE TABLE leases (
    job VARCHAR(64) NOT NULL, owner_host VARCHAR(255) NOT NULL, owner_pid INTEGER NOT NULL,
    owner_token VARCHAR(64) NOT NULL, run_id INTEGER, acquired_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL, PRIMARY KEY (job)
);
CREATE TABLE backups (
    id VARCHAR(64) NOT NULL, run_id INTEGER, instance VARCHAR(128) NOT NULL, target VARCHAR(1024) NOT NULL,
    target_root VARCHAR(1024) NOT NULL, location VARCHAR(512) NOT NULL, created_at DATETIME NOT NULL,
    completed_at DATETIME, status VARCHAR(16) NOT NULL, size BIGINT, files JSON, redis_version VARCHAR(32),
    server JSON, checks JSON, verified_at DATETIME, verify_result JSON, pruned_at DATETIME, error TEXT,
    events JSON, kept BOOLEAN, kept_reason TEXT, kept_by VARCHAR(128), kept_at DATETIME, PRIMARY KEY (id)
);
CREATE INDEX ix_backups_instance ON backups (instance);
CREATE INDEX ix_backups_status ON backups (status);
CREATE INDEX ix_backups_run_id ON backups (run_id);
CREATE INDEX ix_backups_created_at ON backups (created_at);
CREATE TABLE daemons (
    id VARCHAR(64) NOT NULL, host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, started_at DATETIME NOT NULL,
    heartbeat_at DATETIME NOT NULL, heartbeat_s FLOAT NOT NULL, stopped_at DATETIME, stop_reason TEXT,
    timezone VARCHAR(64), schedules JSON, PRIMARY KEY (id)
);
CREATE INDEX ix_daemons_heartbeat_at ON daemons (heartbeat_at);
"""

OLD_RUNS = [
    (
        1,
        "backup",
        "scheduled",
        "daemon",
        "vm",
        10,
        "2026-11-01 03:00:00.000000",
        "2026-11-01 03:00:02.500000",
        "succeeded",
        '{"backup_id": "20261101T030000Z-aaaaaa", "bytes": 1024}',
        None,
    ),
    (
        2,
        "session-delete",
        "manual",
        "alice",
        "vm",
        11,
        "2026-11-02 10:00:00.000000",
        "2026-11-02 10:00:01.000000",
        "succeeded",
        '{"deleted": 610, "org": "org-7"}',
        None,
    ),
    (
        3,
        "health",
        "scheduled",
        "daemon",
        "vm",
        10,
        "2026-11-02 10:01:00.000000",
        "2026-11-02 10:01:00.100000",
        "failed",
        '{"level": "critical"}',
        "PING took 900 ms",
    ),
]
OLD_BACKUP = (
    "20261101T030000Z-aaaaaa",
    1,
    "default",
    "/srv/backups/default/x",
    "/srv/backups",
    "default/x",
    "2026-11-01 03:00:00.000000",
    "2026-11-01 03:00:02.000000",
    "complete",
    1024,
    '[{"path": "dump.rdb", "size": 1024, "sha256": "ab"}]',
    '[{"at": "2026-11-01T03:00:00Z", "event": "created", "detail": "run 1"}, '
    '{"at": "2026-11-01T03:00:02Z", "event": "completed", "detail": "1 files, 1024 bytes"}]',
)


def old_history(path) -> None:
    """A SQLite history written by the version before the chain: today's schema then, with rows."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executescript(SCHEMA_BEFORE_CHAIN)
            conn.executemany(
                'INSERT INTO runs (id, job, "trigger", requested_by, host, pid, started_at, finished_at, status, '
                "summary, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                OLD_RUNS,
            )
            conn.execute(
                "INSERT INTO backups (id, run_id, instance, target, target_root, location, created_at, "
                "completed_at, status, size, files, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                OLD_BACKUP,
            )
    finally:
        conn.close()
