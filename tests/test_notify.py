"""Notifications: once per transition, from every run path, to a real local HTTP server."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from config import load_settings
from jobs import REGISTRY
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.observe import notify
from tests.support.history import current_store
from tests.support.services.webhook import WebhookServer

SECRET = "hunter2-do-not-leak"


@pytest.fixture
def hook(monkeypatch):
    server = WebhookServer().start()
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__WEBHOOK_URL", server.url + "/hook")
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__SLACK_WEBHOOK_URL", server.url + "/slack")
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__BACKOFF", "0.01s")
    yield server
    server.stop()


@pytest.fixture
def secured_redis(redis_factory, monkeypatch):
    server = redis_factory(password=SECRET)
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    return server


def test_a_failing_job_notifies_once_with_job_run_and_error_and_no_credentials(cli, hook, secured_redis):
    secured_redis.stop()
    first = cli("run", "health", "--json")
    second = cli("run", "health", "--json")
    assert first.exit_code == 1 and second.exit_code == 1
    (call,) = hook.posted("/hook")
    (failed, _) = current_store().list(job="health")[::-1]
    assert call["event"] == "failure" and call["job"] == "health" and call["run_id"] == failed.id
    assert call["status"] == "failed" and "cannot reach Redis" in call["error"]
    assert len(hook.posted("/slack")) == 1 and hook.posted("/slack")[0]["text"].startswith(":red_circle:")
    for request in hook.requests:
        assert SECRET.encode() not in request.body


def test_recovery_notifies_once_when_the_job_succeeds_again(cli, hook, secured_redis):
    secured_redis.stop()
    assert cli("run", "health").exit_code == 1
    secured_redis.start()
    assert cli("run", "health").exit_code == 0
    assert cli("run", "health").exit_code == 0
    assert [c["event"] for c in hook.posted("/hook")] == ["failure", "recovery"]


def test_health_level_changes_notify_only_on_transitions(cli, hook, redis_server, monkeypatch):
    assert cli("run", "health").exit_code == 0  # ok: nothing to say
    monkeypatch.setenv("REDIS_MAINT_JOBS__HEALTH__CLIENTS_WARNING", "0")  # our own client crosses it
    assert cli("run", "health").exit_code == 0
    assert cli("run", "health").exit_code == 0
    monkeypatch.delenv("REDIS_MAINT_JOBS__HEALTH__CLIENTS_WARNING")
    assert cli("run", "health").exit_code == 0
    calls = hook.posted("/hook")
    assert [(c["details"]["previous_level"], c["details"]["level"]) for c in calls] == [
        ("ok", "warning"),
        ("warning", "ok"),
    ]
    assert "connected clients" in calls[0]["message"]


def test_dry_runs_neither_notify_nor_count_as_the_previous_outcome(cli, hook, secured_redis):
    secured_redis.stop()
    assert cli("run", "health", "--dry-run").exit_code == 1
    assert hook.posted() == []
    assert cli("run", "health").exit_code == 1
    assert [c["event"] for c in hook.posted("/hook")] == ["failure"]


def test_the_webhook_is_retried_with_backoff_and_a_dead_one_never_fails_the_job(
    cli, hook, redis_server, monkeypatch
):
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__SLACK_WEBHOOK_URL", "")
    monkeypatch.setenv("REDIS_MAINT_JOBS__HEALTH__CLIENTS_WARNING", "0")
    hook.codes[:] = [503, 500]
    assert cli("run", "health").exit_code == 0
    assert len(hook.requests) == 3 and len({r.body for r in hook.requests}) == 1

    monkeypatch.setenv("REDIS_MAINT_NOTIFY__WEBHOOK_URL", "http://127.0.0.1:9/closed")  # nothing listens
    monkeypatch.delenv("REDIS_MAINT_JOBS__HEALTH__CLIENTS_WARNING")
    t0 = time.monotonic()
    result = cli("run", "health", "--json")
    assert result.exit_code == 0, "a webhook that cannot be reached never fails the job"
    assert time.monotonic() - t0 < 5


def test_a_client_error_is_not_retried(redis_server, hook):
    hook.codes[:] = [404]
    cfg = load_settings(jobs=REGISTRY).notify
    assert notify.send(cfg, hook.url + "/gone", {"x": 1}, what="test") is False
    assert len(hook.requests) == 1


def _complete_backup(store: HistoryStore, age: timedelta, backup_id: str = "b1") -> None:
    from redis_maint.history.catalog import BackupRecord, BackupStatus, Catalog
    from redis_maint.timeutil import utcnow

    catalog = Catalog(store)
    created = utcnow() - age
    record = BackupRecord(
        id=backup_id,
        run_id=None,
        instance="default",
        target="local",
        target_root="/tmp/x",
        location=f"/tmp/x/{backup_id}",
        created_at=created,
        status=BackupStatus.PENDING,
    )
    catalog.add(record)
    catalog.mark_complete(backup_id, size=1234, files=[])


def test_backup_age_guard_fails_and_notifies_once_when_backups_are_older_than_the_rpo(cli, hook, monkeypatch):
    store = current_store()
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__SLACK_WEBHOOK_URL", "")
    _complete_backup(store, timedelta(hours=30))
    assert cli("run", "backup-age").exit_code == 1
    assert cli("run", "backup-age").exit_code == 1
    (stale,) = hook.posted("/hook")
    assert stale["event"] == "backup_stale" and stale["job"] == "backup-age"
    assert "over the RPO of 26.0h" in stale["error"]

    _complete_backup(store, timedelta(minutes=5), backup_id="b2")
    result = cli("run", "backup-age", "--json")
    assert result.exit_code == 0
    assert [c["event"] for c in hook.posted("/hook")] == ["backup_stale", "recovery"]
    (run,) = store.list(job="backup-age", status=RunStatus.SUCCEEDED)
    assert run.summary["backup_id"] == "b2" and run.summary["age_s"] < 3600


def test_backup_age_guard_waits_for_the_first_backup_of_a_fresh_install(cli):
    result = cli("run", "backup-age", "--json")
    assert result.exit_code == 0
    assert "waiting for the first backup" in result.stdout


def test_a_failed_backup_makes_exactly_one_webhook_call_without_credentials(
    cli, hook, redis_server, s3, monkeypatch
):
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", "s3://no-such-bucket-here/redis")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "false")
    result = cli("run", "backup", "--json")
    assert result.exit_code == 1
    (call,) = hook.posted("/hook")
    (run,) = current_store().list(job="backup")
    assert (call["event"], call["job"], call["run_id"], call["status"]) == (
        "failure",
        "backup",
        run.id,
        "failed",
    )
    assert call["error"] and "no-such-bucket-here" in call["error"]
    secrets = [s3.env()["AWS_SECRET_ACCESS_KEY"], s3.env()["AWS_ACCESS_KEY_ID"] + ":"]
    for request in hook.requests:
        assert not any(secret.encode() in request.body for secret in secrets)


def test_the_ping_url_is_hit_after_each_successful_backup_only(cli, hook, redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__PING_URL", hook.url + "/ping/abc")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "false")
    assert cli("run", "backup").exit_code == 0
    assert cli("run", "backup", "--dry-run").exit_code == 0
    assert cli("run", "backup").exit_code == 0
    pings = [r for r in hook.requests if r.path == "/ping/abc"]
    assert len(pings) == 2 and all(r.method == "GET" for r in pings)
