"""Retention applied to a real catalog (SQLite) and target (local dir): what is deleted, what stays."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta

from freezegun import freeze_time

from redis_maint.backup.prune import prune
from redis_maint.backup.retention import Policy
from redis_maint.history.catalog import Catalog
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from redis_maint.timeutil import utcnow
from tests.support.builders.backups import fill_sessions
from tests.support.builders.stored import fake_backup
from tests.support.common import free_port, json_out


def test_ninety_frozen_days_of_backups_leave_exactly_the_policy_set(tmp_path):
    store = HistoryStore(f"sqlite:///{tmp_path}/h.db")
    catalog, target = Catalog(store), open_target(str(tmp_path / "t"))
    with freeze_time("2025-01-01 03:00:00") as clock:
        for _ in range(90):
            fake_backup(target, catalog, utcnow())
            prune(
                catalog,
                target,
                instance="default",
                policy=Policy(),
                tz=UTC,
                now=utcnow(),
                incomplete_age=timedelta(days=1),
                dry_run=False,
            )
            clock.tick(timedelta(days=1))

    rows = catalog.list()
    assert len(rows) == 90, "catalog rows are never deleted"
    kept = {r.created_at.date() for r in rows if r.status == "complete"}
    daily = {date(2025, 3, 31) - timedelta(days=n) for n in range(14)}
    weekly = {date(2025, 3, 30) - timedelta(weeks=n) for n in range(7)}
    assert kept == daily | weekly | {date(2025, 1, 31), date(2025, 2, 28)}
    assert {r.status for r in rows} == {"complete", "pruned"}
    assert all(r.pruned_at is not None for r in rows if r.status == "pruned")
    on_disk = {o.key.split("/")[4] for o in target.list("default/")}
    assert on_disk == {r.id for r in rows if r.status == "complete"}


def test_dry_run_lists_what_would_go_and_deletes_nothing(tmp_path):
    catalog, target = Catalog(HistoryStore(f"sqlite:///{tmp_path}/h.db")), open_target(str(tmp_path / "t"))
    old = fake_backup(target, catalog, datetime(2024, 1, 1, tzinfo=UTC))
    new = fake_backup(target, catalog, datetime(2024, 1, 2, tzinfo=UTC))
    summary = prune(
        catalog,
        target,
        instance="default",
        policy=Policy(keep_daily=1, keep_weekly=0, keep_monthly=0, keep_within=timedelta(0)),
        tz=UTC,
        now=datetime(2024, 1, 2, tzinfo=UTC),
        incomplete_age=timedelta(days=1),
        dry_run=True,
    )
    assert summary["pruned"] == [old] and summary["kept"][0]["id"] == new
    assert {r.status for r in catalog.list()} == {"complete"}
    assert len(list(target.list(""))) == 4


def test_incomplete_backups_untouched_for_a_day_are_removed(tmp_path):
    catalog, target = Catalog(HistoryStore(f"sqlite:///{tmp_path}/h.db")), open_target(str(tmp_path / "t"))
    now = utcnow()
    stale = fake_backup(target, catalog, now - timedelta(days=2), complete=False)
    fresh = fake_backup(target, catalog, now - timedelta(hours=1), complete=False)
    done = fake_backup(target, catalog, now - timedelta(days=3))
    two_days_ago = time.time() - 2 * 86400
    for path in (tmp_path / "t").rglob(f"*{stale}*/*"):
        os.utime(path, (two_days_ago, two_days_ago))
    summary = prune(
        catalog,
        target,
        instance="default",
        policy=Policy(),
        tz=UTC,
        now=now,
        incomplete_age=timedelta(days=1),
        dry_run=False,
    )
    assert [loc.rsplit("/", 1)[1] for loc in summary["incomplete_removed"]] == [stale]
    remaining = {o.key.split("/")[4] for o in target.list("default/")}
    assert remaining == {fresh, done}
    assert catalog.get(stale).status == "failed"
    assert catalog.get(fresh).status == "pending"


def test_a_failed_backup_prunes_nothing_and_the_next_success_does(cli, redis_server, backup_env, monkeypatch):
    from config import load_settings
    from jobs import REGISTRY

    settings = load_settings(jobs=REGISTRY)
    catalog = Catalog(HistoryStore(settings.history_url))
    target = open_target(settings.target.uri)
    old = [fake_backup(target, catalog, datetime(2024, 3, 10 - n, 3, tzinfo=UTC)) for n in range(3)]
    fill_sessions(redis_server.client(), 100)
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__KEEP_DAILY", "1")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__KEEP_WEEKLY", "0")

    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert json_out(cli("run", "backup", "--json"))["status"] == "failed"
    assert {catalog.get(i).status for i in old} == {"complete"}

    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", redis_server.url)
    run = json_out(cli("run", "backup", "--json"))
    assert run["status"] == "succeeded", run["error"]
    assert sorted(run["summary"]["retention"]["pruned"]) == sorted(old[1:])
    # 10 March 2024 is the monthly survivor of its month; 9 and 8 March go.
    assert [catalog.get(i).status for i in old] == ["complete", "pruned", "pruned"]
    assert not any(old[2] in o.key for o in target.list("default/"))


def test_a_pending_backup_left_by_a_killed_run_is_marked_failed_by_the_next(cli, redis_server, backup_env):
    from config import load_settings
    from jobs import REGISTRY

    settings = load_settings(jobs=REGISTRY)
    catalog = Catalog(HistoryStore(settings.history_url))
    abandoned = fake_backup(open_target(settings.target.uri), catalog, utcnow(), complete=False)
    assert catalog.get(abandoned).status == "pending"
    fill_sessions(redis_server.client(), 10)
    assert json_out(cli("run", "backup", "--json"))["status"] == "succeeded"
    record = catalog.get(abandoned)
    assert record.status == "failed" and "abandoned" in record.error


def test_a_prune_claimed_but_not_carried_out_is_finished_by_the_next_run(tmp_path, history_url):
    catalog, target = Catalog(HistoryStore(history_url)), open_target(str(tmp_path / "t"))
    interrupted = fake_backup(target, catalog, datetime(2024, 1, 1, 3, tzinfo=UTC))
    newest = fake_backup(target, catalog, datetime(2024, 1, 2, 3, tzinfo=UTC))
    assert catalog.mark_pruned(interrupted, "retention (a run killed before deleting the files)")
    kwargs = dict(
        instance="default",
        policy=Policy(),
        tz=UTC,
        now=datetime(2024, 1, 9, tzinfo=UTC),
        incomplete_age=timedelta(days=1),
    )

    assert prune(catalog, target, dry_run=True, **kwargs)["prune_finished"] == [interrupted]
    assert len(list(target.list("default/"))) == 4
    summary = prune(catalog, target, dry_run=False, **kwargs)

    assert summary["prune_finished"] == [interrupted]
    assert {o.key.split("/")[4] for o in target.list("default/")} == {newest}
    assert not (tmp_path / "t" / "default" / "2024" / "01" / "01").exists()
