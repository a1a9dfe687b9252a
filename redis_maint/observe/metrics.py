"""Prometheus metrics of the sidecar, in their own CollectorRegistry.

Two sources:
- the history, read at scrape time (`HistoryCollector`): run counts, last success, failing,
  running, the health job's figures and the backup figures. Because they come from the
  store, they survive restarts and include runs made by `redis-maint run` in another process;
- the run path's observer (`Metrics.observe`): durations and swept sessions, which are
  events of this process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from redis_maint.history import backup_facts
from redis_maint.history.db_errors import explain
from redis_maint.history.outcomes import last_outcome, last_real
from redis_maint.history.runs import HistoryStore, Run, RunStatus

log = logging.getLogger("redis_maint.observe.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
HEALTH_JOB = "health"
SWEEP_JOB = "session-sweep"
LEVELS = {"ok": 0, "warning": 1, "critical": 2}


class Metrics:
    """The registry behind /metrics; `observe` is the run path's observer."""

    def __init__(self, store: HistoryStore, jobs: list[str], instance: str):
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "redis_maint_job_duration_seconds",
            "Duration of finished runs, by job",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.last_duration = Gauge(
            "redis_maint_job_last_duration_seconds",
            "Duration of the job's last finished run in this process",
            ["job"],
            registry=self.registry,
        )
        self.swept = Counter(
            "redis_maint_sessions_swept",
            "Sessions deleted by the session sweep, by reason (runs of this process)",
            ["reason"],
            registry=self.registry,
        )
        self.claims_lost = Counter(
            "redis_maint_slot_claims_lost",
            "Scheduled slots this daemon did not run because another sidecar had claimed them, by job",
            ["job"],
            registry=self.registry,
        )
        self.registry.register(HistoryCollector(store, jobs, instance))
        # Redis's clock for the archive's lag (the daemon's archiver sets it); this host's clock otherwise.
        self.archive_clock = None
        self.registry.register(ArchiveCollector(store, instance, lambda: self.archive_clock))

    def observe(self, run: Run) -> None:
        if run.finished_at is None or run.status in (RunStatus.SKIPPED, RunStatus.MISSED):
            return
        seconds = max((run.finished_at - run.started_at).total_seconds(), 0.0)
        self.duration.labels(run.job).observe(seconds)
        self.last_duration.labels(run.job).set(seconds)
        summary = run.summary or {}
        if run.job == SWEEP_JOB and not summary.get("dry_run"):
            for reason, count in (summary.get("deleted") or {}).items():
                if isinstance(count, int | float) and count > 0:
                    self.swept.labels(str(reason)).inc(count)

    def claim_lost(self, job: str) -> None:
        """Another sidecar claimed a slot of `job` first (history/slots.py): counted, never recorded."""
        self.claims_lost.labels(job).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _ts(run: Run | None) -> float | None:
    return None if run is None else (run.finished_at or run.started_at).timestamp()


class HistoryCollector(Collector):
    """Series read from the history store on every scrape."""

    def __init__(self, store: HistoryStore, jobs: list[str], instance: str):
        self.store = store
        self.jobs = list(jobs)
        self.instance = instance

    def describe(self) -> list[Metric]:
        return []  # collected lazily: describing must not touch the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("redis_maint_history_up", "1 when the history store answered this scrape")
        try:
            families = list(self._families())
        except Exception as exc:
            # The cause and the advice, never the failed SQL statement and its parameters.
            error = explain(exc, self.store.url)
            log.warning("metrics: history store unreadable", extra={"error": error})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        yield from self._job_families()
        yield from health_families(last_outcome(self.store, HEALTH_JOB))
        yield from backup_families(backup_facts.newest(self.store, self.instance))
        yield from catalog_families(self.store, self.instance)

    def _job_families(self) -> Iterator[Metric]:
        from redis_maint.history.leases import active_holder

        runs = CounterMetricFamily(
            "redis_maint_job_runs", "Runs recorded in history, by job and status", labels=["job", "status"]
        )
        success = GaugeMetricFamily(
            "redis_maint_last_success_timestamp_seconds",
            "End of the job's last successful run (0: never)",
            labels=["job"],
        )
        failing = GaugeMetricFamily(
            "redis_maint_job_failing", "1 when the job's last outcome was a failure", labels=["job"]
        )
        running = GaugeMetricFamily(
            "redis_maint_job_running", "1 while a run of the job holds its lock", labels=["job"]
        )
        for job in self.jobs:
            counts = self.store.counts_by_status(job)
            for status in RunStatus:
                if status == RunStatus.RUNNING:
                    continue  # not a count that only grows: see redis_maint_job_running
                runs.add_metric([job, str(status)], counts.get(str(status), 0))
            success.add_metric([job], _ts(last_real(self.store, job, RunStatus.SUCCEEDED)) or 0)
            outcome = last_outcome(self.store, job)
            failing.add_metric([job], int(outcome is not None and outcome.status == RunStatus.FAILED))
            running.add_metric([job], int(active_holder(self.store, job) is not None))
        yield from (runs, success, failing, running)


