"""Read queries for auditors: runs and backups filtered by time range, trigger, who, status and dry
run, with the count of everything that matched (so a listing can say "showing 50 of 58")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, or_, select

from redis_maint.history import db, db_errors
from redis_maint.history.runs import HistoryStore, Run


@dataclass(frozen=True)
class RunFilter:
    """Every field that is set narrows the runs; `until` is exclusive, `since` inclusive (UTC)."""

    job: str | None = None
    statuses: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    by: str | None = None  # requested_by (the claim) or the OS user that wrote the row
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool | None = None  # True: dry runs only; False: real runs only

    def conditions(self) -> list[Any]:
        c = db.runs.c
        out: list[Any] = []
        if self.job:
            out.append(c.job == self.job)
        if self.statuses:
            out.append(c.status.in_(self.statuses))
        if self.triggers:
            out.append(c.trigger.in_(self.triggers))
        if self.by is not None:
            who = [c.requested_by == self.by]
            if "os_user" in c:
                who.append(c.os_user == self.by)
            out.append(or_(*who))
        if self.since is not None:
            out.append(c.started_at >= self.since)
        if self.until is not None:
            out.append(c.started_at < self.until)
        if self.dry_run is not None:
            dry = c.summary["dry_run"].as_boolean()
            out.append(dry.is_(True) if self.dry_run else or_(dry.is_(None), dry.is_(false())))
        return out


def find_runs(store: HistoryStore, where: RunFilter, limit: int | None) -> tuple[list[Run], int]:
    """The newest `limit` runs that match (all with None), newest first, and how many match in all."""
    conditions = where.conditions()
    query = select(db.runs).where(*conditions)
    query = query.order_by(db.runs.c.started_at.desc(), db.runs.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with db_errors.guard(store.url, "list runs"), store.engine.connect() as conn:
        runs = [Run(**row) for row in conn.execute(query).mappings()]
        if limit is None or len(runs) < limit:
            return runs, len(runs)
        total = conn.execute(select(func.count()).select_from(db.runs).where(*conditions)).scalar_one()
    return runs, int(total)


def find_backups(
    store: HistoryStore,
    *,
    instance: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[Any]:
    """Catalog entries created in [since, until), newest first (BackupRecord, as Catalog.list)."""
    from redis_maint.history.catalog import BackupRecord

    c = db.backups.c
    query = select(db.backups).order_by(c.created_at.desc(), c.id.desc())
    for column, value in (("instance", instance), ("status", status)):
        if value is not None:
            query = query.where(c[column] == value)
    if since is not None:
        query = query.where(c.created_at >= since)
    if until is not None:
        query = query.where(c.created_at < until)
    if limit:
        query = query.limit(limit)
    with db_errors.guard(store.url, "list backups", what="backup catalog in"), store.engine.connect() as conn:
        return [BackupRecord(**row) for row in conn.execute(query).mappings()]
