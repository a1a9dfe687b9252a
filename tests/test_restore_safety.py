"""Restore never writes into a live Redis's data dir, and a failed restore leaves nothing behind.

Real redis-server processes, a local-directory target and moto's S3 server; the digest test
runs a throwaway redis-server container (Docker).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from redis_maint.backup.live_redis import check_dir
from redis_maint.backup.restore import _swap_in
from tests.support.builders.backups import BUCKET, digest, fill_sessions, fill_types, start_on
from tests.support.common import free_port, json_out


def backup(cli) -> dict:
    result = cli("run", "backup", "--json")
    run = json_out(result)
    assert result.exit_code == 0, run["error"]
    return run["summary"]


def tree(directory: Path) -> dict[str, str]:
    """Every entry under `directory` (hidden ones too) with its sha256; redis.log is Redis's own."""
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if rel != "redis.log":
            out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def stored_manifest(tmp_path: Path, backup_id: str) -> Path:
    (path,) = (tmp_path / "backups").rglob(f"{backup_id}/manifest.json")
    return path


@pytest.fixture
def backed_up(cli, redis_server, backup_env):
    """The configured Redis with 300 sessions and a backup of them on the local target."""
    fill_sessions(redis_server.client(), 300)
    return redis_server, backup(cli)


def test_restore_into_the_configured_redis_dir_is_refused_even_with_force(
    cli, backed_up, monkeypatch, tmp_path
):
    server, summary = backed_up
    # The sidecar's data_dir elsewhere, so only CONFIG GET dir (and the process) can tell.
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path / "elsewhere"))
    link = tmp_path / "link-to-live"
    link.symlink_to(server.dir)  # resolved on both sides
    before, keys = tree(server.dir), server.client().dbsize()

    refused = cli("backups", "restore", summary["backup_id"], "--target", str(link), "--force", "--json")

    assert refused.exit_code == 2, refused.output
    assert refused.stdout == ""
    message = refused.stderr
    assert f"reports CONFIG GET dir = {server.dir}" in message
    assert "--force does not override" in message
    assert f"redis-cli -h 127.0.0.1 -p {server.port} shutdown  # the configured Redis" in message
    assert f"redis-cli -p {server.port} DBSIZE  # expect 300" in message
    assert f"redis-cli -p {server.port} DEBUG DIGEST" in message and "deep.server.digest" in message
    assert tree(server.dir) == before
    assert server.client().dbsize() == keys == 300


def test_the_data_dir_mapping_counts_as_live_while_the_configured_redis_answers(
    cli, backed_up, monkeypatch, tmp_path
):
    server, summary = backed_up
    # Redis reports its own path (its dir here, /data in a container); the sidecar sees it at `mapped`.
    mapped = tmp_path / "mapped"
    mapped.mkdir()
    (mapped / "dump.rdb").write_bytes(b"what Redis would load")
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(mapped))

    refused = cli("backups", "restore", summary["backup_id"], "--target", str(mapped), "--force")

    assert refused.exit_code == 2
    assert "it is data_dir (REDIS_MAINT_DATA_DIR)" in refused.stderr
    assert "CONFIG GET dir" not in refused.stderr and "pid" not in refused.stderr
    assert "docker-compose stop redis" in refused.stderr
    assert tree(mapped) == {"dump.rdb": hashlib.sha256(b"what Redis would load").hexdigest()}

    # Stopped, the same restore goes ahead and says it could not ask the configured Redis.
    server.stop()
    done = cli("backups", "restore", summary["backup_id"], "--target", str(mapped), "--force", "--json")
    assert done.exit_code == 0, done.output
    out = json_out(done)
    assert any("did not answer" in w and "does not prove it is stopped" in w for w in out["warnings"])
    assert (Path(out["moved_aside"]) / "dump.rdb").read_bytes() == b"what Redis would load"