def _gauge(name: str, doc: str, value: Any) -> Iterator[Metric]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        family = GaugeMetricFamily(name, doc)
        family.add_metric([], float(value))
        yield family


def health_families(run: Run | None) -> Iterator[Metric]:
    """Redis's figures from the newest health outcome; only redis_up when it failed."""
    if run is None:
        return
    up = run.status == RunStatus.SUCCEEDED
    yield from _gauge(
        "redis_maint_redis_up", "1 when the last health run reached Redis, 0 when it failed", int(up)
    )
    if not up:
        return  # figures from before the outage would be stale
    s = run.summary or {}
    memory, clients, keyspace = s.get("memory") or {}, s.get("clients") or {}, s.get("keyspace") or {}
    ping_ms = s.get("ping_ms")
    yield from _gauge(
        "redis_maint_health_level",
        "Health level of the last run: 0 ok, 1 warning, 2 critical",
        LEVELS.get(s.get("level")),
    )
    yield from _gauge("redis_maint_redis_memory_ratio", "used_memory / maxmemory", memory.get("ratio"))
    yield from _gauge("redis_maint_redis_memory_used_bytes", "used_memory", memory.get("used_memory"))
    yield from _gauge(
        "redis_maint_redis_memory_max_bytes", "maxmemory (0: unlimited)", memory.get("maxmemory")
    )
    yield from _gauge("redis_maint_redis_connected_clients", "connected_clients", clients.get("connected"))
    yield from _gauge("redis_maint_redis_blocked_clients", "blocked_clients", clients.get("blocked"))
    yield from _gauge(
        "redis_maint_redis_keyspace_hit_ratio", "keyspace hits / (hits + misses)", keyspace.get("hit_ratio")
    )
    yield from _gauge("redis_maint_redis_keys", "keys in all databases", keyspace.get("keys"))
    if isinstance(ping_ms, int | float):
        yield from _gauge("redis_maint_redis_ping_latency_seconds", "median PING round trip", ping_ms / 1000)


def backup_families(facts: backup_facts.BackupFacts) -> Iterator[Metric]:
    yield from _gauge("redis_maint_backup_bytes", "Total size of the newest complete backup", facts.bytes)
    yield from _gauge(
        "redis_maint_backup_last_complete_timestamp_seconds",
        "When the newest complete backup was made",
        facts.created_at,
    )
    yield from _gauge(
        "redis_maint_backup_last_verified_timestamp_seconds",
        "When a restore drill last loaded a complete backup good (backup-verify, backups verify --deep; 0: never)",
        facts.verified_at or 0,
    )
    yield from _gauge(
        "redis_maint_backup_last_checksum_timestamp_seconds",
        "When a checksum-only check (backups verify without --deep) last found a complete backup good (0: never)",
        facts.checksummed_at or 0,
    )


def catalog_families(store: HistoryStore, instance: str) -> Iterator[Metric]:
    """Backups `backups check` (or retention) found missing on the target or changed since upload."""
    from redis_maint.history.catalog import BackupStatus, Catalog

    counts = Catalog(store).count_by_status(instance)
    yield from _gauge(
        "redis_maint_backups_missing",
        "Backups in the catalog whose objects are gone from the target (backups check, retention)",
        counts.get(BackupStatus.MISSING, 0),
    )
    yield from _gauge(
        "redis_maint_backups_changed",
        "Backups in the catalog whose objects on the target differ from what was recorded at upload",
        counts.get(BackupStatus.CHANGED, 0),
    )


class ArchiveCollector(Collector):
    """redis_maint_archive_lag_seconds: Redis's clock minus the newest instant safe in the AOF archive,
    read from the archive's state at scrape time (nothing while there is no archive)."""

    def __init__(self, store: HistoryStore, instance: str, clock):
        self.store, self.instance, self.clock = store, instance, clock

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from redis_maint.archive.state import ArchiveState
        from redis_maint.archive.status import lag_seconds
        from redis_maint.timeutil import utcnow

        try:
            gens = ArchiveState(self.store, self.instance).generations()
            clock = self.clock()
            lag = lag_seconds(gens, clock() if clock is not None else utcnow())
        except Exception as exc:  # a scrape never fails on the store: the gauge is left out
            log.warning("archive metrics unavailable", extra={"error": explain(exc, self.store.url)})
            return
        if lag is not None:
            yield from _gauge(
                "redis_maint_archive_lag_seconds",
                "Redis's clock minus the newest instant safe in the AOF archive",
                lag,
            )
