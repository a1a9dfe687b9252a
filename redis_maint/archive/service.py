"""The archiver as a long-lived part of the daemon: one per instance (a lease with fencing), on the primary only.

With several sidecars on one history store, each runs this; the one holding the `archive@<instance>`
lease archives, the others wait for it to lapse. Every state write checks, in its own transaction,
that the lease still carries this holder's fencing token (history/leases.py), so an archiver that
lost its lease (paused, partitioned) cannot move the position after another took over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from redis_maint.archive.archiver import Archiver, ArchiverOptions, TickReport, clear_staging
from redis_maint.archive.loop import Loop
from redis_maint.archive.prune import prune
from redis_maint.archive.state import ArchiveState
from redis_maint.archive.status import problem_path
from redis_maint.errors import LockHeldError, MaintenanceError
from redis_maint.history.catalog import BackupStatus, Catalog
from redis_maint.history.leases import Lease
from redis_maint.history.runs import HistoryStore, RunStatus, Trigger
from redis_maint.redact import redact
from redis_maint.snapshot.bgsave import redis_call
from redis_maint.snapshot.datafiles import decode
from redis_maint.storage import Target
from redis_maint.timeutil import utcnow

log = logging.getLogger("redis_maint.archive.service")

LEASE_JOB = "archive"
CONFIGURE_JOB = "archive-configure"
PRUNE_JOB = "archive-prune"
PRUNE_EVERY_S = 3600.0
TS_SETTING = "aof-timestamp-enabled"


@dataclass(frozen=True)
class ServiceConfig:
    instance: str
    node_url: str  # the node whose files data_dir holds
    redis_timeout: timedelta
    data_dir: Path
    staging_dir: Path
    interval: timedelta
    window: timedelta
    configure_redis: bool
    lease_ttl: timedelta
    config_hash: str | None = None

    @property
    def archive_lease_ttl(self) -> timedelta:
        """Long enough that a slow upload never lets it lapse; renewed by a heartbeat."""
        return max(self.lease_ttl, self.interval * 12, timedelta(seconds=30))


def timestamps_enabled(client: redis.Redis) -> bool:
    values = decode(redis_call(client, client.config_get, TS_SETTING))
    return values.get(TS_SETTING, "no") == "yes"


def configure_redis(
    client: redis.Redis, store: HistoryStore, *, requested_by: str, config_hash: str | None
) -> dict | None:
    """`aof-timestamp-enabled yes` (CONFIG SET, then CONFIG REWRITE when allowed), recorded as a run of
    archive-configure; None when it was on already."""
    if timestamps_enabled(client):
        return None
    redis_call(client, client.config_set, TS_SETTING, "yes")
    summary: dict[str, Any] = {"level": "ok", "set": {TS_SETTING: "yes"}, "was": "no", "config_rewrite": True}
    try:
        redis_call(client, client.config_rewrite)
    except redis.ResponseError as exc:  # no config file, or CONFIG REWRITE renamed/denied
        summary["config_rewrite"] = False
        summary["config_rewrite_error"] = redact(str(exc))
        summary["level"] = "warning"
    summary["note"] = (
        "set on the running Redis and in its config file"
        if summary["config_rewrite"]
        else "set on the running Redis only: add `aof-timestamp-enabled yes` to redis.conf, or it is lost on restart"
    )
    log.warning("configured Redis for the AOF archive", extra=summary)
    store.record(
        CONFIGURE_JOB,
        Trigger.SCHEDULED if requested_by == "daemon" else Trigger.MANUAL,
        RunStatus.SUCCEEDED,
        requested_by=requested_by,
        summary=summary,
        config_hash=config_hash,
    )
    return summary


def oldest_backup_at(store: HistoryStore, instance: str) -> datetime | None:
    backups = Catalog(store).list(instance=instance, status=BackupStatus.COMPLETE)
    return min((b.created_at for b in backups), default=None)


class ArchiverService:
    def __init__(
        self,
        config: ServiceConfig,
        store: HistoryStore,
        open_target: Callable[[], Target],
        connect: Callable[[str, timedelta], redis.Redis],
        *,
        requested_by: str = "daemon",
    ):
        self.config = config
        self.store = store
        self.open_target = open_target
        self.connect = connect
        self.requested_by = requested_by
        self.archiver: Archiver | None = None
        self._last_prune = 0.0
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    # -- pieces -------------------------------------------------------------------------
    def redis_now(self) -> datetime:
        return self.archiver.redis_now() if self.archiver is not None else utcnow()

    def _build(self, lease: Lease | None) -> Archiver:
        c = self.config
        client = self.connect(c.node_url, c.redis_timeout)
        if c.configure_redis:
            configure_redis(client, self.store, requested_by=self.requested_by, config_hash=c.config_hash)
        guard = getattr(lease, "fenced", None) if lease is not None else None
        fence = getattr(lease, "fence", None) if lease is not None else None
        state = ArchiveState(self.store, c.instance, guard=guard, fence=fence)
        options = ArchiverOptions(
            instance=c.instance,
            data_dir=c.data_dir,
            staging_dir=c.staging_dir,
            interval_s=c.interval.total_seconds(),
            problem_file=problem_path(c.staging_dir.parent, c.instance),
        )
        return Archiver(options, client, self.open_target(), state)

    def _take(self) -> Lease:
        lease = Lease.acquire(
            self.store, LEASE_JOB, self.config.archive_lease_ttl, scope=self.config.instance
        )
        lease.start_heartbeat()
        return lease

    def prune_now(self, archiver: Archiver) -> dict | None:
        c = self.config
        result = prune(
            archiver.state,
            archiver.target,
            now=archiver.redis_now(),
            window=c.window,
            oldest_backup_at=oldest_backup_at(self.store, c.instance),
        )
        if result["pruned"]:
            result["level"] = "ok"
            log.info("archive generations pruned", extra=result)
            self.store.record(
                PRUNE_JOB,
                Trigger.SCHEDULED if self.requested_by == "daemon" else Trigger.MANUAL,
                RunStatus.SUCCEEDED,
                requested_by=self.requested_by,
                summary=result,
                config_hash=c.config_hash,
            )
        return result

    def _after_tick(self, report: TickReport) -> None:
        import time

        if report.skipped or self.archiver is None:
            return
        if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            try:
                self.prune_now(self.archiver)
            except (MaintenanceError, OSError) as exc:
                log.warning("archive retention failed; retrying later", extra={"error": redact(str(exc))})

    # -- once (the CLI) -----------------------------------------------------------------
    def once(self, *, prune_too: bool = False) -> tuple[TickReport, dict | None]:
        """One tick under the lease (LockHeldError when another archiver holds it)."""
        lease = self._take()
        try:
            self.archiver = self._build(lease)
            try:
                report = self.archiver.tick()
                pruned = self.prune_now(self.archiver) if prune_too and not report.skipped else None
                return report, pruned
            finally:
                self.archiver.close()
        finally:
            lease.release()

    # -- the daemon's thread ------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="archiver", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        """Until `stopping`: wait for the lease, archive while it is held, never raise."""
        clear_staging(self.config.staging_dir)
        wait = self.config.interval.total_seconds()
        while not self.stopping.is_set():
            try:
                lease = self._take()
            except LockHeldError as exc:
                log.debug("another sidecar archives this instance", extra={"why": str(exc)})
                self.stopping.wait(max(wait, self.config.archive_lease_ttl.total_seconds() / 3))
                continue
            except MaintenanceError as exc:
                log.warning("archiver cannot take its lease; retrying", extra={"error": redact(str(exc))})
                self.stopping.wait(wait * 4)
                continue
            try:
                self._run_holding(lease)
            finally:
                lease.release()
                self.archiver = None

    def _run_holding(self, lease: Lease) -> None:
        try:
            self.archiver = self._build(lease)
        except (MaintenanceError, redis.RedisError, OSError) as exc:
            log.warning("archiver cannot start; retrying", extra={"error": redact(str(exc))})
            self.stopping.wait(self.config.interval.total_seconds() * 4)
            return
        log.info("archiver started", extra={"instance": self.config.instance, "fence": lease.fence})
        Loop(self.archiver, self.stopping, on_tick=self._after_tick).run()
