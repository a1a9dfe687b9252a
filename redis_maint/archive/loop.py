"""The archiver's long-lived loop: a tick every `archive.interval` in the daemon's archiving thread.

A failed tick (target or Redis unreachable, a disk full, a file changed under it) keeps the position
and retries with a backoff, so the lag grows and then catches up; the problem is written where
`archive status` reads it. A lost lease or a state another archiver moved ends the loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from redis_maint.archive.archiver import Archiver, TickReport
from redis_maint.errors import MaintenanceError
from redis_maint.snapshot.pinning import FileChanged

log = logging.getLogger("redis_maint.archive.loop")


class Loop:
    """Ticks every interval until `stop`; failures (target or Redis unreachable) keep the position and
    retry with a backoff, so the lag grows and then catches up. A lost lease or a state that another
    archiver moved ends the loop."""

    def __init__(
        self, archiver: Archiver, stop: threading.Event, on_tick: Callable[[TickReport], None] | None = None
    ):
        self.archiver = archiver
        archiver.background_bases = True  # a rewrite's base never holds up the incr stream
        self.stop = stop
        self.on_tick = on_tick
        self.failures = 0
        self.last_error: str | None = None

    def run(self) -> None:
        from redis_maint.archive.state import StateConflictError
        from redis_maint.errors import LeaseLostError

        interval = self.archiver.o.interval_s
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    report = self.archiver.tick()
                    if not (self.failures and self.archiver.base_in_flight()):
                        # (a base retried in the background is not a recovery until it is adopted)
                        if self.failures:
                            self._recovered()
                        self.failures, self.last_error = 0, None
                    if self.on_tick is not None:
                        self.on_tick(report)
                    wait = interval - (time.monotonic() - started)
                except (LeaseLostError, StateConflictError) as exc:
                    log.error("the archiver stops", extra={"error": str(exc)})
                    return
                except (MaintenanceError, redis.RedisError, OSError, FileChanged) as exc:
                    self.failures += 1
                    self.last_error = str(exc)
                    wait = min(interval * 2 ** min(self.failures, 10), self.archiver.o.backoff_max_s)
                    position = self._position()
                    log.warning(
                        "archive tick failed; position kept, retrying",
                        extra={
                            "failures": self.failures,
                            "retry_in_s": round(wait, 2),
                            "error": str(exc),
                            **position,
                        },
                    )
                    self._record_problem(position)
                self.stop.wait(max(wait, 0.0))
        finally:
            self.archiver.close()

    def _position(self) -> dict:
        """Where the archive stands (kept while ticks fail), for the log and `archive status`."""
        try:
            cur = self.archiver.state.current()
        except MaintenanceError:
            return {}
        if cur is None:
            return {}
        return {"generation": cur.generation, "incr_file": cur.incr_file, "offset": cur.offset}

    def _record_problem(self, position: dict) -> None:
        from redis_maint.archive.status import write_problem

        path = self.archiver.o.problem_file
        if path is not None and self.last_error is not None:
            with contextlib.suppress(OSError):  # its disk may be the full one: the log still says it
                write_problem(path, self.last_error, self.failures, position)

    def _recovered(self) -> None:
        from redis_maint.archive.status import clear_problem

        log.warning(
            "archive ticks succeed again; the archive caught up from its kept position",
            extra={"failures": self.failures, "error": self.last_error},
        )
        if self.archiver.o.problem_file is not None:
            with contextlib.suppress(OSError):
                clear_problem(self.archiver.o.problem_file)
