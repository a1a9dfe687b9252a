"""Per-job leases in the history store, shared by every process that uses the same store.

A lease is a row (name, owner, acquired_at, expires_at, fence) taken in one transaction, renewed by
a heartbeat while the job runs and released by its owner. A holder that died stops renewing and
its lease lapses; on the same host a dead owner's pid is noticed at once.

One clock: expiry is computed and judged by the database's clock (PostgreSQL `clock_timestamp()`),
never by a sidecar's own, so a host whose clock is minutes off neither takes a live lease nor keeps
a lapsed one. SQLite is one host by nature: its clock is the host's.

Fencing: every take of a lease gets a token one larger than any before it for that lease name
(`lease_fences` keeps the last one when the lease row is released). A holder proves it still holds
the lease by finding its own token in the row (`fenced`, inside the transaction of the write it
guards), so a process that was paused past its expiry and taken over cannot commit anything.

A job runs under one lease per scope: `job` for a deployment job, `job@node:<host:port>` for a
job that runs once per Redis node (history/slots.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from redis_maint.errors import LockHeldError
from redis_maint.history import chain, db
from redis_maint.history.db_errors import explain, history_error
from redis_maint.history.runs import HistoryStore
from redis_maint.timeutil import as_utc, isoformat, utcnow

log = logging.getLogger(__name__)

# One token per process: tells a restarted container's pid 1 from its previous life.
PROCESS_TOKEN = uuid.uuid4().hex
# Times a lease take is retried after losing a race to insert the job's first lease row.
INSERT_RACE_RETRIES = 3
DEPLOYMENT = "deployment"


def lease_name(job: str, scope: str | None = None) -> str:
    """The lease row's key: the job for a deployment job, `job@scope` for a node job."""
    return job if scope in (None, "", DEPLOYMENT) else f"{job}@{scope}"


def job_of(name: str) -> str:
    return name.split("@", 1)[0]


def store_now(conn: Connection) -> datetime:
    """The database's clock (PostgreSQL: clock_timestamp(), the time of this statement); SQLite's
    is the host's. Leases and claims expire by it, so sidecars with skewed clocks agree."""
    if conn.dialect.name == "postgresql":
        return as_utc(conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one())
    return utcnow()


