"""Faults that must end cleanly: a clear error in history, nothing that looks complete, staging
cleaned up, no credentials anywhere, and the next run succeeds once the fault is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import boto3
import pytest

from redis_maint.history.catalog import Catalog
from redis_maint.history.runs import HistoryStore
from tests.support.builders.backups import BUCKET, SECRET, fill_sessions, multipart_uploads, objects, staged
from tests.support.common import ROOT, free_port, in_ci, json_out


def run_backup(cli):
    result = cli("run", "backup", "--json")
    return result, json_out(result)


def assert_clean_failure(result, run, staging, *, says: str, secrets: tuple[str, ...] = (SECRET,)) -> None:
    assert result.exit_code == 1, result.output
    assert run["status"] == "failed"
    assert says in run["error"], run["error"]
    assert staged(staging) == []
    everything = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in everything


def catalog_statuses() -> dict[str, str]:
    from config import load_settings
    from jobs import REGISTRY

    return {b.id: b.status for b in Catalog(HistoryStore(load_settings(jobs=REGISTRY).history_url)).list()}


def test_redis_down_fails_clearly_then_recovers(cli, redis_server, backup_env, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="cannot reach Redis")
    assert catalog_statuses() == {}

    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", redis_server.url)
    assert run_backup(cli)[1]["status"] == "succeeded"


def test_refused_credentials_fail_without_showing_the_password(cli, redis_factory, backup_env, monkeypatch):
    server = redis_factory("auth", password="right-password-123")
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://:wrong-password-456@127.0.0.1:{server.port}/0")
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="refused", secrets=("wrong-password-456",))

    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    result, run = run_backup(cli)
    assert run["status"] == "succeeded", run["error"]
    assert "right-password-123" not in result.stdout + result.stderr


def test_failing_bgsave_names_the_status_then_recovers(cli, redis_factory, backup_env, monkeypatch, tmp_path):
    (tmp_path / "bad" / "dump.rdb").mkdir(parents=True)  # Redis cannot rename its temp file over a dir
    server = redis_factory("bad")
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    fill_sessions(server.client(), 100)
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="rdb_last_bgsave_status is 'err'")
    assert "Redis log" in run["error"]

    (tmp_path / "bad" / "dump.rdb").rmdir()
    assert run_backup(cli)[1]["status"] == "succeeded"


def test_wrong_or_unreadable_data_dir_fails_clearly(cli, redis_server, backup_env, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path / "nowhere"))
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="cannot read Redis's data dir")

    other = tmp_path / "other-redis"
    other.mkdir()
    (other / "dump.rdb").write_bytes(b"REDIS0009 stale")
    os.utime(other / "dump.rdb", (time.time() - 7200, time.time() - 7200))
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(other))
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="not the file Redis just saved")
    assert str(redis_server.dir) in run["error"]  # names where Redis really writes

    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(redis_server.dir))
    assert run_backup(cli)[1]["status"] == "succeeded"


def test_missing_bucket_fails_then_the_next_run_succeeds(cli, redis_server, s3, backup_env, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", f"s3://{BUCKET}/redis")
    fill_sessions(redis_server.client(), 100)
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says=f"bucket '{BUCKET}' does not exist")
    assert run["summary"]["phase"] == "target check", "checked before BGSAVE and the copy"
    assert redis_server.client().info("persistence")["rdb_saves"] == 0
    assert catalog_statuses() == {}

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    result, run = run_backup(cli)
    assert run["status"] == "succeeded", run["error"]
    assert catalog_statuses() == {run["summary"]["backup_id"]: "complete"}
    assert (
        redis_server.client().config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]
        == "100"
    )


def test_unreachable_s3_fails_without_credentials_in_errors_or_logs(
    cli, redis_server, bucket, backup_env, monkeypatch
):
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("REDIS_MAINT_TARGET__S3__MAX_ATTEMPTS", "1")
    monkeypatch.setenv("REDIS_MAINT_TARGET__S3__CONNECT_TIMEOUT", "1s")
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="S3 endpoint unreachable")
    assert "testing" not in json.dumps(run["summary"])

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    assert run_backup(cli)[1]["status"] == "succeeded"


def _mount_tiny_tmpfs(path) -> None:
    """A 256 KiB tmpfs at `path`. Without root or `mount`: a failure under CI=true, a skip elsewhere."""
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)], capture_output=True, text=True
        )
        problem = proc.stderr.strip() if proc.returncode else None
    except OSError as exc:
        problem = str(exc)
    if problem is None:
        return
    message = f"cannot mount a small tmpfs (needs root and mount): {problem}"
    pytest.fail(message) if in_ci() else pytest.skip(message)


def test_full_staging_disk_fails_before_copying(cli, redis_server, backup_env, monkeypatch, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    _mount_tiny_tmpfs(tiny)
    try:
        fill_sessions(redis_server.client(), 5000)
        monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__STAGING_DIR", str(tiny))
        result, run = run_backup(cli)
        assert_clean_failure(result, run, tiny, says="bytes free but the copy needs")
        assert "jobs.backup.staging_dir" in run["error"]
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__STAGING_DIR", str(backup_env))
    assert run_backup(cli)[1]["status"] == "succeeded"


def fill_incompressible(client, n: int = 12_000) -> None:
    """~18 MB that neither RDB nor AOF compresses: a multipart upload long enough to interrupt."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"session:{i}", os.urandom(1500))
    pipe.execute()


