"""`backups check` and the daily `backup-audit`: the catalog reconciled with the target.

On a local directory and on S3 (moto's server over HTTP, versioning on): a deleted object, a
changed object (same size, other bytes), a backup the catalog does not know, a clean check; the
catalog status and the metrics after each; and a target that cannot be listed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from jobs import REGISTRY
from redis_maint.history.catalog import Catalog
from redis_maint.observe.metrics import Metrics
from tests.support.builders.backups import BUCKET, fill_sessions
from tests.support.common import free_port, in_ci, json_out
from tests.support.history import current_store
from tests.support.metrics import scrape_text

UNKNOWN_ID = "20200101T000000Z-abcdef"
UNKNOWN = f"default/2020/01/01/{UNKNOWN_ID}"


class LocalSide:
    """The backup target as a directory, seen from outside redis-maint (an operator's shell)."""

    kind = "local"

    def __init__(self, root: Path):
        self.root = root

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def delete(self, key: str) -> None:
        (self.root / key).unlink()


class S3Side:
    """The bucket, seen with plain boto3 (the console, another tool, an attacker)."""

    kind = "s3"
    prefix = "redis/"

    def __init__(self):
        self.client = boto3.client("s3")

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=self.prefix + key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=self.prefix + key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=BUCKET, Key=self.prefix + key)  # versioned: a delete marker

    def back_to(self, key: str, version_id: str) -> None:
        """Remove every later version and delete marker: `version_id` is the current one again."""
        versions = self.client.list_object_versions(Bucket=BUCKET, Prefix=self.prefix + key)
        for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            if v["VersionId"] != version_id:
                self.client.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])


@pytest.fixture(params=["local", "s3"])
def side(request, tmp_path):
    if request.param == "local":
        return LocalSide(tmp_path / "backups")
    request.getfixturevalue("bucket")
    boto3.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return S3Side()


def backup(cli) -> str:
    result = cli("run", "backup", "--json")
    assert result.exit_code == 0, result.output
    return json_out(result)["summary"]["backup_id"]


def check(cli, *flags: str, code: int) -> dict:
    result = cli("backups", "check", "--json", *flags)
    assert result.exit_code == code, result.output
    return json_out(result)


def record(backup_id: str):
    return Catalog(current_store()).get(backup_id)


def gauges() -> tuple[float, float]:
    sample = scrape_text(Metrics(current_store(), list(REGISTRY), "default").exposition().decode())
    return sample[("redis_maint_backups_missing", ())], sample[("redis_maint_backups_changed", ())]


