"""Daemon state in the history store: one row per daemon process, renewed by a heartbeat.

`jobs` reads it to show the schedules a live daemon actually has (not the caller's config), and
`doctor` to report a daemon that stopped beating without a clean shutdown. A daemon is live while
its row is not marked stopped and its heartbeat is younger than STALE_BEATS intervals; on the
same host a dead pid is proof at once. Rows are kept: a crashed daemon stays visible until a
daemon starts again on that host.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from redis_maint.history import db, db_errors
from redis_maint.history.leases import PROCESS_TOKEN, pid_alive
from redis_maint.history.runs import HistoryStore
from redis_maint.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

# Missed beats before a daemon counts as gone: one late beat on a busy host is not a death.
STALE_BEATS = 3

# {job: {"schedule": str, "next_run": ISO-8601 UTC or None}}
Schedules = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class DaemonState:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_s: float
    stopped_at: datetime | None
    stop_reason: str | None
    timezone: str | None
    schedules: Schedules | None

    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_s * STALE_BEATS)

    def gone(self, now: datetime) -> str | None:
        """Why this unstopped daemon is no longer running, or None while it is (or was cleanly stopped)."""
        if self.stopped_at is not None:
            return None
        if self.dead_on_this_host():
            return f"pid {self.pid} is no longer running on this host"
        if now - self.heartbeat_at > self.stale_after():
            return f"no heartbeat for {_seconds(now - self.heartbeat_at)} (it beats every {_seconds_f(self.heartbeat_s)})"
        return None

    def dead_on_this_host(self) -> bool:
        """Provably gone: on this host, its pid is not running (or is ours, from an earlier life)."""
        if self.host != socket.gethostname() or self.id == PROCESS_TOKEN:
            return False
        return self.pid == os.getpid() or not pid_alive(self.pid)

    def live(self, now: datetime) -> bool:
        return self.stopped_at is None and self.gone(now) is None

    def where(self) -> str:
        return f"{self.host} pid {self.pid}"

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The `daemon` object of `jobs --json`."""
        return {
            "host": self.host,
            "pid": self.pid,
            "started_at": isoformat(self.started_at),
            "heartbeat_at": isoformat(self.heartbeat_at),
            "heartbeat_age_s": round((now - self.heartbeat_at).total_seconds(), 1),
        }


def _seconds(delta: timedelta) -> str:
    return _seconds_f(delta.total_seconds())


def _seconds_f(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def all_daemons(store: HistoryStore) -> list[DaemonState]:
    """Every daemon row, newest start first."""
    query = select(db.daemons).order_by(db.daemons.c.started_at.desc())
    with db_errors.guard(store.url, "read the daemon state"), store.engine.connect() as conn:
        return [DaemonState(**row) for row in conn.execute(query).mappings()]


def live_daemon(store: HistoryStore, now: datetime | None = None) -> DaemonState | None:
    """The newest live daemon using this history store, if any."""
    now = now or utcnow()
    return next((d for d in all_daemons(store) if d.live(now)), None)


def stale_daemons(store: HistoryStore, now: datetime | None = None) -> list[tuple[DaemonState, str]]:
    """(daemon, why it is gone) for each that stopped beating without a clean shutdown."""
    now = now or utcnow()
    return [(d, why) for d in all_daemons(store) if (why := d.gone(now)) is not None]


class DaemonPublisher:
    """This process's daemon row: inserted on start, renewed by a heartbeat thread, marked stopped.

    `schedules` is called on every beat for what APScheduler has in force. Store errors are logged
    and the heartbeat keeps going: the store may be back before the daemon counts as stale.
    """

    def __init__(
        self, store: HistoryStore, interval: timedelta, timezone: str, schedules: Callable[[], Schedules]
    ):
        self.store = store
        self.interval = interval.total_seconds()
        self.timezone = timezone
        self.schedules = schedules
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        now = utcnow()
        self._reap_earlier_lives()
        with db_errors.guard(self.store.url, "record the daemon's start"), self.store.engine.begin() as conn:
            conn.execute(
                db.daemons.insert().values(
                    id=PROCESS_TOKEN,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now,
                    heartbeat_at=now,
                    heartbeat_s=self.interval,
                    timezone=self.timezone,
                    schedules=self.schedules(),
                )
            )
        self._thread = threading.Thread(target=self._beat, name="daemon-heartbeat", daemon=True)
        self._thread.start()

    def beat_soon(self) -> None:
        """Publish now (e.g. a job just fired, so its next run moved); safe from any thread."""
        self._wake.set()

    def _beat(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._update(heartbeat_at=utcnow(), schedules=self.schedules())
            except Exception as exc:
                log.warning(
                    "daemon heartbeat failed", extra={"error": db_errors.explain(exc, self.store.url)}
                )

    def stop(self, reason: str = "clean shutdown") -> None:
        """Stop beating and mark the row stopped, once; never raises (the daemon is on its way out)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._update(stopped_at=utcnow(), stop_reason=reason)
        except Exception as exc:
            log.warning(
                "could not mark the daemon stopped", extra={"error": db_errors.explain(exc, self.store.url)}
            )

    def _update(self, **values: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(update(db.daemons).where(db.daemons.c.id == PROCESS_TOKEN).values(**values))

    def _reap_earlier_lives(self) -> None:
        """Earlier daemons on this host whose pid is gone: this start supersedes them."""
        now = utcnow()
        dead = [d.id for d in all_daemons(self.store) if d.stopped_at is None and d.dead_on_this_host()]
        if not dead:
            return
        with (
            db_errors.guard(self.store.url, "mark earlier daemons stopped"),
            self.store.engine.begin() as conn,
        ):
            conn.execute(
                update(db.daemons)
                .where(db.daemons.c.id.in_(dead), db.daemons.c.stopped_at.is_(None))
                .values(
                    stopped_at=now, stop_reason="stopped without a clean shutdown; superseded by a new daemon"
                )
            )
