"""`backups list` for auditors: the same --since/--until as `history`, and `--csv`
with one row per file (backup id, created_at, status, path, size, sha256, S3 VersionId and ETag when the
catalog has them). The catalog rows are written through the catalog's own functions into a real SQLite
file; one backup is a real run of the backup job to a local directory."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from redis_maint.history.catalog import Catalog
from tests.support.builders.evidence import backup_at
from tests.support.common import json_out
from tests.support.history import current_store

HEADER = ["backup_id", "created_at", "status", "path", "size", "sha256", "version_id", "etag"]


@pytest.fixture
def catalog():
    """Three backups: complete on 11-28 (one file), failed on 11-29 (none), complete on 11-30 with two files
    whose S3 VersionId and ETag were recorded."""
    store = current_store()
    made = {
        "nov28": backup_at(store, datetime(2026, 11, 28, 3, tzinfo=UTC), complete=True)[0],
        "nov29": backup_at(store, datetime(2026, 11, 29, 3, tzinfo=UTC), complete=False)[0],
        "nov30": backup_at(store, datetime(2026, 11, 30, 23, 59, tzinfo=UTC), complete=True)[0],
    }
    files = [
        {"path": "dump.rdb", "size": 9, "sha256": "a" * 64, "version_id": "v-111", "etag": '"e1"'},
        {
            "path": "appendonlydir/appendonly.aof.1.incr.aof",
            "size": 0,
            "sha256": "b" * 64,
            "version_id": "v-222",
        },
    ]
    Catalog(store).mark_complete(made["nov30"], size=9, files=files)
    return made


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_one_row_per_file_and_every_backup(cli, catalog):
    result = cli("backups", "list", "--csv")
    assert result.exit_code == 0, result.output
    assert next(csv.reader(io.StringIO(result.stdout))) == HEADER
    got = [
        (r["backup_id"], r["status"], r["path"], r["size"], r["version_id"], r["etag"])
        for r in rows(result.stdout)
    ]
    assert got == [
        (catalog["nov30"], "complete", "dump.rdb", "9", "v-111", '"e1"'),
        (catalog["nov30"], "complete", "appendonlydir/appendonly.aof.1.incr.aof", "0", "v-222", ""),
        (catalog["nov29"], "failed", "", "", "", ""),  # no files, still listed
        (catalog["nov28"], "complete", "dump.rdb", "9", "", ""),  # recorded before VersionIds: empty
    ]
    first = rows(result.stdout)[0]
    assert first["created_at"] == "2026-11-30T23:59:00Z" and first["sha256"] == "a" * 64


def test_date_filters_on_backups_list(cli, catalog):
    def listed(*args: str) -> list[str]:
        return [b["id"] for b in json_out(cli("backups", "list", *args, "--json"))]

    assert listed("--since", "2026-11-29") == [catalog["nov30"], catalog["nov29"]]
    assert listed("--until", "2026-11-29") == [catalog["nov29"], catalog["nov28"]]
    assert listed("--since", "2026-11-30", "--until", "2026-11-30") == [
        catalog["nov30"]
    ]  # 23:59 is in the day
    assert listed("--since", "2026-12-01T00:30+01:00") == [catalog["nov30"]]  # 23:30 UTC
    assert listed("--until", "2026-11-28T02:59") == []
    csv_ids = {r["backup_id"] for r in rows(cli("backups", "list", "--csv", "--until", "2026-11-29").stdout)}
    assert csv_ids == {catalog["nov28"], catalog["nov29"]}


def test_bad_dates_and_clashing_outputs_exit_2(cli_process, catalog):
    bad = cli_process("backups", "list", "--since", "last week")
    assert bad.returncode == 2 and "--since" in bad.stderr and "2026-11-30" in bad.stderr
    assert "Traceback" not in bad.stderr
    for args in (("--csv", "--json"), ("--csv", "-o", "tsv"), ("--all", "--limit", "3")):
        assert cli_process("backups", "list", *args).returncode == 2, args


def test_limit_and_all(cli, catalog):
    assert len(json_out(cli("backups", "list", "--limit", "1", "--json"))) == 1
    assert len(json_out(cli("backups", "list", "--all", "--json"))) == 3


def test_csv_of_a_real_backup_matches_its_manifest(cli, redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "false")
    redis_server.client().set("k", "v")
    run = json_out(cli("run", "backup", "--json"))
    assert run["status"] == "succeeded", run["error"]
    listed = rows(cli("backups", "list", "--csv").stdout)
    manifest_files = {f["path"]: f for f in run["summary"]["files"]}
    assert {r["path"] for r in listed} == set(manifest_files)
    for r in listed:
        assert r["backup_id"] == run["summary"]["backup_id"] and r["status"] == "complete"
        assert r["sha256"] == manifest_files[r["path"]]["sha256"]
        assert int(r["size"]) == manifest_files[r["path"]]["size"]
