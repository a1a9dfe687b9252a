"""History stores as redis-maint left them before schema migrations: tables made by `create_all`,
columns added by its ALTER TABLE path (no index, no NOT NULL), no `alembic_version`; rows in every
table. Written with the stdlib sqlite3 module, never through redis-maint.

The shapes, oldest first:
- `before_daemons_and_keep`: before `backups keep` and the daemons table (commit ca3bcb3's parent);
- `rev_0001`: the schema of commit 2fe5dbb, the first revision;
- `rev_0001_plus_provenance`: 2fe5dbb's file opened by commit a770be8, whose ALTER TABLE path added
  runs.os_user, .scheduled_for and .config_hash (part of revision 0002).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.audit import OLD_BACKUP, OLD_RUNS, SCHEMA_BEFORE_CHAIN, old_history

OLD_LEASE = ("backup", "vm", 10, "tok-1", 1, "2026-11-01 03:00:00.000000", "2026-11-01 03:05:00.000000")
OLD_DAEMON = (
    "d-1",
    "vm",
    10,
    "2026-11-01 00:00:00.000000",
    "2026-11-02 10:01:00.000000",
    5.0,
    "2026-11-02 10:02:00.000000",
    "SIGTERM",
    "UTC",
    '{"health": {"schedule": "every 1m", "next_run": null}}',
)
OLD_KEPT = (1, "quarterly audit", "alice", "2026-11-03 09:00:00.000000")

# What each table held before migrations, as `rows` reads it back.
COLUMNS = {
    "runs": ('id, job, "trigger", requested_by, host, pid, started_at, finished_at, status, summary, error'),
    "backups": (
        "id, run_id, instance, target, target_root, location, created_at, completed_at, status, size, "
        "files, events"
    ),
    "leases": "job, owner_host, owner_pid, owner_token, run_id, acquired_at, expires_at",
    "daemons": (
        "id, host, pid, started_at, heartbeat_at, heartbeat_s, stopped_at, stop_reason, timezone, schedules"
    ),
}
PROVENANCE = ("alice", "2026-11-02 10:00:00.000000", "c" * 64)  # run 2's os_user, scheduled_for, config_hash


def rev_0001(path: Path) -> None:
    old_history(path)  # runs and a backup with its events
    with _open(path) as conn:
        conn.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)", OLD_LEASE)
        conn.execute("INSERT INTO daemons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", OLD_DAEMON)
        conn.execute(
            "UPDATE backups SET kept = ?, kept_reason = ?, kept_by = ?, kept_at = ? WHERE id = ?",
            (*OLD_KEPT, OLD_BACKUP[0]),
        )


def rev_0001_plus_provenance(path: Path) -> None:
    rev_0001(path)
    with _open(path) as conn:
        for column, ddl in (
            ("os_user", "VARCHAR(128)"),
            ("scheduled_for", "DATETIME"),
            ("config_hash", "VARCHAR(64)"),
        ):
            conn.execute(f'ALTER TABLE runs ADD COLUMN "{column}" {ddl}')
        conn.execute(
            "UPDATE runs SET os_user = ?, scheduled_for = ?, config_hash = ? WHERE id = 2", PROVENANCE
        )


def before_daemons_and_keep(path: Path) -> None:
    with _open(path) as conn:
        conn.executescript(SCHEMA_BEFORE_CHAIN)
        conn.executescript(
            "DROP TABLE daemons; "
            + " ".join(
                f"ALTER TABLE backups DROP COLUMN {c};" for c in ("kept", "kept_reason", "kept_by", "kept_at")
            )
        )
        conn.executemany(f"INSERT INTO runs ({COLUMNS['runs']}) VALUES ({_marks(11)})", OLD_RUNS)
        conn.execute(f"INSERT INTO backups ({COLUMNS['backups']}) VALUES ({_marks(12)})", OLD_BACKUP)
        conn.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)", OLD_LEASE)


SHAPES = {
    "before_daemons_and_keep": before_daemons_and_keep,
    "rev_0001": rev_0001,
    "rev_0001_plus_provenance": rev_0001_plus_provenance,
}


def rows(path: Path, table: str, columns: str | None = None) -> list[tuple]:
    with _open(path) as conn:
        return conn.execute(f"SELECT {columns or COLUMNS[table]} FROM {table} ORDER BY 1").fetchall()


def tables(path: Path) -> set[str]:
    with _open(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class _open:
    """A sqlite3 connection that commits on success and is closed afterwards."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn.__enter__()

    def __exit__(self, *exc) -> None:
        try:
            self.conn.__exit__(*exc)
        finally:
            self.conn.close()
