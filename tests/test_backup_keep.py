"""Ad hoc backups never prune the nightly ones: keep_within, --no-prune,
`backups keep` / `unkeep`, and what a backup run says about retention. Real Redis, SQLite,
local directory and S3 (moto's server) targets."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from redis_maint.backup.prune import prune
from redis_maint.backup.retention import Policy
from redis_maint.history.catalog import Catalog
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from redis_maint.timeutil import utcnow
from tests.support.builders.backups import BUCKET, fill_sessions
from tests.support.builders.stored import fake_backup
from tests.support.common import json_out

MARCH = [datetime(2024, 3, 10 - n, 3, tzinfo=UTC) for n in range(3)]  # 10, 9, 8 March 2024


@pytest.fixture
def local(tmp_path):
    """Catalog and target as the CLI sees them (the conftest's history and backup dir)."""
    return Catalog(HistoryStore(os.environ["REDIS_MAINT_HISTORY_URL"])), open_target(
        str(tmp_path / "backups")
    )


def one_a_day(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__KEEP_DAILY", "1")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__KEEP_WEEKLY", "0")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__KEEP_MONTHLY", "0")


def test_an_ad_hoc_backup_right_after_the_nightly_one_keeps_both(cli, redis_server, backup_env, local):
    catalog, target = local
    now = utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    nightly = fake_backup(target, catalog, now - min(timedelta(hours=1), (now - midnight) / 2))
    fill_sessions(redis_server.client(), 50)

    result = cli("run", "backup")  # the human output, as an operator sees it

    assert result.exit_code == 0, result.output
    assert catalog.get(nightly).status == "complete"
    assert f"kept    {nightly}  within 2d" in result.output
    assert "pruned 0" in result.output
    ad_hoc = catalog.list(status="complete")[0]
    assert ad_hoc.id != nightly and "newest, within 2d" in result.output


def test_no_prune_stores_the_backup_and_prunes_nothing(cli, redis_server, backup_env, local, monkeypatch):
    catalog, target = local
    old = [fake_backup(target, catalog, t) for t in MARCH]
    one_a_day(monkeypatch)
    fill_sessions(redis_server.client(), 50)

    run = json_out(cli("run", "backup", "--no-prune", "--json"))

    assert run["status"] == "succeeded", run["error"]
    assert run["summary"]["retention"] == {"skipped": "run with --no-prune"}
    assert catalog.get(run["summary"]["backup_id"]).status == "complete"
    assert [catalog.get(i).status for i in old] == ["complete"] * 3
    stored = {o.key.split("/")[4] for o in target.list("default/")}
    assert stored == {*old, run["summary"]["backup_id"]}
    # The next ordinary run does prune them, so --no-prune was what held them back; it says why.
    human = cli("run", "backup")
    assert human.exit_code == 0, human.output
    assert [catalog.get(i).status for i in old] == ["pruned"] * 3
    assert "kept 2, pruned 3" in human.output  # the two new backups are within 2d
    assert f"pruned  {old[0]}  older than 2d; daily 2024-03-10: not among the last 1 day" in human.output


@pytest.mark.usefixtures("history_url")  # SQLite, then PostgreSQL
def test_keep_and_unkeep_are_recorded_with_who_and_why(cli, local):
    catalog, target = local
    backup_id = fake_backup(target, catalog, MARCH[0])

    kept = cli(
        "backups", "keep", backup_id, "--reason", "before the schema change", "--as", "alice", "--json"
    )
    assert kept.exit_code == 0, kept.output
    row = json_out(kept)
    assert (row["job"], row["trigger"], row["status"], row["requested_by"]) == (
        "backup-keep",
        "manual",
        "succeeded",
        "alice",
    )
    # Like every run's: what the job did, and how long the run took.
    assert row["summary"] == {
        "backup_id": backup_id,
        "reason": "before the schema change",
        "duration_s": row["summary"]["duration_s"],
    }

    listed = json_out(cli("backups", "list", "--json"))[0]
    assert (listed["kept"], listed["kept_reason"], listed["kept_by"]) == (
        True,
        "before the schema change",
        "alice",
    )
    assert listed["kept_at"] is not None and listed["status"] == "complete"
    events = json_out(cli("backups", "show", backup_id, "--json"))["catalog"]["events"]
    assert events[-1]["event"] == "kept"
    assert events[-1]["detail"] == "by alice: before the schema change"
    assert "kept" in cli("backups", "show", backup_id).output

    unkept = cli("backups", "unkeep", backup_id)  # $USER is "tester" (conftest)
    assert unkept.exit_code == 0, unkept.output
    assert "no longer kept" in unkept.output
    listed = json_out(cli("backups", "list", "--json"))[0]
    assert (listed["kept"], listed["kept_reason"]) == (False, None)

    history = json_out(cli("history", "--json"))
    assert [(r["job"], r["requested_by"]) for r in history] == [
        ("backup-unkeep", "tester"),
        ("backup-keep", "alice"),
    ]
    assert catalog.get(backup_id).events[-1]["detail"] == "by tester"


@pytest.mark.usefixtures("history_url")  # SQLite, then PostgreSQL
def test_keep_refuses_unknown_pruned_and_incomplete_backups_with_exit_2(cli, local):
    catalog, target = local
    pruned = fake_backup(target, catalog, MARCH[1])
    catalog.mark_pruned(pruned, "test")
    pending = fake_backup(target, catalog, MARCH[2], complete=False)

    unknown = cli("backups", "keep", "20990101T000000Z-000000")
    assert unknown.exit_code == 2
    assert "no backup '20990101T000000Z-000000' in the catalog" in unknown.output
    assert "backups list" in unknown.output
    for backup_id, status in ((pruned, "pruned"), (pending, "pending")):
        refused = cli("backups", "keep", backup_id)
        assert refused.exit_code == 2
        assert f"backup {backup_id} is {status}" in refused.output
        assert "--status complete" in refused.output
    not_kept = cli("backups", "unkeep", fake_backup(target, catalog, MARCH[0]))
    assert not_kept.exit_code == 2 and "is not kept" in not_kept.output
    assert json_out(cli("history", "--json")) == [], "a refused keep records nothing"


def test_a_kept_backup_survives_the_retention_of_a_real_backup_run(
    cli, redis_server, backup_env, local, monkeypatch
):
    catalog, target = local
    old = [fake_backup(target, catalog, t) for t in MARCH]
    assert cli("backups", "keep", old[2], "--reason", "audit").exit_code == 0
    one_a_day(monkeypatch)
    fill_sessions(redis_server.client(), 50)

    run = json_out(cli("run", "backup", "--json"))

    assert run["status"] == "succeeded", run["error"]
    retention = run["summary"]["retention"]
    assert sorted(retention["pruned"]) == sorted(old[:2])
    assert {p["id"]: p["why"] for p in retention["pruned_why"]} == {
        old[0]: "older than 2d; daily 2024-03-10: not among the last 1 day with backups",
        old[1]: "older than 2d; daily 2024-03-09: not among the last 1 day with backups",
    }
    assert {k["id"]: k["why"] for k in retention["kept"]}[old[2]] == ["kept (backups keep)"]
    assert retention["policy"]["keep_within"] == "2d"
    assert [catalog.get(i).status for i in old] == ["pruned", "pruned", "complete"]
    assert "daily 2024-03-10" in catalog.get(old[0]).events[-1]["detail"]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_prune_deletes_only_manifest_files_and_never_a_kept_backup(kind, tmp_path, request):
    if kind == "s3":
        request.getfixturevalue("s3")
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        target = open_target(f"s3://{BUCKET}/redis")
    else:
        target = open_target(str(tmp_path / "t"))
    catalog = Catalog(HistoryStore(f"sqlite:///{tmp_path}/h.db"))
    old, kept, young, newest = (
        fake_backup(target, catalog, t)
        for t in (
            datetime(2025, 6, 1, 3, tzinfo=UTC),
            datetime(2025, 6, 2, 3, tzinfo=UTC),
            datetime(2025, 6, 9, 3, tzinfo=UTC),
            datetime(2025, 6, 9, 15, tzinfo=UTC),
        )
    )
    catalog.keep(kept, reason="audit", by="alice")
    summary = prune(
        catalog,
        target,
        instance="default",
        policy=Policy(keep_daily=1, keep_weekly=0, keep_monthly=0),
        tz=UTC,
        now=datetime(2025, 6, 10, 12, tzinfo=UTC),
        incomplete_age=timedelta(days=1),
        dry_run=False,
    )
    assert summary["pruned"] == [old]
    assert {k["id"] for k in summary["kept"]} == {kept, young, newest}
    on_target = {o.key.split("/")[4] for o in target.list("default/")}
    assert on_target == {kept, young, newest}
    assert [catalog.get(i).status for i in (old, kept, young, newest)] == [
        "pruned",
        "complete",
        "complete",
        "complete",
    ]
