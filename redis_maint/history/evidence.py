"""Read-only queries for `redis-maint report`: runs and catalog rows over a time range.

Rows come back as plain dicts with every column the table has, so columns added by later
upgrades (who ran it from the OS, the config hash, hash-chain fields) reach the report without a
change here. Nothing in this module writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from redis_maint.history import db
from redis_maint.history.db_errors import guard
from redis_maint.history.runs import HistoryStore

# Statuses of a catalog row whose backup was complete at some point (pruned ones were, too).
ONCE_COMPLETE = ("complete", "pruned", "missing", "changed")


def runs_between(store: HistoryStore, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every run whose `started_at` is in [start, end), oldest first (missed slots included)."""
    query = (
        select(db.runs)
        .where(db.runs.c.started_at >= start, db.runs.c.started_at < end)
        .order_by(db.runs.c.started_at, db.runs.c.id)
    )
    return _rows(store, query, "read runs for a report")


def runs_of(store: HistoryStore, jobs: Iterable[str], since: datetime) -> list[dict[str, Any]]:
    """Every run of these jobs that started at or after `since` (up to now), oldest first."""
    query = (
        select(db.runs)
        .where(db.runs.c.job.in_(list(jobs)), db.runs.c.started_at >= since)
        .order_by(db.runs.c.started_at, db.runs.c.id)
    )
    return _rows(store, query, "read verification runs for a report")


def last_run(store: HistoryStore, jobs: Iterable[str], before: datetime) -> dict[str, Any] | None:
    """The newest finished run (succeeded or failed) of any of these jobs that started before `before`."""
    query = (
        select(db.runs)
        .where(
            db.runs.c.job.in_(list(jobs)),
            db.runs.c.started_at < before,
            db.runs.c.status.in_(("succeeded", "failed")),
        )
        .order_by(db.runs.c.started_at.desc(), db.runs.c.id.desc())
        .limit(1)
    )
    rows = _rows(store, query, "read the last check for a report")
    return rows[0] if rows else None


def backups_between(
    store: HistoryStore, start: datetime, end: datetime, instance: str | None = None
) -> list[dict[str, Any]]:
    """Catalog rows created in [start, end), oldest first."""
    query = select(db.backups).where(db.backups.c.created_at >= start, db.backups.c.created_at < end)
    if instance is not None:
        query = query.where(db.backups.c.instance == instance)
    query = query.order_by(db.backups.c.created_at, db.backups.c.id)
    return _rows(store, query, "read the backup catalog for a report")


def last_complete_before(
    store: HistoryStore, before: datetime, instance: str | None = None
) -> dict[str, Any] | None:
    """The newest backup created before `before` that was ever complete (the start of the first RPO gap)."""
    query = select(db.backups).where(
        db.backups.c.created_at < before,
        db.backups.c.status.in_(ONCE_COMPLETE),
        db.backups.c.completed_at.is_not(None),
    )
    if instance is not None:
        query = query.where(db.backups.c.instance == instance)
    query = query.order_by(db.backups.c.created_at.desc(), db.backups.c.id.desc()).limit(1)
    rows = _rows(store, query, "read the backup catalog for a report")
    return rows[0] if rows else None


def _rows(store: HistoryStore, query: Any, action: str) -> list[dict[str, Any]]:
    with guard(store.url, action), store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