def test_a_local_redis_server_working_in_the_dir_is_found_when_the_configured_one_is_down(
    cli, backed_up, redis_factory, monkeypatch
):
    _, summary = backed_up
    other = redis_factory("other")  # not the configured Redis
    other.client().set("mine", "keep")
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    before = tree(other.dir)

    refused = cli("backups", "restore", summary["backup_id"], "--target", str(other.dir), "--force")

    assert refused.exit_code == 2
    assert f"redis-server pid {other.proc.pid} (" in refused.stderr
    assert f"redis-server 127.0.0.1:{other.port}) works in it" in refused.stderr
    assert "did not answer" in refused.stderr
    assert f"redis-cli -p {other.port} shutdown  # pid {other.proc.pid}" in refused.stderr
    assert tree(other.dir) == before
    assert other.client().get("mine") == b"keep"


def test_a_successful_restore_reports_the_expected_key_count(cli, backed_up, tmp_path):
    _, summary = backed_up
    result = cli("backups", "restore", summary["backup_id"], "--target", str(tmp_path / "new"), "--json")
    assert result.exit_code == 0, result.output
    out = json_out(result)
    assert out["expected_dbsize"] == 300
    assert {"id", "target", "dir", "files", "moved_aside", "appendonly", "redis_version", "next"} <= set(out)
    assert out["warnings"] == []
    assert "DBSIZE  # expect 300" in out["check_after_start"][0]
    text = cli("backups", "restore", summary["backup_id"], "--target", str(tmp_path / "new2"))
    assert "redis-cli DBSIZE  # expect 300" in text.stdout


def test_a_failed_s3_restore_leaves_no_directory_behind(cli, redis_server, bucket, backup_env, tmp_path):
    fill_sessions(redis_server.client(), 100)
    summary = backup(cli)
    s3 = boto3.client("s3")
    key = next(
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"] if o["Key"].endswith(".incr.aof")
    )
    s3.delete_object(Bucket=BUCKET, Key=key)
    target = tmp_path / "new" / "deeper" / "data"

    result = cli("backups", "restore", summary["backup_id"], "--target", str(target))

    assert result.exit_code == 1
    assert "is missing: the backup is damaged" in result.stderr
    assert not (tmp_path / "new").exists()  # nor the parents it had to create


def test_a_failed_forced_restore_leaves_the_directory_as_it_was(cli, backed_up, tmp_path):
    _, summary = backed_up
    stored = next(stored_manifest(tmp_path, summary["backup_id"]).parent.rglob("*.base.rdb"))
    stored.write_bytes(stored.read_bytes()[:-4] + b"\x00\x00\x00\x00")  # same size, wrong sha256
    target = tmp_path / "old"
    (target / "appendonlydir").mkdir(parents=True)
    (target / "appendonlydir" / "appendonly.aof.1.incr.aof").write_text("old aof")
    (target / "dump.rdb").write_text("old rdb")
    before = tree(target)

    result = cli("backups", "restore", summary["backup_id"], "--target", str(target), "--force")

    assert result.exit_code == 1
    assert "does not match the manifest" in result.stderr
    assert tree(target) == before  # no staging dir, no half-written file, nothing moved aside


def test_a_failed_swap_puts_the_old_files_back(tmp_path):
    directory, staged = tmp_path / "data", tmp_path / "data" / ".staged"
    (directory / "appendonlydir").mkdir(parents=True)
    (directory / "appendonlydir" / "old.aof").write_text("old")
    (directory / "dump.rdb").write_text("old rdb")
    (staged / "appendonlydir").mkdir(parents=True)
    (staged / "appendonlydir" / "new.aof").write_text("new")  # dump.rdb is missing: its rename fails
    manifest = {"files": [{"path": "appendonlydir/new.aof"}, {"path": "dump.rdb"}]}

    with pytest.raises(FileNotFoundError):
        _swap_in(directory, staged, manifest)

    assert sorted(p.name for p in directory.iterdir()) == [".staged", "appendonlydir", "dump.rdb"]
    assert (directory / "appendonlydir" / "old.aof").read_text() == "old"
    assert (directory / "dump.rdb").read_text() == "old rdb"
    assert (staged / "appendonlydir" / "new.aof").read_text() == "new"


