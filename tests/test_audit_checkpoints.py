"""Checkpoints of the evidence chain on the backup target: written with every backup and daily,
under S3 Object Lock when asked (moto's server), and read by `audit verify`, which then catches a
history cut back to before a checkpoint or replaced wholesale although the shorter chain is valid."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from redis_maint.audit.checkpoints import write_checkpoint
from redis_maint.audit.verify import check_chain
from redis_maint.history import db
from redis_maint.history.catalog import Catalog
from redis_maint.storage import open_target
from redis_maint.timeutil import utcnow
from tests.support.audit import ledger, some_history, tamper, verify
from tests.support.builders.backups import BUCKET, fill_sessions, objects
from tests.support.builders.stored import fake_backup
from tests.support.common import json_out
from tests.support.history import current_store

LOCKED = "redis-backups-locked"


def _url() -> str:
    return os.environ["REDIS_MAINT_HISTORY_URL"]


def _target():
    return open_target(os.environ["REDIS_MAINT_TARGET__URI"])


def test_every_backup_writes_a_checkpoint_of_the_chain(cli, redis_server, backup_env, tmp_path):
    fill_sessions(redis_server.client(), 20)

    run = json_out(cli("run", "backup", "--json"))

    assert run["status"] == "succeeded", run["error"]
    cp = run["summary"]["checkpoint"]
    body = json.loads((tmp_path / "backups" / cp["key"]).read_text())
    rows = ledger(_url())
    assert body["instance"] == "default" and body["records"] == body["head_seq"] == cp["head_seq"]
    assert body["head_hash"] == cp["head_hash"] == rows[cp["head_seq"] - 1]["hash"]
    assert body["chain_id"] == rows[0]["hash"] and body["tool_version"]
    seen = [json.loads(r["record"]) for r in rows[: cp["head_seq"]]]
    assert ("backup", "completed") in {(r["kind"], r["event"]) for r in seen}  # the new backup is in it
    code, result = verify(cli)
    assert code == 0, result
    assert result["checkpoint"]["status"] == "ok" and result["checkpoint"]["newest"]["key"] == cp["key"]


def test_a_history_cut_back_to_before_a_checkpoint_fails_though_the_chain_alone_is_valid(cli):
    store = current_store()
    some_history(store)
    ((seq, hash_),) = tamper(_url(), "SELECT seq, hash FROM ledger_head")
    later = [store.start_run("session-delete", "manual", "alice") for _ in range(2)]
    for run_id in later:
        store.finish_run(run_id, "succeeded", {"deleted": 5}, None)
    cp = write_checkpoint(store.engine, _target(), instance="default")
    # The intruder removes the two deletes and cuts the chain back cleanly, its head included.
    tamper(_url(), f"DELETE FROM runs WHERE id IN ({later[0]}, {later[1]})")
    tamper(_url(), "DELETE FROM ledger WHERE seq > ?", (seq,))
    tamper(_url(), "UPDATE ledger_head SET seq = ?, hash = ?", (seq, hash_))
    assert check_chain(store.engine).intact  # valid on its own

    code, result = verify(cli)

    assert code == 1
    first = result["breaks"][0]
    assert (first["seq"], first["kind"], first["ref"], first["how"]) == (
        cp["head_seq"],
        "checkpoint",
        cp["key"],
        "deleted",
    )
    assert (
        f"saw {cp['records']} records" in first["detail"]
        and "cut back to before that checkpoint" in first["detail"]
    )
    assert result["checkpoint"]["status"] == "mismatch"


def test_a_history_replaced_wholesale_fails(cli, tmp_path):
    store = current_store()
    some_history(store)
    cp = write_checkpoint(store.engine, _target(), instance="default")
    # The intruder swaps in a new database with a plausible, longer history of its own.
    db.dispose_all()
    for path in tmp_path.glob("history.db*"):
        path.unlink()
    for _ in range(3):
        some_history(current_store())

    code, result = verify(cli)

    assert code == 1
    first = result["breaks"][0]
    assert (first["kind"], first["ref"], first["how"]) == ("checkpoint", cp["key"], "replaced")
    assert "replaced wholesale" in first["detail"]


def test_backups_without_any_checkpoint_on_the_target_are_a_finding(cli):
    fake_backup(_target(), Catalog(current_store()), utcnow() - timedelta(hours=1))

    code, result = verify(cli)

    assert code == 1
    assert result["checkpoint"]["status"] == "missing"
    first = result["breaks"][0]
    assert (first["kind"], first["how"]) == ("checkpoint", "missing")
    assert "no checkpoint" in first["detail"] and "redis-maint run audit-checkpoint" in first["detail"]
    # writing one is the remedy
    assert cli("run", "audit-checkpoint").exit_code == 0
    assert verify(cli)[0] == 0


def test_a_target_that_cannot_be_read_fails_verification_and_still_reports_the_chain(cli, s3, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", "s3://no-such-bucket-here/redis")
    some_history(current_store())

    code, result = verify(cli)

    assert code == 1
    assert result["breaks"] == [] and result["records"] >= 5 and result["intact"] is False
    assert result["checkpoint"]["status"] == "unreachable"
    assert "no-such-bucket-here" in result["checkpoint"]["error"]
    human = cli("audit", "verify")
    assert human.exit_code == 1
    assert "checkpoint  s3://no-such-bucket-here/redis: UNREADABLE" in human.stdout
    assert "Traceback" not in human.output + human.stderr
    run = json_out(cli("history", "--job", "audit-verify", "--json"))[0]
    assert run["status"] == "failed" and "could not be read" in run["error"]


def test_the_daily_checkpoint_is_skipped_when_a_recent_one_exists(cli, tmp_path):
    first = json_out(cli("run", "audit-checkpoint", "--json"))
    second = json_out(cli("run", "audit-checkpoint", "--json"))

    assert first["status"] == second["status"] == "succeeded"
    assert first["summary"]["key"].startswith("audit/checkpoints/")
    assert "younger than fresh_within (20h)" in second["summary"]["skipped"]
    assert len(list((tmp_path / "backups" / "audit" / "checkpoints").iterdir())) == 1


# -- S3 Object Lock (moto's server) ------------------------------------------------------------------


@pytest.fixture
def locked_bucket(s3, monkeypatch):
    """A bucket created with Object Lock, the target on it, checkpoints locked in GOVERNANCE for 3 days."""
    boto3.client("s3").create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", f"s3://{LOCKED}/redis")
    monkeypatch.setenv("REDIS_MAINT_AUDIT__OBJECT_LOCK_MODE", "GOVERNANCE")
    monkeypatch.setenv("REDIS_MAINT_AUDIT__OBJECT_LOCK_DAYS", "3")
    return LOCKED


def _assert_locked(key: str, days: int = 3) -> None:
    # moto 5.2.5's server answers GetObjectRetention with a 500; HEAD returns the same retention.
    client = boto3.client("s3")
    head = client.head_object(Bucket=LOCKED, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"].astimezone(UTC)
    assert abs(until - (datetime.now(UTC) + timedelta(days=days))) < timedelta(minutes=5)
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=LOCKED, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_checkpoints_are_written_under_object_lock(cli, locked_bucket):
    run = json_out(cli("run", "audit-checkpoint", "--json"))

    assert run["status"] == "succeeded", run["error"]
    assert run["summary"]["object_lock_mode"] == "GOVERNANCE" and run["summary"]["retain_until"]
    _assert_locked(f"redis/{run['summary']['key']}")
    assert verify(cli)[0] == 0


def test_backup_manifests_are_locked_with_jobs_backup_object_lock(
    cli, redis_server, backup_env, locked_bucket, monkeypatch
):
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__OBJECT_LOCK", "true")
    fill_sessions(redis_server.client(), 20)

    run = json_out(cli("run", "backup", "--json"))

    assert run["status"] == "succeeded", run["error"]
    location = Path(run["summary"]["target"].removeprefix(f"s3://{LOCKED}/"))
    _assert_locked(f"{location}/manifest.json")
    _assert_locked(f"redis/{run['summary']['checkpoint']['key']}")
    data = boto3.client("s3").head_object(Bucket=LOCKED, Key=f"{location}/dump.rdb")
    assert "ObjectLockMode" not in data  # only the manifest: retention still prunes the data


def test_object_lock_on_a_bucket_without_it_is_a_clear_error(cli, bucket, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_AUDIT__OBJECT_LOCK_MODE", "COMPLIANCE")

    run = json_out(cli("run", "audit-checkpoint", "--json"))

    assert run["status"] == "failed"
    assert f"bucket {BUCKET!r} does not have Object Lock enabled" in run["error"]
    assert 'audit.object_lock_mode = ""' in run["error"]
    assert not [k for k in objects(BUCKET) if "/audit/" in k]
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__OBJECT_LOCK", "true")
    backup = json_out(cli("run", "backup", "--json"))  # refused before any work: no Redis is needed
    assert backup["status"] == "failed" and "does not have Object Lock enabled" in backup["error"]


def test_object_lock_settings_that_cannot_work_are_refused(cli, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_AUDIT__OBJECT_LOCK_MODE", "governance")
    bad = cli("run", "audit-checkpoint")
    assert bad.exit_code == 2 and "audit.object_lock_mode" in bad.stderr

    monkeypatch.setenv("REDIS_MAINT_AUDIT__OBJECT_LOCK_MODE", "")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__OBJECT_LOCK", "true")
    no_mode = json_out(cli("run", "backup", "--json"))
    assert no_mode["status"] == "failed" and "needs audit.object_lock_mode" in no_mode["error"]

    monkeypatch.setenv("REDIS_MAINT_AUDIT__OBJECT_LOCK_MODE", "GOVERNANCE")
    local = json_out(cli("run", "audit-checkpoint", "--json"))
    assert local["status"] == "failed" and "Object Lock needs an S3 target" in local["error"]
