"""A week of history for the report tests, written through the history store's own functions (runs,
catalog) at the times they would have happened, in a real SQLite file.

The week (Mon 2026-11-02 to Sun 2026-11-08), with one complete backup on 2026-10-31 before it:
  11-02 complete, restore drill (backup-verify) ok          -> green
  11-03 complete, checksums only (backup-check)             -> amber
  11-04 backup failed                                       -> red
  11-05 no backup; the 03:00 slot missed                    -> red
  11-06 complete, never verified                            -> amber
  11-07 complete, `backups verify --deep` (a restore drill) -> green
  11-08 nothing                                             -> red
plus ad hoc operations (a delete by a requester named like markup, a keep by one named like a
spreadsheet formula, a restore), a skipped run and
an interrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from redis_maint.backup.stored import location_for, new_backup_id
from redis_maint.history.catalog import BackupRecord, Catalog
from redis_maint.history.runs import HistoryStore, RunStatus

WEEK_START = datetime(2026, 11, 2, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
FORMULA = '=HYPERLINK("http://evil.example","click")'


@dataclass
class Week:
    backups: dict[str, str] = field(default_factory=dict)  # day -> backup id
    runs: dict[str, int] = field(default_factory=dict)  # what -> run id


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Day 0 is Monday 2026-11-02."""
    return WEEK_START + timedelta(days=day, hours=hour, minutes=minute)


def run_at(store: HistoryStore, when: datetime, job: str, status: RunStatus, summary: dict, **kw) -> int:
    """A run that started at `when` and finished a few seconds later, as the Runner records one."""
    with freeze_time(when):
        run_id = store.start_run(job, kw.get("trigger", "scheduled"), kw.get("requested_by", "daemon"))
    with freeze_time(when + timedelta(seconds=7)):
        store.finish_run(run_id, status, summary, kw.get("error"))
    return run_id


def backup_at(
    store: HistoryStore, when: datetime, *, complete: bool, error: str | None = None
) -> tuple[str, int]:
    """A backup run and its catalog row: complete, or failed."""
    catalog = Catalog(store)
    backup_id = new_backup_id(when)
    with freeze_time(when):
        run_id = store.start_run("backup", "scheduled", "daemon")
        catalog.add(
            BackupRecord(
                id=backup_id,
                run_id=run_id,
                instance="default",
                target=f"/backups/{location_for('default', backup_id, when)}",
                target_root="/backups",
                location=location_for("default", backup_id, when),
                created_at=when,
                status="pending",
            )
        )
    with freeze_time(when + timedelta(seconds=5)):
        if complete:
            files = [{"path": "dump.rdb", "size": 9, "sha256": "0" * 64}]
            catalog.mark_complete(backup_id, size=9, files=files)
            store.finish_run(run_id, RunStatus.SUCCEEDED, {"backup_id": backup_id, "bytes": 9}, None)
        else:
            catalog.mark_failed(backup_id, error or "BGSAVE failed")
            store.finish_run(run_id, RunStatus.FAILED, {"backup_id": backup_id}, error or "BGSAVE failed")
    return backup_id, run_id


def verify_at(store: HistoryStore, when: datetime, backup_id: str, *, job: str, deep: bool) -> int:
    """A verification that passed: the weekly drill (backup-verify), or `backups verify [--deep]`."""
    result = {"id": backup_id, "ok": True, "problems": [], "files": [], "manifest": "ok"}
    if deep:
        result["deep"] = {
            "ok": True,
            "download_s": 1.25,
            "source_keys": 2000,
            "server": {"keys": 2000, "sessions": 1990, "load_s": 0.75, "digest": "ab" * 20},
        }
    summary = {**result, "backup_id": backup_id} if job == "backup-verify" else dict(result)
    if job == "backup-check":
        summary["params"] = {"backup_id": backup_id, **({"deep": True} if deep else {})}
    with freeze_time(when):
        run_id = store.start_run(job, "scheduled" if job == "backup-verify" else "manual", "alice")
    with freeze_time(when + timedelta(seconds=4)):
        Catalog(store).record_verify(backup_id, result)
        store.finish_run(run_id, RunStatus.SUCCEEDED, summary, None)
    return run_id


def build_week(store: HistoryStore) -> Week:
    week = Week()
    week.backups["10-31"], _ = backup_at(store, datetime(2026, 10, 31, 3, tzinfo=UTC), complete=True)
    week.backups["11-02"], _ = backup_at(store, at(0, 3), complete=True)
    week.runs["drill"] = verify_at(store, at(0, 4), week.backups["11-02"], job="backup-verify", deep=True)
    week.backups["11-03"], _ = backup_at(store, at(1, 3), complete=True)
    week.runs["checksums"] = verify_at(store, at(1, 9), week.backups["11-03"], job="backup-check", deep=False)
    week.backups["11-04"], week.runs["failed"] = backup_at(
        store, at(2, 3), complete=False, error="BGSAVE failed: MISCONF"
    )
    week.runs["missed"] = store.record(
        "backup", "scheduled", RunStatus.MISSED, error="the daemon was down at 03:00", started_at=at(3, 3)
    )
    week.backups["11-06"], _ = backup_at(store, at(4, 3), complete=True)
    week.backups["11-07"], _ = backup_at(store, at(5, 3), complete=True)
    week.runs["deep"] = verify_at(store, at(5, 10), week.backups["11-07"], job="backup-check", deep=True)
    week.runs["skipped"] = run_at(
        store, at(5, 11), "session-sweep", RunStatus.SKIPPED, None, error="lock held by run 40"
    )
    week.runs["delete"] = run_at(
        store,
        at(1, 14),
        "session-delete",
        RunStatus.SUCCEEDED,
        {"deleted": {"organisation": 12, "stale": 0}, "matched": 12, "params": {"org": "org-7"}},
        trigger="manual",
        requested_by=HOSTILE,
    )
    week.runs["keep"] = run_at(
        store,
        at(4, 15),
        "backup-keep",
        RunStatus.SUCCEEDED,
        {"backup_id": week.backups["11-06"], "reason": "before the 7.2 upgrade"},
        trigger="manual",
        requested_by=FORMULA,
    )
    week.runs["restore"] = run_at(
        store,
        at(5, 16),
        "backup-restore",
        RunStatus.SUCCEEDED,
        {"params": {"backup_id": week.backups["11-07"], "directory": "/srv/restore"}},
        trigger="manual",
        requested_by="carol",
    )
    week.runs["interrupted"] = run_at(
        store, at(6, 2), "health", RunStatus.INTERRUPTED, None, error="stopped on request"
    )
    return week