@pytest.mark.parametrize(
    "bad_path, said",
    [
        ("appendonlydir/" + "a" * 5000, "longer than"),
        ("x/" * 300 + "dump.rdb", "longer than 512 bytes"),
        ("a" * 300, "name longer than 255 bytes"),
        ("dump\x00.rdb", "control character"),
        ("appendonlydir/\nfake", "control character"),
        (42, "is not a string"),
    ],
    ids=["5000-chars", "deep", "name-too-long", "nul", "newline", "not-a-string"],
)
def test_a_bad_path_in_the_manifest_is_a_clear_integrity_error(cli, backed_up, tmp_path, bad_path, said):
    _, summary = backed_up
    manifest_file = stored_manifest(tmp_path, summary["backup_id"])
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][0]["path"] = bad_path
    manifest_file.write_text(json.dumps(manifest))
    target = tmp_path / "restored"

    result = cli("backups", "restore", summary["backup_id"], "--target", str(target))

    assert result.exit_code == 1
    assert "is not a valid backup manifest" in result.stderr and said in result.stderr
    assert "Traceback" not in result.output
    assert not target.exists()
    verified = cli("backups", "verify", summary["backup_id"], "--json")
    assert verified.exit_code == 1 and json_out(verified)["manifest"] == "invalid"


def test_a_target_path_the_filesystem_refuses_is_a_clear_storage_error(cli, backed_up, tmp_path):
    _, summary = backed_up
    target = tmp_path.joinpath(*(["d" * 250] * 20))  # each name fine, the whole beyond PATH_MAX

    result = cli("backups", "restore", summary["backup_id"], "--target", str(target))

    assert result.exit_code == 1
    assert "too long for this filesystem" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("d")] == []


@pytest.mark.docker
def test_deep_verify_records_the_digest_a_restored_redis_must_match(
    cli, redis_server, check_image, no_leftovers, monkeypatch, tmp_path
):
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__STAGING_DIR", str(tmp_path / "staging"))
    client = redis_server.client()
    fill_sessions(client, 500)
    fill_types(client)
    summary = backup(cli)
    expected = digest(client).decode()

    verified = cli("backups", "verify", summary["backup_id"], "--deep", "--json")

    assert verified.exit_code == 0, verified.stdout
    server = json_out(verified)["deep"]["server"]
    assert server["digest"] == expected != "0" * 40
    people = cli("backups", "verify", summary["backup_id"], "--deep")
    assert f"digest   {expected}" in people.stdout
    # Each was a run of its own in history (the drill takes that run's id, no invented cli-<pid>).
    checks = json_out(cli("history", "--job", "backup-check", "--json"))
    assert [(r["status"], r["summary"]["params"]) for r in checks] == [
        ("succeeded", {"backup_id": summary["backup_id"], "deep": True})
    ] * 2
    # The check the refusal message suggests holds for a Redis started on the restored files.
    restored = tmp_path / "restored"
    assert cli("backups", "restore", summary["backup_id"], "--target", str(restored)).exit_code == 0
    fresh = start_on(restored, appendonly=True)
    try:
        assert digest(fresh.client()).decode() == server["digest"]
    finally:
        fresh.stop()


def test_a_redis_that_refuses_our_credentials_still_counts_as_running(redis_factory, tmp_path):
    server = redis_factory("auth", password="pw-7f3a-secret")
    mapped = tmp_path / "mapped"
    mapped.mkdir()
    url = f"redis://:not-the-pw-91c2@127.0.0.1:{server.port}/0"

    check = check_dir(mapped, redis_url=url, data_dir=str(mapped))

    assert [r.how for r in check.live] == ["data-dir"]
    assert "answered but refused CONFIG GET dir" in check.notes[0]
    assert "not-the-pw-91c2" not in json.dumps(check.to_json()) + str(check.live)


def test_a_hung_redis_is_not_taken_for_a_stopped_one(redis_factory, tmp_path):
    server = redis_factory("hung")
    os.kill(server.proc.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        check = check_dir(
            server.dir, redis_url=server.url, data_dir=str(tmp_path / "x"), timeout=timedelta(seconds=0.5)
        )
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)

    assert [r.how for r in check.live] == ["process"]
    assert "did not answer" in check.notes[0]
