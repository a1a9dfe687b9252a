"""Retention, verify and restore never follow a symbolic link in a local target.

Each test puts a link where a backup directory or file should be, pointing at real data
(a live redis-server's data dir, or a directory full of files), and checks that nothing
under the link's destination changed and that the link was reported.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from redis_maint.backup.prune import prune
from redis_maint.backup.retention import Policy
from redis_maint.history.catalog import Catalog
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from tests.support.builders.backups import fill_sessions
from tests.support.builders.stored import fake_backup, tree
from tests.support.common import json_out

OLD, NEW = datetime(2024, 1, 1, 3, tzinfo=UTC), datetime(2024, 1, 2, 3, tzinfo=UTC)
ONE_A_DAY = Policy(keep_daily=1, keep_weekly=0, keep_monthly=0, keep_within=timedelta(0))
NOW = datetime(2024, 1, 2, 4, tzinfo=UTC)


@pytest.fixture
def env(tmp_path):
    catalog = Catalog(HistoryStore(f"sqlite:///{tmp_path}/h.db"))
    return catalog, open_target(str(tmp_path / "t")), tmp_path / "t"


def run_prune(catalog, target, *, dry_run=False):
    return prune(
        catalog,
        target,
        instance="default",
        policy=ONE_A_DAY,
        tz=UTC,
        now=NOW,
        incomplete_age=timedelta(days=1),
        dry_run=dry_run,
    )


def replace_with_link(path, destination) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.symlink_to(destination, target_is_directory=destination.is_dir())


def test_a_backup_directory_linked_to_a_live_redis_data_dir_survives_prune(env, redis_server, caplog):
    catalog, target, root = env
    client = redis_server.client()
    fill_sessions(client, 200)
    client.save()
    data_before = tree(redis_server.dir, skip=("redis.log",))
    assert "dump.rdb" in data_before and any(k.startswith("appendonlydir/") for k in data_before)
    linked = fake_backup(target, catalog, OLD)
    newer = fake_backup(target, catalog, NEW)
    location = catalog.get(linked).location
    replace_with_link(root / location, redis_server.dir)

    assert run_prune(catalog, target, dry_run=True)["prune_refused"][0]["id"] == linked
    with caplog.at_level(logging.WARNING, logger="redis_maint.backup.prune"):
        summary = run_prune(catalog, target)

    assert tree(redis_server.dir, skip=("redis.log",)) == data_before
    assert client.dbsize() == 200
    assert (root / location).is_symlink()
    assert summary["symlinks_skipped"] == [location]
    assert summary["prune_refused"] == [{"id": linked, "why": f"{location} is a symbolic link; left alone"}]
    assert summary["pruned"] == [] and summary["pruned_why"] == []
    assert catalog.get(linked).status == "complete", "nothing was deleted, so it is not recorded as pruned"
    assert catalog.get(newer).status == "complete"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(getattr(r, "key", None) == location for r in warnings)


def test_a_linked_date_directory_is_neither_entered_nor_pruned(env, tmp_path):
    catalog, target, root = env
    linked = fake_backup(target, catalog, OLD)
    fake_backup(target, catalog, NEW)
    # default/2024/01 -> elsewhere: the old backup (and a bystander file) now live behind a link.
    month = root / "default" / "2024" / "01"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(month, elsewhere)
    (elsewhere / "precious.txt").write_text("not a backup")
    before = tree(elsewhere)
    new_month = tmp_path / "new-month"
    shutil.copytree(month, new_month)
    shutil.rmtree(month)
    month.symlink_to(elsewhere, target_is_directory=True)

    summary = run_prune(catalog, target)

    assert tree(elsewhere) == before
    assert summary["symlinks_skipped"] == ["default/2024/01"]
    assert [r["id"] for r in summary["prune_refused"]] == [linked]
    assert target.list("default/") is not None and list(target.list("default/")) == []


def test_a_linked_file_inside_a_backup_stays_and_the_rest_is_pruned(env, redis_server):
    catalog, target, root = env
    redis_server.client().save()
    outside_before = tree(redis_server.dir, skip=("redis.log",))
    old = fake_backup(target, catalog, OLD)
    fake_backup(target, catalog, NEW)
    location = root / catalog.get(old).location
    replace_with_link(location / "dump.rdb", redis_server.dir / "dump.rdb")  # named in the manifest
    (location / "appendonlydir").symlink_to(redis_server.dir / "appendonlydir", target_is_directory=True)

    summary = run_prune(catalog, target)

    assert tree(redis_server.dir, skip=("redis.log",)) == outside_before
    key = catalog.get(old).location
    assert summary["pruned"] == [old]
    assert sorted(summary["symlinks_skipped"]) == [f"{key}/appendonlydir", f"{key}/dump.rdb"]
    assert sorted(p.name for p in location.iterdir()) == ["appendonlydir", "dump.rdb"]
    assert all((location / n).is_symlink() for n in ("appendonlydir", "dump.rdb"))
    assert catalog.get(old).status == "pruned"


def test_incomplete_backup_cleanup_never_follows_a_linked_instance_dir(env, tmp_path):
    catalog, target, root = env
    # The instance dir is a link to a directory holding what looks like an old incomplete backup
    # and a stale temp file: the cleanup must not touch either.
    elsewhere = tmp_path / "elsewhere"
    stale = elsewhere / "2024" / "01" / "01" / "20240101T030000Z-abcdef"
    stale.mkdir(parents=True)
    (stale / "dump.rdb").write_bytes(b"data someone needs")
    (stale / ".dump.rdb.tmp-deadbeef").write_bytes(b"half")
    long_ago = (NOW - timedelta(days=10)).timestamp()
    for p in stale.iterdir():
        os.utime(p, (long_ago, long_ago))
    before = tree(elsewhere)
    root.mkdir()
    (root / "default").symlink_to(elsewhere, target_is_directory=True)

    summary = run_prune(catalog, target)

    assert tree(elsewhere) == before
    assert summary["incomplete_removed"] == []
    assert summary["multipart_aborted"] == 0
    assert summary["symlinks_skipped"] == ["default"]


def test_a_real_incomplete_backup_beside_a_link_is_still_removed(env, tmp_path):
    catalog, target, root = env
    stale = fake_backup(target, catalog, OLD, complete=False)
    long_ago = (NOW - timedelta(days=10)).timestamp()
    for p in (root / catalog.get(stale).location).iterdir():
        os.utime(p, (long_ago, long_ago))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("x")
    (root / "default" / "2024" / "01" / "01" / "20240101T000000Z-000000").symlink_to(tmp_path / "elsewhere")

    summary = run_prune(catalog, target)

    assert [loc.rsplit("/", 1)[1] for loc in summary["incomplete_removed"]] == [stale]
    assert not (root / catalog.get(stale).location).exists()
    assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "x"
    assert catalog.get(stale).status == "failed"


def test_verify_and_restore_refuse_a_backup_file_that_is_a_link(cli, redis_server, backup_env, tmp_path):
    fill_sessions(redis_server.client(), 50)
    run = json_out(cli("run", "backup", "--json"))
    assert run["status"] == "succeeded", run["error"]
    backup_id = run["summary"]["backup_id"]
    stored = (
        tmp_path
        / "backups"
        / Catalog(HistoryStore(f"sqlite:///{tmp_path}/history.db")).get(backup_id).location
    )
    # A link to a file with the very same bytes: following it would even pass the sha256 check.
    copy = tmp_path / "copy.rdb"
    shutil.copyfile(stored / "dump.rdb", copy)
    replace_with_link(stored / "dump.rdb", copy)

    verified = cli("backups", "verify", backup_id)
    assert verified.exit_code == 1
    assert "dump.rdb is a symbolic link" in verified.output

    restored = cli("backups", "restore", backup_id, "--target", str(tmp_path / "restore"))
    assert restored.exit_code == 1
    assert "is a symbolic link" in restored.output
    assert not (tmp_path / "restore" / "dump.rdb").exists()
