"""Integrity checks wired into backups: verify before upload, `backups verify --deep`, backup-verify.

Real Redis 7 (appendonly yes), a local-directory or moto S3 backup target and a real Docker engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.builders.backups import BUCKET, objects, sha256_of
from tests.support.services.redis import wait_aof_rewrite

pytestmark = pytest.mark.docker


@pytest.fixture
def source(redis_server, check_image, no_leftovers, monkeypatch, tmp_path):
    """A Redis with sessions in the AOF base and incr files, backups staged under tmp_path."""
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__STAGING_DIR", str(tmp_path / "staging"))
    client = redis_server.client()
    client.mset({f"session:{i}": json.dumps({"sub": i}) for i in range(250)})
    client.bgrewriteaof()
    wait_aof_rewrite(client)
    client.mset({f"cache:{i}": "x" for i in range(30)})
    client.set("session:last", "{}")
    return redis_server


def _backup(cli) -> tuple[int, dict]:
    result = cli("run", "backup", "--json")
    return result.exit_code, json.loads(result.stdout)


def _manifests(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "backups").rglob("manifest.json"))


def test_backup_checks_its_snapshot_and_records_the_verdicts(source, cli, tmp_path):
    code, run = _backup(cli)
    assert code == 0, run["error"]
    verdicts = {(c["tool"], c["file"], c["verdict"]) for c in run["summary"]["checks"]}
    assert verdicts == {
        ("redis-check-aof", "appendonlydir/appendonly.aof.manifest", "ok"),
        ("redis-check-rdb", "dump.rdb", "ok"),
    }
    (manifest,) = _manifests(tmp_path)
    assert json.loads(manifest.read_text())["checks"] == run["summary"]["checks"]
    shown = json.loads(cli("backups", "show", run["summary"]["backup_id"], "--json").stdout)
    assert shown["catalog"]["checks"] == run["summary"]["checks"]


def test_the_production_default_checks_in_a_container_then_uploads_to_s3(source, bucket, cli, settings):
    # the shipped default: nothing in the environment turns the check off
    assert settings().jobs.backup.verify_before_upload is True

    code, run = _backup(cli)

    assert code == 0, run["error"]
    summary = run["summary"]
    assert {(c["tool"], c["verdict"]) for c in summary["checks"]} == {
        ("redis-check-aof", "ok"),
        ("redis-check-rdb", "ok"),
    }
    assert summary["durations_s"]["verify"] > 0
    stored = objects(BUCKET)
    # Beside the backup: the history's checkpoint every backup writes (audit verify reads it).
    checkpoints = [k for k in stored if k.startswith("redis/audit/checkpoints/")]
    assert len(checkpoints) == 1, sorted(stored)
    stored = {k: v for k, v in stored.items() if k not in checkpoints}
    prefix = next(k for k in stored if k.endswith("/manifest.json")).removesuffix("manifest.json")
    assert prefix.startswith("redis/") and summary["backup_id"] in prefix
    manifest = json.loads(stored[prefix + "manifest.json"])
    assert manifest["checks"] == summary["checks"]
    files = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert "dump.rdb" in files and any(p.startswith("appendonlydir/") for p in files)
    assert set(stored) == {prefix + p for p in files} | {prefix + "manifest.json"}
    assert all(sha256_of(stored[prefix + p]) == digest for p, digest in files.items())
    (listed,) = json.loads(cli("backups", "list", "--json").stdout)
    assert listed["status"] == "complete" and listed["target"].startswith(f"s3://{BUCKET}/")


def test_a_corrupt_snapshot_is_not_uploaded_and_the_catalog_says_why(source, cli, tmp_path):
    base = next((source.dir / "appendonlydir").glob("*.base.rdb"))
    with open(base, "r+b") as f:
        f.seek(base.stat().st_size // 2)
        f.write(b"\x00\xff\x00\xff")

    code, run = _backup(cli)

    assert code == 1
    assert "failed its integrity check, so nothing was uploaded" in run["error"]
    assert base.name in run["error"] and "corrupt" in run["error"]
    assert _manifests(tmp_path) == []
    (row,) = json.loads(cli("backups", "list", "--json").stdout)
    assert row["status"] == "failed"
    shown = json.loads(cli("backups", "show", row["id"], "--json").stdout)
    bad = [c for c in shown["catalog"]["checks"] if c["verdict"] != "ok"]
    assert [(c["file"], c["verdict"]) for c in bad] == [(f"appendonlydir/{base.name}", "corrupt")]


def test_verify_deep_loads_the_backup_and_finds_the_source_key_count(source, cli):
    source_keys = source.client().dbsize()
    code, run = _backup(cli)
    assert code == 0, run["error"]
    backup_id = run["summary"]["backup_id"]

    result = cli("backups", "verify", backup_id, "--deep", "--json")

    assert result.exit_code == 0, result.stdout
    deep = json.loads(result.stdout)["deep"]
    assert deep["ok"] is True
    assert deep["source_keys"] == source_keys == 281
    assert deep["server"]["keys"] == source_keys
    assert deep["server"]["sessions"] == 251
    assert deep["server"]["loaded_from"] == "aof"
    assert {c["verdict"] for c in deep["checks"]} == {"ok"}
    recorded = json.loads(cli("backups", "show", backup_id, "--json").stdout)["catalog"]["verify_result"]
    assert recorded["deep"]["server"]["keys"] == source_keys


def test_verify_deep_says_what_it_loaded_for_people(source, cli):
    _, run = _backup(cli)
    result = cli("backups", "verify", run["summary"]["backup_id"], "--deep")
    assert result.exit_code == 0
    assert "loaded   281 keys (251 sessions) from aof" in result.stdout


def test_verify_deep_skips_the_drill_when_a_stored_file_is_damaged(source, cli, tmp_path):
    _, run = _backup(cli)
    stored = next(p for p in (tmp_path / "backups").rglob("dump.rdb"))
    stored.write_bytes(stored.read_bytes()[:-8] + b"\x00" * 8)
    result = cli("backups", "verify", run["summary"]["backup_id"], "--deep", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["deep"] == {"ok": False, "skipped": "the stored files failed their sha256 check"}


def test_backup_verify_job_drills_the_newest_complete_backup(source, cli):
    _, first = _backup(cli)
    source.client().set("session:newer", "{}")
    _, newest = _backup(cli)

    result = cli("run", "backup-verify", "--json")

    assert result.exit_code == 0, result.stdout
    summary = json.loads(result.stdout)["summary"]
    assert summary["backup_id"] == newest["summary"]["backup_id"] != first["summary"]["backup_id"]
    assert summary["deep"]["server"]["keys"] == summary["deep"]["source_keys"] == 282
