"""The job history: one row per run, scheduled or ad hoc."""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from redis_maint.history import chain, db, db_errors
from redis_maint.provenance import os_user
from redis_maint.redact import redact, redact_url
from redis_maint.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    MISSED = "missed"


class Trigger(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    CATCH_UP = "catch-up"


@dataclass(frozen=True)
class Run:
    id: int
    job: str
    trigger: str
    requested_by: str | None
    host: str | None
    pid: int | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    summary: dict[str, Any] | None
    error: str | None
    # The evidence chain (history/chain.py): the hash of this row's latest ledger record, and the one
    # before it in the chain. NULL only in rows not chained yet.
    prev_hash: str | None = None
    hash: str | None = None
    # Who and when: the OS user of the process that wrote the row (requested_by is only a
    # claim), the schedule slot a scheduled, catch-up or missed run belongs to, and the sha256 of
    # the masked settings in force (redis_maint/provenance.py). NULL in rows from before the columns.
    os_user: str | None = None
    scheduled_for: datetime | None = None
    config_hash: str | None = None
    # Fencing (history/slots.py): the token of the lease take this run ran under; NULL for runs that
    # never ran (skipped, missed) and rows from before fencing.
    fence: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented `--json` shape of a run (README: JSON output)."""
        return {
            "id": self.id,
            "job": self.job,
            "trigger": self.trigger,
            "requested_by": self.requested_by,
            "host": self.host,
            "pid": self.pid,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "status": self.status,
            "summary": self.summary,
            # Masked again on the way out: rows written before a secret was known stay safe too.
            "error": None if self.error is None else redact(self.error),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "os_user": self.os_user,
            "scheduled_for": isoformat(self.scheduled_for),
            "config_hash": self.config_hash,
            "fence": self.fence,
        }


# The documented `--json` keys of a run, in order (the dataclass fields above).
RUN_FIELDS = tuple(f.name for f in fields(Run))


def _guarded(store: HistoryStore, action: str) -> AbstractContextManager[None]:
    """Turn database errors into HistoryError naming the store, the action and what to do (no SQL)."""
    return db_errors.guard(store.url, action)


# A run's final write outlives a restart of a history server: retried this long while unreachable.
FINAL_WRITE_RETRY_S = 60.0
FINAL_WRITE_RETRY_MAX_DELAY_S = 5.0


def _retried_while_unreachable(method: Callable[..., T]) -> Callable[..., T]:
    """Retry a write while the history server is unreachable (HistoryUnreachableError), with a
    backoff, for up to FINAL_WRITE_RETRY_S; each attempt is logged. The pool's pre-ping reconnects."""

    @functools.wraps(method)
    def retried(self: HistoryStore, *args: Any, **kwargs: Any) -> T:
        deadline = time.monotonic() + FINAL_WRITE_RETRY_S
        delay, attempt = 0.25, 1
        while True:
            try:
                return method(self, *args, **kwargs)
            except db_errors.HistoryUnreachableError as exc:
                if time.monotonic() + delay > deadline:
                    raise db_errors.HistoryUnreachableError(
                        f"{exc} (gave up after {attempt} attempts in {FINAL_WRITE_RETRY_S:g}s; the run's "
                        "row is marked interrupted by the job's next run or the daemon's next start)"
                    ) from None
                log.warning(
                    "history store unreachable; retrying",
                    extra={
                        "action": method.__name__,
                        "attempt": attempt,
                        "retry_in_s": delay,
                        "error": str(exc),
                    },
                )
                time.sleep(delay)
                delay, attempt = min(delay * 2, FINAL_WRITE_RETRY_MAX_DELAY_S), attempt + 1

    return retried


class HistoryStore:
    """Reads and writes runs. Safe to share between threads; several processes may use one file."""

    def __init__(self, url: str):
        self.url = url
        self.safe_url = redact_url(url)
        try:
            self.engine = db.engine_for(url)
        except SQLAlchemyError as exc:
            raise db_errors.history_error(exc, url, "open it") from None
        with _guarded(self, "chain the records written before its evidence chain existed"):
            chain.adopt_unchained(self.engine)

    def start_run(
        self,
        job: str,
        trigger: str,
        requested_by: str | None,
        *,
        scheduled_for: datetime | None = None,
        config_hash: str | None = None,
    ) -> int:
        with _guarded(self, "record the start of a run"), self.engine.begin() as conn:
            run_id = _insert(
                conn,
                job,
                trigger,
                requested_by,
                started_at=utcnow(),
                status=RunStatus.RUNNING,
                scheduled_for=scheduled_for,
                config_hash=config_hash,
            )
            chain.chain_row(conn, db.runs, run_id, "started")
            return run_id

    @_retried_while_unreachable
    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        summary: dict[str, Any] | None,
        error: str | None,
        *,
        fenced: Callable[[Any, RunStatus, str | None], tuple[RunStatus, str | None]] | None = None,
    ) -> None:
        """`fenced(conn, status, error) -> (status, error)` runs first in the same transaction: the
        run path's check that it still holds its lease (history/slots.py), so the check and the write
        cannot be told apart by another process."""
        with _guarded(self, "record the outcome of a run"), self.engine.begin() as conn:
            if fenced is not None:
                status, error = fenced(conn, status, error)
            conn.execute(
                update(db.runs)
                .where(db.runs.c.id == run_id)
                .values(
                    status=status,
                    finished_at=utcnow(),
                    summary=summary,
                    error=None if error is None else redact(error),
                )
            )
            chain.chain_row(conn, db.runs, run_id, "finished")

    def record(
        self,
        job: str,
        trigger: str,
        status: RunStatus,
        *,
        requested_by: str | None = None,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        scheduled_for: datetime | None = None,
        config_hash: str | None = None,
    ) -> int:
        """A run that never ran: skipped or missed."""
        now = utcnow()
        with _guarded(self, f"record a {status} run"), self.engine.begin() as conn:
            run_id = _insert(
                conn,
                job,
                trigger,
                requested_by,
                started_at=started_at or now,
                finished_at=now,
                status=status,
                summary=summary,
                error=None if error is None else redact(error),
                scheduled_for=scheduled_for,
                config_hash=config_hash,
            )
            chain.chain_row(conn, db.runs, run_id, str(status))
            return run_id

    def get(self, run_id: int) -> Run | None:
        with _guarded(self, "read a run"), self.engine.connect() as conn:
            row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).mappings().first()
        return None if row is None else Run(**row)

    def list(
        self,
        job: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Newest first."""
        query = select(db.runs).order_by(db.runs.c.started_at.desc(), db.runs.c.id.desc())
        if job:
            query = query.where(db.runs.c.job == job)
        if status:
            query = query.where(db.runs.c.status == status)
        if since:
            query = query.where(db.runs.c.started_at >= since)
        if limit:
            query = query.limit(limit)
        with _guarded(self, "list runs"), self.engine.connect() as conn:
            return [Run(**row) for row in conn.execute(query).mappings()]

    def last(self, job: str, status: str | None = None) -> Run | None:
        runs = self.list(job=job, status=status, limit=1)
        return runs[0] if runs else None

    def running(self, job: str | None = None) -> list[Run]:
        return self.list(job=job, status=RunStatus.RUNNING)

    def mark_interrupted(self, run_ids: list[int], reason: str) -> int:
        if not run_ids:
            return 0
        with _guarded(self, "mark runs interrupted"), self.engine.begin() as conn:
            marked = [
                row_id
                for (row_id,) in conn.execute(
                    update(db.runs)
                    .where(db.runs.c.id.in_(run_ids), db.runs.c.status == RunStatus.RUNNING)
                    .values(status=RunStatus.INTERRUPTED, finished_at=utcnow(), error=reason)
                    .returning(db.runs.c.id)
                )
            ]
            for row_id in sorted(marked):
                chain.chain_row(conn, db.runs, row_id, "interrupted")
            return len(marked)

    def counts_by_status(self, job: str) -> dict[str, int]:
        query = select(db.runs.c.status, func.count()).where(db.runs.c.job == job).group_by(db.runs.c.status)
        with _guarded(self, "count runs"), self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(query)}

    def check_writable(self) -> None:
        """A write that changes nothing, to prove the store accepts writes."""
        with _guarded(self, "write"), self.engine.begin() as conn:
            conn.execute(update(db.runs).where(db.runs.c.id == -1).values(status="running"))


def _insert(conn: Any, job: str, trigger: str, requested_by: str | None, **values: Any) -> int:
    """A new run row, stamped with this process's host, pid and OS user; returns its id."""
    result = conn.execute(
        db.runs.insert().values(
            job=job,
            trigger=trigger,
            requested_by=requested_by,
            host=socket.gethostname(),
            pid=os.getpid(),
            os_user=os_user(),
            **values,
        )
    )
    return int(result.inserted_primary_key[0])
