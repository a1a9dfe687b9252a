"""The columns of each listing: human cells for tables, machine values (the JSON keys) for tsv/csv."""

from __future__ import annotations

from typing import Any

from redis_maint.cli.render import human
from redis_maint.cli.render.lines import STATUS_STYLE
from redis_maint.cli.render.listing import Column

BACKUP_STYLE = {"complete": "green", "failed": "bold red", "pending": "yellow", "pruned": "dim"}
BACKUP_STYLE.update(missing="bold red", changed="bold red")  # found by `backups check`


def _duration_s(row: dict[str, Any]) -> float | None:
    took = human.took(row)
    return None if took is None else round(took, 3)


def _status_style(row: dict[str, Any]) -> str | None:
    return STATUS_STYLE.get(row.get("status") or "")


def _ago(key: str):
    return lambda r: human.ago(r.get(key))


def _when(key: str):
    return lambda r: human.when(r.get(key))


def _run_status(row: dict[str, Any]) -> str:
    """A dry run is marked where people look first; tsv keeps the bare status (csv: a dry_run column)."""
    dry = (row.get("summary") or {}).get("dry_run")
    return f"{row['status']} (dry run)" if dry else row["status"]


HISTORY = [
    Column("id", "run", lambda r: r["id"], whole=True),
    Column("job", "job", lambda r: r["job"], whole=True),
    Column("status", "status", _run_status, raw=lambda r: r["status"], whole=True, style=_status_style),
    Column("started_at", "started (UTC)", _when("started_at"), whole=True),
    Column("age", "age", _ago("started_at"), drop=2, human_only=True),
    Column("duration_s", "took", lambda r: human.duration(human.took(r)), raw=_duration_s, drop=3),
    Column("trigger", "trigger", lambda r: r["trigger"], drop=4),
    Column("requested_by", "by", lambda r: r["requested_by"], drop=5),
    Column("error", "error", lambda r: r["error"] or "", drop=1, wrap=True, style=lambda r: "red"),
    Column("host", "host", lambda r: r["host"], wide=True),
    Column("pid", "pid", lambda r: r["pid"], wide=True),
    Column("finished_at", "finished (UTC)", _when("finished_at"), wide=True),
]


def _verified(r: dict[str, Any]) -> str:
    if r.get("verified_at") is None:
        return ""
    return f"{'ok' if r.get('verify_ok') else 'FAILED'} {human.ago(r['verified_at'])}"


def _kept(r: dict[str, Any]) -> str:
    if not r.get("kept"):
        return ""
    return f"by {r.get('kept_by')}" + (f": {r['kept_reason']}" if r.get("kept_reason") else "")


BACKUP_STYLE.update(incomplete="yellow")  # a Redis Cluster backup with shards missing


def _backup_status(r: dict[str, Any]) -> str:
    """A Redis Cluster backup is one row: its status and how many of its shards are complete."""
    c = r.get("cluster")
    if not c:
        return r["status"]
    return f"{r['status']}, cluster {c['shards_complete']}/{c['shards_expected']} shards"


BACKUPS = [
    Column("id", "id", lambda r: r["id"], whole=True),
    Column("created_at", "created (UTC)", _when("created_at"), whole=True),
    Column("age", "age", _ago("created_at"), drop=2, human_only=True),
    Column(
        "status",
        "status",
        lambda r: _backup_status(r),
        raw=lambda r: r["status"],
        whole=True,
        style=lambda r: BACKUP_STYLE.get(r.get("status")),
    ),
    Column("size", "size", lambda r: human.size(r.get("size")), drop=1),
    Column(
        "files", "files", lambda r: len(r.get("files") or []), raw=lambda r: len(r.get("files") or []), drop=5
    ),
    Column(
        "verify_ok",
        "verified",
        _verified,
        drop=3,
        style=lambda r: "bold red" if r.get("verified_at") and not r.get("verify_ok") else None,
    ),
    Column("verified_at", "verified at (UTC)", _when("verified_at"), wide=True),
    Column("kept", "kept", _kept, raw=lambda r: bool(r.get("kept")), drop=4, wrap=True),
    Column("kept_by", "kept by", lambda r: r.get("kept_by"), wide=True),
    Column("kept_reason", "kept why", lambda r: r.get("kept_reason"), wide=True),
    Column("target", "target", lambda r: r.get("target"), wide=True),
]


def job_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """jobs: known keys first; any key another version adds shows in wide and tsv."""
    columns = [
        Column("name", "job", lambda r: r["name"], whole=True),
        Column("schedule", "schedule", lambda r: r["schedule"], whole=True),
        Column("next_run", "next run (UTC)", lambda r: human.when(r.get("next_run")) or "—", whole=True),
        Column("in", "in", lambda r: human.ago(r.get("next_run")), drop=3, human_only=True),
        Column(
            "last_status",
            "last",
            lambda r: (r.get("last_run") or {}).get("status") or "never",
            raw=lambda r: (r.get("last_run") or {}).get("status"),
            style=lambda r: STATUS_STYLE.get((r.get("last_run") or {}).get("status") or ""),
            drop=1,
        ),
        Column(
            "last_started_at",
            "last started",
            lambda r: human.ago((r.get("last_run") or {}).get("started_at")),
            raw=lambda r: (r.get("last_run") or {}).get("started_at"),
            drop=2,
        ),
        Column("description", "description", lambda r: r.get("description"), wide=True),
        Column("timezone", "timezone", lambda r: r.get("timezone"), wide=True),
        Column("scope", "scope", lambda r: r.get("scope"), drop=4),
    ]
    known = {"name", "schedule", "next_run", "last_run", "description", "timezone", "daemon", "scope"}
    extra = [k for k in (rows[0] if rows else {}) if k not in known]
    columns += [Column(k, k.replace("_", " "), _plain_getter(k), wide=True) for k in extra]
    if rows and "daemon" in rows[0]:
        columns.append(Column("daemon", "daemon", _daemon, raw=_daemon, wide=True))
    return columns


def _plain_getter(key: str):
    return lambda r: r.get(key)


def _daemon(r: dict[str, Any]) -> str:
    d = r.get("daemon")
    if not d:
        return ""
    return f"{d.get('host')}:{d.get('pid')}"


DOCTOR_MARK = {"ok": "green", "skip": "dim", "FAIL": "bold red"}


def doctor_mark(r: dict[str, Any]) -> str:
    return "skip" if r["ok"] and str(r["detail"]).startswith("skipped:") else "ok" if r["ok"] else "FAIL"


DOCTOR = [
    Column("check", "check", lambda r: r["check"], whole=True),
    Column("ok", "", doctor_mark, whole=True, style=lambda r: DOCTOR_MARK[doctor_mark(r)]),
    Column("detail", "detail", lambda r: r["detail"], wrap=True),
]

ORGS = [
    Column("organisation", "organisation", lambda r: r["organisation"], whole=True),
    Column(
        "sessions", "sessions", lambda r: human.count(r["sessions"]), raw=lambda r: r["sessions"], whole=True
    ),
]
