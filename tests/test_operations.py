"""Operations that change or prove something (backups verify, restore, keep, unkeep) take the one run
path: a pre-check, the job's lease, a history row with who asked, and the Runner's observers.
Real SQLite history, a real local backup target, a real webhook server and a real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

import jobs
from config import load_settings
from redis_maint.history.catalog import Catalog
from redis_maint.history.leases import Lease
from redis_maint.history.runs import RunStatus
from redis_maint.run.daemon import Daemon
from redis_maint.run.runner import Runner
from redis_maint.storage import open_target
from tests.support.builders.stored import fake_backup
from tests.support.common import json_out
from tests.support.history import current_store
from tests.support.services.webhook import WebhookServer

CREATED = datetime(2024, 3, 10, 3, tzinfo=UTC)
# The verify result object printed by `backups verify --json`, exactly as before it was a run.
VERIFY_KEYS = {"id", "target", "checked_at", "manifest", "files", "problems", "ok"}


def _settings():
    return load_settings(jobs=jobs.REGISTRY)


@pytest.fixture
def stored(tmp_path) -> str:
    """A complete backup on the configured local target, with its catalog row."""
    return fake_backup(open_target(str(tmp_path / "backups")), Catalog(current_store()), CREATED)


@pytest.fixture
def hook(monkeypatch):
    server = WebhookServer().start()
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__WEBHOOK_URL", server.url + "/hook")
    monkeypatch.setenv("REDIS_MAINT_NOTIFY__BACKOFF", "0.01s")
    yield server
    server.stop()


def test_a_runners_observer_sees_every_outcome_including_skipped_and_missed(redis_server, monkeypatch):
    seen = []
    runner = Runner(_settings(), current_store(), observers=[seen.append])

    ok = runner.execute("health", trigger="manual", requested_by="alice")
    # health runs once per Redis node: its lease is the node's (history/slots.py).
    held = Lease.acquire(current_store(), "health", timedelta(minutes=1), runner.scope_of("health"))
    try:
        skipped = runner.execute("health", trigger="manual", requested_by="bob")
    finally:
        held.release()
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://127.0.0.1:1/0")
    failed = Runner(_settings(), current_store(), observers=[seen.append]).execute("health", trigger="manual")

    assert [(r.id, r.status) for r in seen] == [
        (ok.id, "succeeded"),
        (skipped.id, "skipped"),
        (failed.id, "failed"),
    ]
    assert seen[1].requested_by == "bob" and "already running" in seen[1].error
    assert runner.active_runs() == []


def test_the_daemons_runner_observes_the_missed_runs_it_records(monkeypatch):
    env = {f"REDIS_MAINT_JOBS__{n.upper().replace('-', '_')}__SCHEDULE": "off" for n in jobs.REGISTRY}
    for name, value in {**env, "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "0 3 * * *"}.items():
        monkeypatch.setenv(name, value)
    daemon = Daemon(_settings())
    seen = []
    daemon.runner.add_observer(seen.append)
    with freeze_time(datetime(2026, 3, 8, 3, 0, 5, tzinfo=UTC)):
        run_id = current_store().start_run("health", "scheduled", "daemon")
        current_store().finish_run(run_id, RunStatus.SUCCEEDED, {}, None)
    with freeze_time(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        assert daemon.catch_up() == ["health"]
    (missed,) = seen
    assert (missed.job, missed.status, missed.requested_by) == ("health", "missed", "daemon")
    assert missed.started_at == datetime(2026, 3, 10, 3, 0, tzinfo=UTC)


def test_two_runners_share_no_observers_and_no_runs_in_flight(redis_server):
    mine, theirs = [], []
    first = Runner(_settings(), current_store(), observers=[mine.append])
    Runner(_settings(), current_store(), observers=[theirs.append])
    first.execute("health", trigger="manual")
    assert len(mine) == 1 and theirs == []


def test_verify_restore_keep_and_unkeep_are_history_rows_with_who_ran_them(cli, stored, tmp_path):
    verified = cli("backups", "verify", stored, "--as", "bob", "--json")
    assert verified.exit_code == 0, verified.output
    printed = set(json_out(verified))
    # The job's result (keys may be added, as the drill's depth was), never the run row's own keys.
    assert printed >= VERIFY_KEYS and not printed & {"job", "trigger", "status", "requested_by"}, printed
    into = tmp_path / "restored"
    restored = cli("backups", "restore", stored, "--target", str(into), "--json")
    assert restored.exit_code == 0, restored.output
    assert json_out(restored)["dir"] == str(into) and (into / "dump.rdb").exists()
    assert cli("backups", "keep", stored, "--reason", "audit", "--as", "carol").exit_code == 0
    assert cli("backups", "unkeep", stored).exit_code == 0

    rows = {r["job"]: r for r in json_out(cli("history", "--json"))}
    assert [(j, rows[j]["requested_by"], rows[j]["trigger"], rows[j]["status"]) for j in sorted(rows)] == [
        ("backup-check", "bob", "manual", "succeeded"),
        ("backup-keep", "carol", "manual", "succeeded"),
        ("backup-restore", "tester", "manual", "succeeded"),
        ("backup-unkeep", "tester", "manual", "succeeded"),
    ]
    assert rows["backup-check"]["summary"]["params"] == {"backup_id": stored}
    assert rows["backup-check"]["summary"]["ok"] is True
    assert rows["backup-restore"]["summary"]["params"] == {"backup_id": stored, "directory": str(into)}
    assert rows["backup-restore"]["summary"]["dir"] == str(into)
    assert rows["backup-keep"]["summary"]["reason"] == "audit"
    # The catalog points at the check's run, as it does for the weekly drill's.
    assert Catalog(current_store()).get(stored).verify_result["ok"] is True


def test_a_held_lock_makes_restore_exit_75_and_records_the_skip(cli, stored, tmp_path):
    into = tmp_path / "restored"
    held = Lease.acquire(current_store(), "backup-restore", timedelta(minutes=1))
    try:
        refused = cli("backups", "restore", stored, "--target", str(into), "--json")
    finally:
        held.release()
    assert refused.exit_code == 75
    assert refused.stdout == "" and "already running" in refused.stderr
    assert not into.exists()
    (row,) = json_out(cli("history", "--json"))
    assert (row["job"], row["status"], row["requested_by"]) == ("backup-restore", "skipped", "tester")
    # Once the lock is free the same command goes ahead.
    assert cli("backups", "restore", stored, "--target", str(into)).exit_code == 0


def test_a_held_lock_makes_keep_exit_75_with_the_skipped_row(cli, stored):
    held = Lease.acquire(current_store(), "backup-keep", timedelta(minutes=1))
    try:
        refused = cli("backups", "keep", stored, "--json")
    finally:
        held.release()
    assert refused.exit_code == 75
    assert json_out(refused)["status"] == "skipped"
    assert not Catalog(current_store()).get(stored).kept


def test_a_failed_verify_is_a_failed_row_and_notifies(cli, stored, hook, tmp_path):
    record = Catalog(current_store()).get(stored)
    (tmp_path / "backups" / record.location / "dump.rdb").write_bytes(b"REDIS0011")  # same size, other bytes

    result = cli("backups", "verify", stored, "--json")

    assert result.exit_code == 1
    printed = json_out(result)
    assert printed["ok"] is False and "sha256" in " ".join(printed["problems"])
    (row,) = json_out(cli("history", "--json"))
    assert (row["job"], row["status"], row["requested_by"]) == ("backup-check", "failed", "tester")
    assert f"backup {stored} failed verification" in row["error"]
    (call,) = hook.posted("/hook")
    assert (call["event"], call["job"], call["run_id"]) == ("failure", "backup-check", row["id"])


def test_refused_operations_exit_2_and_record_nothing(cli, stored, tmp_path):
    unknown = cli("backups", "verify", "20990101T000000Z-000000")
    assert unknown.exit_code == 2 and "no backup '20990101T000000Z-000000'" in unknown.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    not_empty = cli("backups", "restore", stored, "--target", str(busy))
    assert not_empty.exit_code == 2 and "is not empty" in not_empty.stderr
    Catalog(current_store()).mark_pruned(stored, "test")
    pruned = cli("backups", "restore", stored, "--target", str(tmp_path / "new"))
    assert pruned.exit_code == 2 and "pruned" in pruned.stderr
    no_params = cli("run", "backup-keep")
    assert no_params.exit_code == 2 and "backup-keep: backup_id" in no_params.stderr
    assert json_out(cli("history", "--json")) == []
    assert (busy / "notes.txt").read_text() == "mine"


def test_a_pre_check_that_fails_for_another_reason_is_a_failed_row(cli, stored, tmp_path):
    record = Catalog(current_store()).get(stored)
    manifest = tmp_path / "backups" / record.location / "manifest.json"
    bad = {"id": stored, "files": [{"path": "../escape", "size": 1, "sha256": "0" * 64}]}
    manifest.write_text(json.dumps(bad))

    result = cli("backups", "restore", stored, "--target", str(tmp_path / "restored"))

    assert result.exit_code == 1 and result.stdout == ""
    (row,) = json_out(cli("history", "--json"))
    assert (row["job"], row["status"]) == ("backup-restore", "failed")
    assert row["error"] in result.stderr
    assert not Path(tmp_path / "restored").exists()
