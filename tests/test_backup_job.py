"""The backup job end to end, as a new user would try it: real Redis 7, moto's S3 server, the CLI."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from redis_maint.history.catalog import Catalog
from redis_maint.history.runs import HistoryStore
from tests.support.builders.backups import (
    BUCKET,
    digest,
    fill_sessions,
    fill_types,
    multipart_uploads,
    objects,
    sha256_of,
    staged,
    start_on,
)
from tests.support.common import json_out
from tests.support.services.redis import wait_aof_rewrite


def run_backup(cli, *extra: str) -> dict:
    result = cli("run", "backup", "--json", *extra)
    run = json_out(result)
    assert result.exit_code == (0 if run["status"] == "succeeded" else 1), result.output
    return run


def test_backup_of_100k_sessions_to_s3_matches_its_manifest(cli, redis_server, bucket, backup_env, tmp_path):
    client = redis_server.client()
    fill_sessions(client, 100_000)
    run = run_backup(cli)
    assert run["status"] == "succeeded", run["error"]
    summary = run["summary"]
    backup_id = summary["backup_id"]

    stored = objects()
    prefix = f"redis/default/{backup_id[0:4]}/{backup_id[4:6]}/{backup_id[6:8]}/{backup_id}/"
    manifest = json.loads(stored[prefix + "manifest.json"])
    assert manifest["id"] == backup_id
    assert manifest["dbsize"] == 100_000
    assert manifest["redis_version"].startswith("7.")
    assert manifest["role"] == "master" and manifest["aof_enabled"] == 1
    paths = {f["path"] for f in manifest["files"]}
    assert "dump.rdb" in paths and "appendonlydir/appendonly.aof.manifest" in paths
    assert any(p.endswith(".base.rdb") for p in paths) and any(p.endswith(".incr.aof") for p in paths)
    # A plain S3 client's download gives exactly the files the manifest describes.
    for f in manifest["files"]:
        body = stored[prefix + f["path"]]
        assert (len(body), sha256_of(body)) == (f["size"], f["sha256"])
    backup_keys = {k for k in stored if not k.startswith("redis/audit/")}  # and a chain checkpoint (audit)
    assert backup_keys == {prefix + p for p in paths} | {prefix + "manifest.json"}
    assert [k for k in stored if k.startswith("redis/audit/checkpoints/")] == [
        "redis/" + summary["checkpoint"]["key"]
    ]
    # The summary reports the same files, the bytes, the target and each phase's duration.
    assert summary["files"] == manifest["files"]
    assert summary["bytes"] == sum(f["size"] for f in manifest["files"])
    assert summary["target"] == f"s3://{BUCKET}/{prefix.rstrip('/')}"
    assert set(summary["durations_s"]) >= {"bgsave", "copy", "upload"}
    assert staged(backup_env) == []
    # The catalog lists it, in the documented --json shape.
    listed = json_out(cli("backups", "list", "--json"))
    assert [b["id"] for b in listed] == [backup_id]
    assert listed[0]["status"] == "complete"
    assert listed[0]["target"] == summary["target"]
    assert listed[0]["size"] == summary["bytes"]
    assert listed[0]["files"] == manifest["files"]
    assert client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "100"


@pytest.mark.parametrize("appendonly", [True, False], ids=["appendonly-yes", "rdb-only"])
def test_restored_directory_gives_a_fresh_redis_the_same_digest(
    cli, redis_factory, monkeypatch, bucket, backup_env, tmp_path, appendonly
):
    source = redis_factory("source", args={"appendonly": "yes" if appendonly else "no"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", source.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(source.dir))
    client = source.client()
    fill_sessions(client, 3000)
    fill_types(client)
    if appendonly:  # a rewrite, then more writes: base + a non-empty incr file
        client.bgrewriteaof()
        wait_aof_rewrite(client)
        fill_sessions(client, 500, start=10_000)
    run = run_backup(cli)
    assert run["status"] == "succeeded", run["error"]
    expected = digest(client)
    backup_id = run["summary"]["backup_id"]

    restored = tmp_path / "restored"
    result = cli("backups", "restore", backup_id, "--target", str(restored), "--json")
    assert result.exit_code == 0, result.output
    info = json_out(result)
    assert info["appendonly"] == ("yes" if appendonly else "no")
    assert (restored / "dump.rdb").exists()
    assert (restored / "appendonlydir").is_dir() == appendonly
    fresh = start_on(restored, appendonly)
    try:
        assert digest(fresh.client()) == expected
        assert fresh.client().dbsize() == client.dbsize()
    finally:
        fresh.stop()


def test_verify_catches_a_flipped_byte_and_records_it(cli, redis_server, bucket, backup_env, tmp_path):
    fill_sessions(redis_server.client(), 2000)
    backup_id = run_backup(cli)["summary"]["backup_id"]
    good = cli("backups", "verify", backup_id, "--json")
    assert good.exit_code == 0 and json_out(good)["ok"] is True

    s3 = boto3.client("s3")
    key = next(k for k in objects() if k.endswith("/dump.rdb"))
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))

    bad = cli("backups", "verify", backup_id, "--json")
    assert bad.exit_code == 1
    result = json_out(bad)
    assert result["ok"] is False
    verdicts = {f["path"]: f["verdict"] for f in result["files"]}
    assert verdicts["dump.rdb"] == "mismatch"
    assert all(v == "ok" for p, v in verdicts.items() if p != "dump.rdb")
    record = Catalog(HistoryStore(settings_history())).get(backup_id)
    assert record.verify_result["ok"] is False and record.verified_at is not None
    assert [e["event"] for e in record.events][-2:] == ["verified", "verified"]


def settings_history() -> str:
    from config import load_settings
    from jobs import REGISTRY

    return load_settings(jobs=REGISTRY).history_url


def test_verify_reports_a_missing_object(cli, redis_server, backup_env):
    fill_sessions(redis_server.client(), 100)
    run = run_backup(cli)
    backup_id = run["summary"]["backup_id"]
    incr = next(f["path"] for f in run["summary"]["files"] if f["path"].endswith(".incr.aof"))
    (backup_env.parent / "backups" / run["summary"]["target"].split("/backups/")[1] / incr).unlink()
    result = cli("backups", "verify", backup_id, "--json")
    assert result.exit_code == 1
    assert {f["path"]: f["verdict"] for f in json_out(result)["files"]}[incr] == "missing"


def test_restore_refuses_a_non_empty_directory_unless_forced(cli, redis_server, backup_env, tmp_path):
    fill_sessions(redis_server.client(), 100)
    backup_id = run_backup(cli)["summary"]["backup_id"]
    target = tmp_path / "live"
    (target / "appendonlydir").mkdir(parents=True)
    (target / "appendonlydir" / "stale.aof").write_text("old")
    (target / "dump.rdb").write_text("old")
    (target / "redis.conf").write_text("keep me")

    refused = cli("backups", "restore", backup_id, "--target", str(target))
    assert refused.exit_code == 2
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert (target / "dump.rdb").read_text() == "old"

    forced = cli("backups", "restore", backup_id, "--target", str(target), "--force", "--json")
    assert forced.exit_code == 0, forced.output
    aside = json_out(forced)["moved_aside"]
    assert (target / "redis.conf").read_text() == "keep me"
    assert not (target / "appendonlydir" / "stale.aof").exists()
    assert (target / aside / "appendonlydir" / "stale.aof").read_text() == "old"
    rdb = next(f for f in json_out(forced)["files"] if f["path"] == "dump.rdb")
    assert hashlib.sha256((target / "dump.rdb").read_bytes()).hexdigest() == rdb["sha256"]


def test_show_gives_the_manifest_and_the_backup_history(cli, redis_server, backup_env):
    fill_sessions(redis_server.client(), 100)
    run = run_backup(cli)
    backup_id = run["summary"]["backup_id"]
    shown = json_out(cli("backups", "show", backup_id, "--json"))
    assert shown["manifest"]["id"] == backup_id
    assert shown["manifest"]["files"] == run["summary"]["files"]
    assert shown["catalog"]["status"] == "complete"
    assert [e["event"] for e in shown["catalog"]["events"]] == ["created", "completed"]
    assert shown["run"]["id"] == run["id"]
    missing = cli("backups", "show", "20990101T000000Z-000000")
    assert missing.exit_code == 2 and "no backup" in missing.stderr


def test_dry_run_reports_the_plan_and_changes_nothing(cli, redis_server, bucket, backup_env):
    client = redis_server.client()
    fill_sessions(client, 100)
    saves = client.info("persistence")["rdb_saves"]
    run = run_backup(cli, "--dry-run")
    assert run["status"] == "succeeded", run["error"]
    summary = run["summary"]
    assert summary["dry_run"] is True
    assert {f["path"] for f in summary["would_back_up"]} >= {
        "dump.rdb",
        "appendonlydir/appendonly.aof.manifest",
    }
    assert summary["target"].startswith(f"s3://{BUCKET}/redis/default/")
    assert summary["retention"]["dry_run"] is True
    assert objects() == {}
    assert client.info("persistence")["rdb_saves"] == saves
    assert json_out(cli("backups", "list", "--json")) == []


def test_backups_found_on_the_target_restore_without_the_catalog(
    cli, redis_server, backup_env, tmp_path, monkeypatch
):
    fill_sessions(redis_server.client(), 200)
    backup_id = run_backup(cli)["summary"]["backup_id"]
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", f"sqlite:///{tmp_path}/other-history.db")
    result = cli("backups", "restore", backup_id, "--target", str(tmp_path / "r"), "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result)["id"] == backup_id
    assert json_out(cli("backups", "verify", backup_id, "--json"))["ok"] is True


def test_doctor_checks_the_backup_target(cli, bucket, redis_server):
    checks = {c["check"]: c for c in json_out(cli("doctor", "--json"))}
    assert checks["backups"]["ok"] is True
    assert f"s3://{BUCKET}/redis writable" in checks["backups"]["detail"]
    assert multipart_uploads() == [] and objects() == {}
