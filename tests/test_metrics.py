"""Metrics: read from history at scrape time (so they survive restarts), plus the run observer."""

from __future__ import annotations

from datetime import timedelta

from jobs import REGISTRY
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.observe.metrics import Metrics
from redis_maint.timeutil import utcnow
from tests.support.history import current_store
from tests.support.metrics import scrape_text


def scrape(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    return scrape_text(metrics.exposition().decode())


def _finished(store: HistoryStore, job: str, status: RunStatus, summary: dict | None = None, error=None):
    run_id = store.start_run(job, "scheduled", "daemon")
    store.finish_run(run_id, status, summary or {}, error)
    return store.get(run_id)


HEALTH = {
    "level": "warning",
    "ping_ms": 2.5,
    "memory": {"ratio": 0.75, "used_memory": 750, "maxmemory": 1000},
    "clients": {"connected": 7, "blocked": 1},
    "keyspace": {"hit_ratio": 0.95, "keys": 42},
}


def test_last_success_and_health_figures_survive_a_restart():
    store = current_store()
    _finished(store, "health", RunStatus.SUCCEEDED, HEALTH)
    backup_ok = _finished(store, "aof-check", RunStatus.SUCCEEDED)
    _finished(store, "aof-check", RunStatus.SUCCEEDED, {"dry_run": True})  # a rehearsal is not a success
    fresh = scrape(Metrics(store, list(REGISTRY), "default"))  # a new process: nothing observed yet
    assert fresh[("redis_maint_last_success_timestamp_seconds", (("job", "aof-check"),))] == (
        backup_ok.finished_at.timestamp()
    )
    assert fresh[("redis_maint_last_success_timestamp_seconds", (("job", "backup-age"),))] == 0
    assert fresh[("redis_maint_redis_up", ())] == 1
    assert fresh[("redis_maint_redis_memory_ratio", ())] == 0.75
    assert fresh[("redis_maint_redis_connected_clients", ())] == 7
    assert fresh[("redis_maint_redis_blocked_clients", ())] == 1
    assert fresh[("redis_maint_redis_keyspace_hit_ratio", ())] == 0.95
    assert fresh[("redis_maint_redis_ping_latency_seconds", ())] == 0.0025
    assert fresh[("redis_maint_health_level", ())] == 1
    assert fresh[("redis_maint_job_runs_total", (("job", "aof-check"), ("status", "succeeded")))] == 2


def test_a_failed_health_run_turns_redis_up_to_zero_and_drops_stale_figures():
    store = current_store()
    _finished(store, "health", RunStatus.SUCCEEDED, HEALTH)
    _finished(store, "health", RunStatus.FAILED, error="cannot reach Redis")
    sample = scrape(Metrics(store, list(REGISTRY), "default"))
    assert sample[("redis_maint_redis_up", ())] == 0
    assert ("redis_maint_redis_memory_ratio", ()) not in sample
    assert sample[("redis_maint_job_failing", (("job", "health"),))] == 1
    assert sample[("redis_maint_job_runs_total", (("job", "health"), ("status", "failed")))] == 1


def test_observer_counts_swept_sessions_by_reason_and_durations():
    store = current_store()
    metrics = Metrics(store, list(REGISTRY), "default")
    summary = {"deleted": {"stale": 5, "expired_no_ttl": 2, "unreadable": 0}}
    metrics.observe(_finished(store, "session-sweep", RunStatus.SUCCEEDED, summary))
    metrics.observe(_finished(store, "session-sweep", RunStatus.SUCCEEDED, {**summary, "dry_run": True}))
    metrics.observe(_finished(store, "session-sweep", RunStatus.SUCCEEDED, {"deleted": {"stale": 1}}))
    metrics.observe(_finished(store, "session-sweep", RunStatus.SUCCEEDED, {}))  # tolerant of absent keys
    sample = scrape(metrics)
    assert sample[("redis_maint_sessions_swept_total", (("reason", "stale"),))] == 6
    assert sample[("redis_maint_sessions_swept_total", (("reason", "expired_no_ttl"),))] == 2
    assert ("redis_maint_sessions_swept_total", (("reason", "unreadable"),)) not in sample
    assert sample[("redis_maint_job_duration_seconds_count", (("job", "session-sweep"),))] == 4


def test_backup_figures_come_from_the_catalog():
    from redis_maint.history.catalog import BackupRecord, BackupStatus, Catalog

    store = current_store()
    catalog = Catalog(store)
    for n, age in ((1, 48), (2, 2)):
        catalog.add(
            BackupRecord(
                id=f"b{n}",
                run_id=None,
                instance="default",
                target="local",
                target_root="/x",
                location=f"/x/b{n}",
                created_at=utcnow() - timedelta(hours=age),
                status=BackupStatus.PENDING,
            )
        )
        catalog.mark_complete(f"b{n}", size=1000 * n, files=[])
    catalog.record_verify("b1", {"ok": True})
    catalog.record_verify("b2", {"ok": False, "problems": ["sha256 mismatch"]})
    sample = scrape(Metrics(store, list(REGISTRY), "default"))
    assert sample[("redis_maint_backup_bytes", ())] == 2000
    # A checksum-only verify has its own metric: only restore drills move the verified one.
    assert abs(sample[("redis_maint_backup_last_checksum_timestamp_seconds", ())] - utcnow().timestamp()) < 60
    assert sample[("redis_maint_backup_last_verified_timestamp_seconds", ())] == 0
    created = catalog.get("b2").created_at.timestamp()
    assert sample[("redis_maint_backup_last_complete_timestamp_seconds", ())] == created


def test_an_unreadable_history_is_reported_not_raised(tmp_path):
    store = current_store()
    metrics = Metrics(store, list(REGISTRY), "default")
    # the collector holds this store: point it at a database that cannot be opened
    from sqlalchemy import create_engine

    store.engine = create_engine(f"sqlite:///{tmp_path}/missing-dir/none.db")
    sample = scrape(metrics)
    assert sample[("redis_maint_history_up", ())] == 0


def test_metrics_and_notifications_observe_a_runner_the_same_way(redis_server, monkeypatch):
    """Both are observers of the Runner: a run through it reaches the metrics and the webhook."""
    from config import load_settings
    from redis_maint.run.runner import build_runner
    from tests.support.services.webhook import WebhookServer

    hook = WebhookServer().start()
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__WEBHOOK_URL", hook.url + "/hook")
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://127.0.0.1:1/0")
    try:
        store = current_store()
        runner = build_runner(load_settings(jobs=REGISTRY), store)  # notifications, as every process
        metrics = Metrics(store, list(REGISTRY), "default")
        runner.add_observer(metrics.observe)  # as the daemon adds its metrics
        failed = runner.execute("health", trigger="manual")
        skipped = runner.record("health", "scheduled", RunStatus.SKIPPED, error="held")
    finally:
        hook.stop()
    sample = scrape(metrics)
    assert failed.status == "failed" and skipped.status == "skipped"
    assert sample[("redis_maint_job_duration_seconds_count", (("job", "health"),))] == 1, (
        "skips have no duration"
    )
    (call,) = hook.posted("/hook")
    assert (call["event"], call["run_id"]) == ("failure", failed.id)