def flip_a_byte(side, key: str) -> None:
    body = bytearray(side.read(key))
    body[len(body) // 2] ^= 0x01
    side.write(key, bytes(body))


def test_a_clean_check_exits_0_and_the_upload_recorded_etag_and_version_id(
    cli, redis_server, backup_env, side
):
    fill_sessions(redis_server.client(), 50)
    backup_id = backup(cli)
    result = check(cli, code=0)
    assert (result["ok"], result["checked"], result["read_data"]) == (True, 1, False)
    assert (result["missing"], result["changed"], result["unknown"]) == ([], [], [])
    assert result["target"].endswith("/redis" if side.kind == "s3" else "/backups")
    files = record(backup_id).files
    manifest = json.loads(side.read(f"{record(backup_id).location}/manifest.json"))
    if side.kind == "s3":  # the store's own record of each object, in the catalog and the manifest
        assert all(f["etag"] and f["version_id"] for f in files)
        assert [(f["etag"], f["version_id"]) for f in manifest["files"]] == [
            (f["etag"], f["version_id"]) for f in files
        ]
    else:  # a local target: size and sha256 are the record
        assert not any("etag" in f or "version_id" in f for f in files + manifest["files"])
    deep = check(cli, "--read-data", code=0)
    assert deep["read_data"] is True and deep["bytes_read"] > sum(f["size"] for f in files)
    assert record(backup_id).status == "complete" and gauges() == (0, 0)


def test_a_deleted_object_a_changed_object_and_an_unknown_backup_are_caught(
    cli, redis_server, backup_env, side
):
    fill_sessions(redis_server.client(), 50)
    gone, altered = backup(cli), backup(cli)
    gone_at, altered_at = record(gone).location, record(altered).location
    side.delete(f"{gone_at}/dump.rdb")
    changed_path = max(record(altered).files, key=lambda f: f["size"])["path"]
    flip_a_byte(side, f"{altered_at}/{changed_path}")  # same size, other bytes
    side.write(f"{UNKNOWN}/manifest.json", side.read(f"{altered_at}/manifest.json"))

    result = check(cli, code=1)
    assert result["missing"] == [{"id": gone, "files": ["dump.rdb"]}]
    assert [(u["id"], u["manifest"]) for u in result["unknown"]] == [(UNKNOWN_ID, True)]
    assert result["unknown"][0]["location"].endswith(UNKNOWN)
    if side.kind == "s3":  # the ETag recorded at upload catches it without reading the data
        assert [(c["id"], c["path"]) for c in result["changed"]] == [(altered, changed_path)]
        assert "ETag" in result["changed"][0]["why"]
    else:  # sizes alone cannot see it on a local target; --read-data does
        assert result["changed"] == [] and record(altered).status == "complete"
        assert gauges() == (1, 0)
        deep = check(cli, "--read-data", code=1)
        assert [(c["id"], c["path"]) for c in deep["changed"]] == [(altered, changed_path)]
        assert "sha256" in deep["changed"][0]["why"]
    assert (record(gone).status, record(gone).events[-1]["event"]) == ("missing", "missing")
    assert (record(altered).status, record(altered).events[-1]["event"]) == ("changed", "changed")
    assert gauges() == (1, 1)

    shown = cli("backups", "check")  # for people: one line per difference
    assert shown.exit_code == 1 and f"missing  {gone}  dump.rdb" in shown.stdout
    listed = json_out(cli("backups", "list", "--status", "missing", "--json"))
    assert [b["id"] for b in listed] == [gone]
    row = json_out(cli("history", "--job", "backup-reconcile", "--json"))[0]
    assert row["status"] == "failed" and gone in row["error"] and row["summary"]["ok"] is False

    # The daily job runs the same check on a schedule, and fails the same way.
    audit = cli("run", "backup-audit", "--json")
    assert audit.exit_code == 1, audit.output
    assert json_out(audit)["summary"]["missing"] == [{"id": gone, "files": ["dump.rdb"]}]


def test_a_backup_found_intact_again_returns_to_complete(cli, redis_server, backup_env, side):
    fill_sessions(redis_server.client(), 50)
    backup_id = backup(cli)
    key = f"{record(backup_id).location}/dump.rdb"
    original = side.read(key)
    side.delete(key)
    assert check(cli, code=1)["missing"] == [{"id": backup_id, "files": ["dump.rdb"]}]
    assert gauges() == (1, 0)
    if side.kind == "s3":
        # The same bytes uploaded again are another object: the VersionId recorded at upload says so.
        side.write(key, original)
        changed = check(cli, code=1)["changed"]
        assert [(c["path"], "VersionId" in c["why"]) for c in changed] == [("dump.rdb", True)]
        assert record(backup_id).status == "changed"
        uploaded = next(f["version_id"] for f in record(backup_id).files if f["path"] == "dump.rdb")
        side.back_to(key, uploaded)  # the version the backup uploaded is current again
    else:
        side.write(key, original)
    result = check(cli, "--read-data", code=0)
    assert result["marked"] and result["marked"][-1]["to"] == "complete"
    assert (record(backup_id).status, record(backup_id).events[-1]["event"]) == ("complete", "intact")
    assert gauges() == (0, 0)


def test_a_changed_backup_is_cleared_only_by_a_check_that_rereads_the_data(cli, redis_server, backup_env):
    fill_sessions(redis_server.client(), 50)
    backup_id = backup(cli)
    side = LocalSide(backup_env.parent / "backups")
    key = f"{record(backup_id).location}/dump.rdb"
    original = side.read(key)
    flip_a_byte(side, key)
    check(cli, "--read-data", code=1)
    side.write(key, original)
    still = check(cli, code=1)  # sizes match either way: this check cannot tell
    assert [(c["id"], c["path"]) for c in still["changed"]] == [(backup_id, None)]
    assert record(backup_id).status == "changed"
    check(cli, "--read-data", code=0)
    assert record(backup_id).status == "complete"


def test_retention_marks_a_backup_without_its_manifest_missing(cli, redis_server, backup_env):
    fill_sessions(redis_server.client(), 50)
    gone = backup(cli)
    backup(cli)
    (backup_env.parent / "backups" / record(gone).location / "manifest.json").unlink()
    result = cli("run", "backup", "--json")
    assert result.exit_code == 0, result.output
    retention = json_out(result)["summary"]["retention"]
    assert retention["missing_on_target"] == [gone] and retention["marked_missing"] == [gone]
    assert gone not in {k["id"] for k in retention["kept"]}  # it holds no retention slot
    assert (record(gone).status, record(gone).events[-1]["event"]) == ("missing", "missing")
    assert gauges() == (1, 0)
    shown = cli("backups", "show", gone)
    assert shown.exit_code == 0 and "missing" in shown.output


@pytest.mark.parametrize("how", ["no such bucket", "endpoint unreachable", "local path is a file"])
def test_a_target_that_cannot_be_listed_fails_naming_it(cli, s3, monkeypatch, tmp_path, how):
    if how == "no such bucket":
        monkeypatch.setenv("REDIS_MAINT_TARGET__URI", "s3://no-such-bucket/redis")
        named = "s3://no-such-bucket/redis"
    elif how == "endpoint unreachable":
        monkeypatch.setenv("REDIS_MAINT_TARGET__URI", "s3://redis-backups/redis")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("REDIS_MAINT_TARGET__S3__MAX_ATTEMPTS", "1")
        named = "s3://redis-backups/redis"
    else:
        (tmp_path / "not-a-dir").write_text("x")
        monkeypatch.setenv("REDIS_MAINT_TARGET__URI", str(tmp_path / "not-a-dir"))
        named = str(tmp_path / "not-a-dir")
    result = cli("backups", "check", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""  # no result to give: the reason is on stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    row = json_out(cli("history", "--job", "backup-reconcile", "--json"))[0]
    assert row["status"] == "failed" and named in row["error"]


def test_the_audit_is_scheduled_daily_and_a_fresh_install_passes(cli, settings):
    assert str(settings().job("backup-audit").schedule) == "30 4 * * *"
    assert str(settings().job("backup-reconcile").schedule) == "off"
    result = cli("run", "backup-audit", "--json")  # no catalog, no target directory yet
    assert result.exit_code == 0, result.output
    summary = json_out(result)["summary"]
    assert (summary["checked"], summary["ok"]) == (0, True)


ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'redis_maint_backups_missing'
        values: '0 0 1x20'
      - series: 'redis_maint_backups_changed'
        values: '0x30'
    alert_rule_test:
      - eval_time: 4m
        alertname: BackupsMissing
        exp_alerts: []
      - eval_time: 10m
        alertname: BackupsMissing
        exp_alerts:
          - exp_labels: {{severity: critical}}
            exp_annotations:
              summary: "1 backups in the catalog are gone from the backup target"
              description: "Objects were deleted outside redis-maint. Run `redis-maint backups check` and `redis-maint backups list --status missing`."
      - eval_time: 10m
        alertname: BackupsChanged
        exp_alerts: []
"""


def test_the_missing_backups_alert_fires_on_the_exported_gauge(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool not found (scripts/ensure-promtool.sh installs it)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    rules = Path(__file__).resolve().parents[1] / "infra" / "redis" / "alerts.yml"
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(ALERT_TESTS.format(rules=rules))
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