def start_backup_process(**env: str) -> subprocess.Popen:
    """`redis-maint run backup --json` in its own process, uploading slowly (one 5 MiB part at a time)."""
    env = {
        **os.environ,
        "REDIS_MAINT_TARGET__S3__MAX_CONCURRENCY": "1",
        "REDIS_MAINT_TARGET__S3__MULTIPART_CHUNK_MIB": "5",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "run", "backup", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_multipart_upload(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60  # BGSAVE and the copy come first; a loaded CI machine is slow
    while not multipart_uploads() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None and multipart_uploads():
        return
    proc.kill()
    _out, err = proc.communicate(timeout=30)
    raise AssertionError(f"the upload should be under way (exit {proc.returncode}); its log:\n{err[-3000:]}")


def test_sigterm_during_upload_leaves_no_backup_and_no_multipart_upload(
    cli, redis_server, bucket, backup_env, monkeypatch
):
    client = redis_server.client()
    fill_incompressible(client)
    proc = start_backup_process()
    wait_for_multipart_upload(proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 1, stderr
    run = json.loads(stdout)
    assert run["status"] == "interrupted"
    assert not any(k.endswith("manifest.json") for k in objects())
    assert objects() == {}, "the objects of the interrupted backup are removed"
    assert multipart_uploads() == []
    assert staged(backup_env) == []
    assert client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "100"
    assert list(catalog_statuses().values()) == ["failed"]
    assert SECRET not in stdout + stderr

    assert run_backup(cli)[1]["status"] == "succeeded"


def test_s3_dying_mid_upload_fails_the_run_and_the_next_run_succeeds(
    redis_server, backup_env, monkeypatch, cli
):
    from tests.support.services.moto import MotoServer

    doomed = MotoServer().start()  # our own S3, to kill mid-upload
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", doomed.endpoint)
    for key, value in doomed.env().items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", f"s3://{BUCKET}/redis")
    fill_incompressible(redis_server.client())
    proc = start_backup_process(REDIS_MAINT_TARGET__S3__MAX_ATTEMPTS="2")
    try:
        wait_for_multipart_upload(proc)
    finally:
        doomed.proc.kill()
        doomed.proc.wait()
    stdout, stderr = proc.communicate(timeout=90)

    assert proc.returncode == 1, stderr
    run = json.loads(stdout)
    assert run["status"] == "failed" and "unreachable" in run["error"], run["error"]
    assert run["summary"]["phase"] == "upload"
    assert staged(backup_env) == []
    assert list(catalog_statuses().values()) == ["failed"]
    assert SECRET not in stdout + stderr
    assert (
        redis_server.client().config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]
        == "100"
    )

    revived = MotoServer().start()
    try:
        for key, value in revived.env().items():
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        assert run_backup(cli)[1]["status"] == "succeeded"
    finally:
        revived.stop()


def test_failed_integrity_check_uploads_nothing_and_records_the_verdicts(
    cli, redis_server, bucket, backup_env, monkeypatch
):
    # The Docker check is another module's (tests/test_integrity*); here only the job's wiring.
    from redis_maint.checks import integrity

    verdict = {"file": "appendonlydir/appendonly.aof.manifest", "tool": "redis-check-aof", "offset": 120}
    monkeypatch.setattr(
        integrity,
        "check_snapshot",
        lambda env, snap, **_: [{**verdict, "verdict": "truncated", "output": "x"}],
    )
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "true")
    result, run = run_backup(cli)
    assert_clean_failure(result, run, backup_env, says="failed its integrity check")
    assert objects() == {}
    from config import load_settings
    from jobs import REGISTRY

    record = Catalog(HistoryStore(load_settings(jobs=REGISTRY).history_url)).get(run["summary"]["backup_id"])
    assert record.status == "failed" and record.checks[0]["verdict"] == "truncated"

    monkeypatch.setattr(
        integrity, "check_snapshot", lambda env, snap, **_: [{**verdict, "verdict": "ok", "output": ""}]
    )
    result, run = run_backup(cli)
    assert run["status"] == "succeeded", run["error"]
    manifest = next(json.loads(v) for k, v in objects().items() if k.endswith("manifest.json"))
    assert manifest["checks"][0]["verdict"] == "ok"


def test_a_tmpfs_that_cannot_be_mounted_fails_the_test_under_ci(monkeypatch, tmp_path):
    nowhere = tmp_path / "no-such-mount-point"  # mount refuses it, even for root
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot mount a small tmpfs"):
        _mount_tiny_tmpfs(nowhere)
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="cannot mount a small tmpfs"):
        _mount_tiny_tmpfs(nowhere)