def now_of(store: HistoryStore) -> datetime:
    with store.engine.connect() as conn:
        return store_now(conn)


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    token: str
    run_id: int | None
    acquired_at: datetime
    expires_at: datetime
    fence: int | None = None

    @classmethod
    def from_row(cls, row) -> Holder:
        return cls(
            row["owner_host"],
            row["owner_pid"],
            row["owner_token"],
            row["run_id"],
            row["acquired_at"],
            row["expires_at"],
            row.get("fence"),
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
    """Expired (by the store's clock: pass `store_now`), or on this host and provably gone."""
    if holder.expires_at <= now:
        return True
    if holder.host != socket.gethostname():
        return False
    if holder.pid == os.getpid():
        return holder.token != PROCESS_TOKEN
    return not pid_alive(holder.pid)


def next_fence(conn: Connection, name: str) -> int:
    """The next fencing token of lease `name`: larger than any given before. Call it while holding
    the lease row's lock (the take); a race on the first token raises IntegrityError (retried)."""
    table = db.lease_fences
    bumped = conn.execute(update(table).where(table.c.name == name).values(token=table.c.token + 1))
    if bumped.rowcount == 0:
        conn.execute(table.insert().values(name=name, token=1))
    return int(conn.execute(select(table.c.token).where(table.c.name == name)).scalar_one())


class Lease:
    """A lease. Take it with `acquire` (or `take_in` inside a larger transaction); release with
    `release()` or as a context manager."""

    def __init__(self, store: HistoryStore, job: str, ttl: timedelta, scope: str | None = None):
        self.store = store
        self.job = job
        self.scope = scope or DEPLOYMENT
        self.name = lease_name(job, scope)
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Set when another process has taken the lease over: the run's next checkpoint stops it.
        self.lost = threading.Event()
        # Part of the lease's identity: a thread of this same process that takes the lease over
        # after it lapsed has our pid and token, but not our acquired_at (nor our fence).
        self._acquired_at: datetime | None = None
        self.fence: int | None = None

    @classmethod
    def acquire(cls, store: HistoryStore, job: str, ttl: timedelta, scope: str | None = None) -> Lease:
        """Take the job's lease or raise LockHeldError naming the holder."""
        lease = cls(store, job, ttl, scope)
        holder = lease._try_take()
        if holder is not None:
            raise held_error(job, holder)
        return lease

    def _try_take(self) -> Holder | None:
        for attempt in range(INSERT_RACE_RETRIES + 1):
            try:
                with self.store.engine.begin() as conn:
                    return self.take_in(conn)
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
        return None  # unreachable: the loop returns or raises

    def locked_holder(self, conn: Connection) -> Holder | None:
        """The lease row's holder, dead or alive, with the row locked for this transaction."""
        row = (
            conn.execute(select(db.leases).where(db.leases.c.job == self.name).with_for_update())
            .mappings()
            .first()
        )
        return None if row is None else Holder.from_row(row)

    def take_in(self, conn: Connection, now: datetime | None = None) -> Holder | None:
        """In the caller's transaction: the live holder, or None once this process holds the lease
        (row locked while deciding, a new fencing token, a hand-over chained as evidence)."""
        now = now or store_now(conn)
        holder = self.locked_holder(conn)
        if holder is not None and not holder_is_dead(holder, now):
            return holder
        fence = next_fence(conn, self.name)
        values = {
            "owner_host": socket.gethostname(),
            "owner_pid": os.getpid(),
            "owner_token": PROCESS_TOKEN,
            "run_id": None,
            "acquired_at": now,
            "expires_at": now + self.ttl,
            "fence": fence,
        }
        if holder is not None:
            conn.execute(update(db.leases).where(db.leases.c.job == self.name).values(**values))
            _chain_handover(conn, self.name, holder, values, now)
        else:
            conn.execute(db.leases.insert().values(job=self.name, **values))
        self._acquired_at, self.fence = now, fence
        return None

    def _mine(self):
        return (
            db.leases.c.job == self.name,
            db.leases.c.owner_pid == os.getpid(),
            db.leases.c.owner_token == PROCESS_TOKEN,
            db.leases.c.owner_host == socket.gethostname(),
            db.leases.c.acquired_at == self._acquired_at,
            db.leases.c.fence == self.fence if self.fence is not None else db.leases.c.fence.is_(None),
        )

    def attach_run(self, run_id: int, conn: Connection | None = None) -> None:
        if conn is not None:
            conn.execute(update(db.leases).where(*self._mine()).values(run_id=run_id))
            return
        self._owned_update(run_id=run_id)

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = max(self.ttl.total_seconds() / 3, 0.2)
        while not self._stop.wait(interval):
            try:
                if not self._renew():
                    # Another process took it over after it lapsed; nothing left to renew.
                    self._mark_lost()
                    return
            except Exception as exc:  # keep beating: the store may be back before expiry
                log.warning(
                    "lease heartbeat failed", extra={"job": self.job, "error": explain(exc, self.store.url)}
                )

    def _mark_lost(self) -> None:
        if not self.lost.is_set():
            log.error(
                "lease lost: another process took this job over",
                extra={"job": self.job, "lease": self.name, "fence": self.fence},
            )
        self.lost.set()

    def still_held(self) -> bool:
        """Renew now and say whether we still hold it (False once another process took it over)."""
        if self.lost.is_set():
            return False
        try:
            held = self._renew()
        except SQLAlchemyError as exc:  # cannot tell: the heartbeat's verdict stands
            log.warning(
                "could not confirm the lease", extra={"job": self.job, "error": explain(exc, self.store.url)}
            )
            return True
        if not held:
            self._mark_lost()
        return held

    def fenced(self, conn: Connection) -> bool:
        """In the caller's transaction: whether the lease row still carries our token (row locked, so
        nobody takes it over before the caller's write commits), renewed by the store's clock."""
        if self.lost.is_set():
            return False
        held = self.locked_holder(conn)
        if held is None or held.fence != self.fence or not self._same_owner(held):
            self._mark_lost()
            return False
        conn.execute(update(db.leases).where(*self._mine()).values(expires_at=store_now(conn) + self.ttl))
        return True

    def _same_owner(self, holder: Holder) -> bool:
        return (
            holder.host == socket.gethostname()
            and holder.pid == os.getpid()
            and holder.token == PROCESS_TOKEN
            and holder.acquired_at == self._acquired_at
        )

    def _renew(self) -> bool:
        with self.store.engine.begin() as conn:
            values = {"expires_at": store_now(conn) + self.ttl}
            return conn.execute(update(db.leases).where(*self._mine()).values(**values)).rowcount == 1

    def _owned_update(self, **values: Any) -> bool:
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


def held_error(job: str, holder: Holder) -> LockHeldError:
    return LockHeldError(
        f"job {job!r} is already running on {holder.describe()}; "
        "this run was skipped. Wait for it to finish, or check `redis-maint history --status running`."
    )


def _chain_handover(conn, name: str, previous: Holder, values: dict, now: datetime) -> None:
    """A lease passing from one owner to another is evidence (history/chain.py): who had it, who took it, why."""
    reason = "expired" if previous.expires_at <= now else "its owner's process is gone"
    data = {
        "job": name,
        "reason": reason,
        "from": {
            "host": previous.host,
            "pid": previous.pid,
            "run_id": previous.run_id,
            "acquired_at": previous.acquired_at,
            "expires_at": previous.expires_at,
            "fence": previous.fence,
        },
        "to": {k: values[k] for k in ("acquired_at", "expires_at", "fence")}
        | {"host": values["owner_host"], "pid": values["owner_pid"]},
    }
    chain.append(conn, "lease", name, data, event="handover")


def _holders(conn: Connection, job: str | None = None) -> list[tuple[str, Holder]]:
    query = select(db.leases)
    if job is not None:
        query = query.where(or_(db.leases.c.job == job, db.leases.c.job.like(f"{job}@%")))
    return [(row["job"], Holder.from_row(row)) for row in conn.execute(query).mappings().all()]


def live_holders(store: HistoryStore, job: str | None = None) -> list[tuple[str, Holder]]:
    """(job, holder) for every lease (of `job`, any scope) whose holder is alive."""
    with store.engine.connect() as conn:
        held = _holders(conn, job)
        now = store_now(conn)
    return [(job_of(name), h) for name, h in held if not holder_is_dead(h, now)]


def active_holder(store: HistoryStore, job: str) -> Holder | None:
    """A live holder of a job's lease (any scope; one on this host first), if any."""
    live = [h for _name, h in live_holders(store, job)]
    here = [h for h in live if h.host == socket.gethostname()]
    return (here or live or [None])[0]
