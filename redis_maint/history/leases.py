"""Per-job leases in the history store, shared by every process that uses the same store.

A lease is a row (job, owner, acquired_at, expires_at) taken in one transaction, renewed by
a heartbeat while the job runs and released by its owner. A holder that died stops renewing
and its lease lapses; on the same host a dead owner's pid is noticed at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from redis_maint.errors import LockHeldError
from redis_maint.history import chain, db
from redis_maint.history.db_errors import explain, history_error
from redis_maint.history.runs import HistoryStore
from redis_maint.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

# One token per process: tells a restarted container's pid 1 from its previous life.
PROCESS_TOKEN = uuid.uuid4().hex
# Times a lease take is retried after losing a race to insert the job's first lease row.
INSERT_RACE_RETRIES = 3


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    token: str
    run_id: int | None
    acquired_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, row) -> Holder:
        return cls(
            row["owner_host"],
            row["owner_pid"],
            row["owner_token"],
            row["run_id"],
            row["acquired_at"],
            row["expires_at"],
        )

    def describe(self) -> str:
        run = f" (run {self.run_id})" if self.run_id else ""
        return f"{self.host} pid {self.pid}{run} since {isoformat(self.acquired_at)}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(holder: Holder, now: datetime) -> bool:
    """Expired, or on this host and provably gone."""
    if holder.expires_at <= now:
        return True
    if holder.host != socket.gethostname():
        return False
    if holder.pid == os.getpid():
        return holder.token != PROCESS_TOKEN
    return not pid_alive(holder.pid)


class Lease:
    """A held lease. Use `acquire`; release with `release()` or as a context manager."""

    def __init__(self, store: HistoryStore, job: str, ttl: timedelta):
        self.store = store
        self.job = job
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Set when another process has taken the lease over: the run's next checkpoint stops it.
        self.lost = threading.Event()
        # Part of the lease's identity: a thread of this same process that takes the lease over
        # after it lapsed has our pid and token, but not our acquired_at.
        self._acquired_at: datetime | None = None

    @classmethod
    def acquire(cls, store: HistoryStore, job: str, ttl: timedelta) -> Lease:
        """Take the job's lease or raise LockHeldError naming the holder."""
        lease = cls(store, job, ttl)
        holder = lease._try_take()
        if holder is not None:
            raise LockHeldError(
                f"job {job!r} is already running on {holder.describe()}; "
                "this run was skipped. Wait for it to finish, or check `redis-maint history --status running`."
            )
        return lease

    def _try_take(self) -> Holder | None:
        now = utcnow()
        values = {
            "owner_host": socket.gethostname(),
            "owner_pid": os.getpid(),
            "owner_token": PROCESS_TOKEN,
            "run_id": None,
            "acquired_at": now,
            "expires_at": now + self.ttl,
        }
        for attempt in range(INSERT_RACE_RETRIES + 1):
            try:
                holder = self._take_in_one_transaction(now, values)
            except IntegrityError:
                # PostgreSQL: another process inserted the job's first lease row between our SELECT
                # and our INSERT (FOR UPDATE locks rows, not gaps). Read it again: it is the holder.
                if attempt < INSERT_RACE_RETRIES:
                    continue
                raise history_error(
                    RuntimeError("the lease row kept changing under us"),
                    self.store.url,
                    f"take the lock for job {self.job!r}",
                ) from None
            except SQLAlchemyError as exc:
                raise history_error(exc, self.store.url, f"take the lock for job {self.job!r}") from None
            if holder is not None:
                return holder
            self._acquired_at = now
            return None
        return None  # unreachable: the loop returns or raises

    def _take_in_one_transaction(self, now: datetime, values: dict) -> Holder | None:
        """The live holder, or None once this process holds the lease (row locked while deciding)."""
        with self.store.engine.begin() as conn:
            row = (
                conn.execute(select(db.leases).where(db.leases.c.job == self.job).with_for_update())
                .mappings()
                .first()
            )
            if row is not None:
                holder = Holder.from_row(row)
                if not holder_is_dead(holder, now):
                    return holder
                conn.execute(update(db.leases).where(db.leases.c.job == self.job).values(**values))
                _chain_handover(conn, self.job, holder, values, now)
            else:
                conn.execute(db.leases.insert().values(job=self.job, **values))
        return None

    def _mine(self):
        return (
            db.leases.c.job == self.job,
            db.leases.c.owner_pid == os.getpid(),
            db.leases.c.owner_token == PROCESS_TOKEN,
            db.leases.c.owner_host == socket.gethostname(),
            db.leases.c.acquired_at == self._acquired_at,
        )

    def attach_run(self, run_id: int) -> None:
        self._owned_update(run_id=run_id)

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.job}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = max(self.ttl.total_seconds() / 3, 0.2)
        while not self._stop.wait(interval):
            try:
                if not self._owned_update(expires_at=utcnow() + self.ttl):
                    # Another process took it over after it lapsed; nothing left to renew.
                    self._mark_lost()
                    return
            except Exception as exc:  # keep beating: the store may be back before expiry
                log.warning(
                    "lease heartbeat failed", extra={"job": self.job, "error": explain(exc, self.store.url)}
                )

    def _mark_lost(self) -> None:
        if not self.lost.is_set():
            log.error("lease lost: another process took this job over", extra={"job": self.job})
        self.lost.set()

    def still_held(self) -> bool:
        """Renew now and say whether we still hold it (False once another process took it over)."""
        if self.lost.is_set():
            return False
        try:
            held = self._owned_update(expires_at=utcnow() + self.ttl)
        except SQLAlchemyError as exc:  # cannot tell: the heartbeat's verdict stands
            log.warning(
                "could not confirm the lease", extra={"job": self.job, "error": explain(exc, self.store.url)}
            )
            return True
        if not held:
            self._mark_lost()
        return held

    def _owned_update(self, **values) -> bool:
        with self.store.engine.begin() as conn:
            result = conn.execute(update(db.leases).where(*self._mine()).values(**values))
            return result.rowcount == 1

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.store.engine.begin() as conn:
                conn.execute(delete(db.leases).where(*self._mine()))
        except SQLAlchemyError as exc:  # it lapses on its own
            log.warning(
                "could not release lease", extra={"job": self.job, "error": explain(exc, self.store.url)}
            )

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _chain_handover(conn, job: str, previous: Holder, values: dict, now: datetime) -> None:
    """A lease passing from one owner to another is evidence (history/chain.py): who had it, who took it, why."""
    reason = "expired" if previous.expires_at <= now else "its owner's process is gone"
    data = {
        "job": job,
        "reason": reason,
        "from": {
            "host": previous.host,
            "pid": previous.pid,
            "run_id": previous.run_id,
            "acquired_at": previous.acquired_at,
            "expires_at": previous.expires_at,
        },
        "to": {k: values[k] for k in ("acquired_at", "expires_at")}
        | {"host": values["owner_host"], "pid": values["owner_pid"]},
    }
    chain.append(conn, "lease", job, data, event="handover")


def live_holders(store: HistoryStore) -> list[tuple[str, Holder]]:
    """(job, holder) for every lease whose holder is alive."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(db.leases)).mappings().all()
    now = utcnow()
    held = [(row["job"], Holder.from_row(row)) for row in rows]
    return [(job, h) for job, h in held if not holder_is_dead(h, now)]


def active_holder(store: HistoryStore, job: str) -> Holder | None:
    """The live holder of a job's lease, if any."""
    with store.engine.connect() as conn:
        row = conn.execute(select(db.leases).where(db.leases.c.job == job)).mappings().first()
    if row is None:
        return None
    holder = Holder.from_row(row)
    return None if holder_is_dead(holder, utcnow()) else holder
