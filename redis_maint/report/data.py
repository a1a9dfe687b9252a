"""The facts of a report, from history rows: one plain dict, the JSON rendering as it is.

Everything here is a small adapter over rows as the history store has them. Columns and summary
keys that an older database (or an older run) lacks come out as None, which the renderings show as
"not recorded": a report over a range from before an upgrade still renders, and says what it cannot
prove.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from redis_maint.report.period import Period
from redis_maint.timeutil import as_utc, isoformat, parse_iso

# Jobs whose run is an ad hoc change an auditor asks about (manual sweeps too: they delete sessions).
AD_HOC_JOBS = ("session-delete", "backup-restore", "backup-keep", "backup-unkeep", "session-sweep")
DRILL_JOBS = ("backup-verify", "backup-check")
PROBLEM_STATUSES = ("failed", "missed", "skipped", "interrupted")
DEPTHS = ("restore-drill", "checksums")  # strongest first

# Calendar colours: what each means, in the legend of every rendering.
LEGEND = {
    "green": "a complete backup, checked by a restore drill",
    "amber": "a complete backup, checked by checksums only or not verified (yet)",
    "red": "no complete backup: none taken, or it failed (its backup, its verification, or it is missing or changed on the target)",
}


@dataclass
class Inputs:
    """What the report is built from: the job reads these from the history store and settings."""

    period: Period
    generated_at: datetime
    instance: str
    rpo_s: int
    runs: list[dict[str, Any]]  # runs in the period, oldest first
    backups: list[dict[str, Any]]  # catalog rows created in the period, oldest first
    prior_backup: dict[str, Any] | None  # the newest once-complete backup before the period
    verifications: list[dict[str, Any]]  # backup-verify/backup-check runs from the period's start on
    settings: dict[str, Any]  # the settings in force, masked
    audit_verify: dict[str, Any] | None = None  # the hash chain's verification, when this version has it
    backups_check: dict[str, Any] | None = None  # the last `backups check` run, when there is one
    run_id: int | None = None  # the report's own run
    requested_by: str | None = None
    os_user: str | None = None
    host: str | None = None
    version: str | None = None
    exclude_run_ids: set[int] = field(default_factory=set)


def build(inputs: Inputs) -> dict[str, Any]:
    p = inputs.period
    runs = [r for r in inputs.runs if r["id"] not in inputs.exclude_run_ids]
    verified = verification_by_backup(inputs.verifications, inputs.backups)
    calendar = calendar_days(p, inputs.backups, verified)
    rpo = rpo_compliance(p, inputs.backups, inputs.prior_backup, inputs.rpo_s, inputs.generated_at)
    drills = [restore_drill(r) for r in runs if is_drill(r)]
    problems = [problem_run(r) for r in runs if r["status"] in PROBLEM_STATUSES]
    ad_hoc = [ad_hoc_run(r) for r in runs if is_ad_hoc(r)]
    empty = not runs and not inputs.backups
    zone = "UTC" + (" (dates and times given without a timezone were read as UTC)" if p.zone_assumed else "")
    report = {
        "title": f"Backup evidence for {inputs.instance}",
        "instance": inputs.instance,
        "from": isoformat(p.start),
        "to": isoformat(p.end),
        "end_included": False,
        "days": len(calendar),
        "timezone": "UTC",
        "zone_note": zone,
        "zone_assumed": p.zone_assumed,
        "generated_at": isoformat(inputs.generated_at),
        "run_id": inputs.run_id,
        "requested_by": inputs.requested_by,
        "os_user": inputs.os_user,
        "host": inputs.host,
        "version": inputs.version,
        "empty": empty,
        "message": empty_message(p) if empty else None,
    }
    return {
        "report": report,
        "counts": {
            "runs": len(runs),
            "backups": len(inputs.backups),
            "complete_backups": sum(1 for b in inputs.backups if once_complete(b)),
            "restore_drills": len(drills),
            "problem_runs": len(problems),
            # A row that counts many missed slots (past the daemon's bound) counts as all of them.
            "missed_slots": sum(p["missed_slots"] or 1 for p in problems if p["status"] == "missed"),
            "ad_hoc": len(ad_hoc),
            "calendar": dict(Counter(d["status"] for d in calendar)),
        },
        "legend": LEGEND,
        "calendar": calendar,
        "rpo": rpo,
        "restore_drills": drills,
        "problem_runs": problems,
        "ad_hoc": ad_hoc,
        "integrity": {"audit_verify": inputs.audit_verify, "backups_check": inputs.backups_check},
        "config_hashes": config_hashes(runs),
        "settings": flatten(inputs.settings),
    }


def empty_message(p: Period) -> str:
    return (
        f"Nothing was recorded from {isoformat(p.start)} to {isoformat(p.end)} (UTC): "
        "no run and no backup in this range."
    )


# -- verification -----------------------------------------------------------------------------


def verification_by_backup(
    verification_runs: list[dict[str, Any]], backups: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """backup id -> {depth: strongest passed depth or None, failed: [depths that failed], runs: [ids]}.

    From the catalog's `verified` events when they say how deep they went, and from the runs of
    backup-verify (a restore drill) and backup-check (checksums, or a restore drill with --deep).
    """
    out: dict[str, dict[str, Any]] = {}

    def note(backup_id: Any, depth: str, ok: bool, run_id: Any) -> None:
        if not backup_id:
            return
        entry = out.setdefault(str(backup_id), {"depth": None, "failed": [], "runs": []})
        if run_id is not None and run_id not in entry["runs"]:
            entry["runs"].append(run_id)
        if not ok:
            entry["failed"].append(depth)
        elif entry["depth"] is None or DEPTHS.index(depth) < DEPTHS.index(entry["depth"]):
            entry["depth"] = depth

    for run in verification_runs:
        summary = run.get("summary") or {}
        if summary.get("dry_run") or run["status"] not in ("succeeded", "failed"):
            continue
        backup_id = summary.get("backup_id") or summary.get("id")
        depth = run_depth(run)
        note(backup_id, depth, run["status"] == "succeeded", run["id"])
    for backup in backups:
        for event in backup.get("events") or []:
            if event.get("event") != "verified" or event.get("depth") not in DEPTHS:
                continue
            ok = event.get("ok")
            if ok is None:
                ok = str(event.get("detail", "")).startswith("ok")
            note(backup["id"], event["depth"], bool(ok), event.get("run_id"))
    return out


def run_depth(run: dict[str, Any]) -> str:
    """How deep a verification run went: the weekly drill and `verify --deep` load the backup."""
    summary = run.get("summary") or {}
    if summary.get("depth") in DEPTHS:
        return summary["depth"]
    if run["job"] == "backup-verify":
        return "restore-drill"
    params = summary.get("params") or {}
    return "restore-drill" if params.get("deep") or summary.get("deep") else "checksums"


# -- calendar ---------------------------------------------------------------------------------


def once_complete(backup: dict[str, Any]) -> bool:
    return backup.get("completed_at") is not None and backup["status"] in (
        "complete",
        "pruned",
        "missing",
        "changed",
    )


def backup_view(backup: dict[str, Any], verified: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One backup as the calendar sees it: good (complete, not failed since), depth, why not."""
    v = verified.get(backup["id"], {"depth": None, "failed": [], "runs": []})
    status = backup["status"]
    good = once_complete(backup) and status not in ("missing", "changed")
    if good and v["failed"] and v["depth"] is None:
        good = False  # every verification it had failed
    if not once_complete(backup):
        why = f"{status}" + (f": {backup['error']}" if backup.get("error") else "")
    elif status in ("missing", "changed"):
        why = f"{status} on the target (backups check)"
    elif not good:
        why = f"verification failed ({', '.join(v['failed'])})"
    else:
        why = None
    return {
        "id": backup["id"],
        "created_at": isoformat(backup["created_at"]),
        "status": status,
        "good": good,
        "verification": v["depth"] or ("failed" if v["failed"] else "none"),
        "verify_runs": v["runs"],
        "problem": why,
        "size": backup.get("size"),
    }


def calendar_days(
    p: Period, backups: list[dict[str, Any]], verified: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    by_day: dict[date, list[dict[str, Any]]] = {}
    for backup in backups:
        by_day.setdefault(as_utc(backup["created_at"]).date(), []).append(backup_view(backup, verified))
    days = []
    for day in p.days():
        views = by_day.get(day, [])
        good = [v for v in views if v["good"]]
        drilled = [v for v in good if v["verification"] == "restore-drill"]
        if drilled:
            status, best = "green", drilled[-1]
        elif good:
            status, best = "amber", good[-1]
        else:
            status, best = "red", None
        days.append(
            {
                "date": day.isoformat(),
                "status": status,
                "backup_id": best["id"] if best else None,
                "verification": best["verification"] if best else None,
                "backups": views,
                "tooltip": day_tooltip(day, status, best, views),
            }
        )
    return days


def day_tooltip(day: date, status: str, best: dict[str, Any] | None, views: list[dict[str, Any]]) -> str:
    head = f"{day.isoformat()} (UTC): "
    if best is None:
        head += "no complete backup"
    elif status == "green":
        head += f"backup {best['id']} checked by a restore drill"
    elif best["verification"] == "checksums":
        head += f"backup {best['id']} checked by checksums only"
    else:
        head += f"backup {best['id']} complete, not verified"
    others = [
        f"{v['id']}: {v['problem'] or v['status'] + ', ' + v['verification']}"
        for v in views
        if best is None or v["id"] != best["id"]
    ]
    return head + ("; also " + "; ".join(others) if others else "")


# -- RPO ----------------------------------------------------------------------------------------


def rpo_compliance(
    p: Period,
    backups: list[dict[str, Any]],
    prior: dict[str, Any] | None,
    rpo_s: int,
    now: datetime,
) -> dict[str, Any]:
    """Gaps between consecutive complete backups (from the last one before the range, up to the end
    of the range or now, whichever is earlier), the largest, and every one over the RPO."""
    points: list[tuple[datetime, str | None]] = []
    if prior is not None:
        points.append((as_utc(prior["created_at"]), prior["id"]))
    else:
        points.append((p.start, None))  # no complete backup before: the gap runs from the start
    points += [(as_utc(b["created_at"]), b["id"]) for b in backups if once_complete(b)]
    end = min(p.end, now)
    gaps = []
    for (t0, id0), (t1, id1) in zip(points, [*points[1:], (end, None)], strict=True):
        if t1 <= t0 or t1 <= p.start:
            continue
        gaps.append(
            {
                "from": isoformat(t0),
                "to": isoformat(t1),
                "from_backup": id0,
                "to_backup": id1,
                "gap_s": int((t1 - t0).total_seconds()),
                "open": id1 is None,  # runs to the end of the range (or now): no later backup yet
            }
        )
    largest = max(gaps, key=lambda g: g["gap_s"], default=None)
    over = [g for g in gaps if g["gap_s"] > rpo_s]
    return {
        "rpo_s": rpo_s,
        "largest_gap_s": None if largest is None else largest["gap_s"],
        "largest_gap": largest,
        "over_rpo": over,
        "compliant": not over,
        "complete_backups": len(points) - 1,  # in the range (the first point is before it)
        "measured_until": isoformat(end),
    }


# -- runs -----------------------------------------------------------------------------------------


def _who(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "requested_by": run.get("requested_by"),
        "os_user": run.get("os_user"),  # recorded from the OS by newer versions
        "host": run.get("host"),
    }


def _run_head(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["id"],
        "job": run["job"],
        "trigger": run.get("trigger"),
        "status": run["status"],
        "started_at": isoformat(run["started_at"]),
        "finished_at": isoformat(run.get("finished_at")),
        **_who(run),
        "config_hash": run.get("config_hash"),
    }


def is_drill(run: dict[str, Any]) -> bool:
    summary = run.get("summary") or {}
    if run["job"] not in DRILL_JOBS or summary.get("dry_run") or run["status"] not in ("succeeded", "failed"):
        return False
    return run_depth(run) == "restore-drill"


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def restore_drill(run: dict[str, Any]) -> dict[str, Any]:
    """A drill with its RTO parts: from the `rto` block newer versions record, else from the drill's
    own figures (download and load times inside `deep`)."""
    s = run.get("summary") or {}
    deep = s.get("deep") if isinstance(s.get("deep"), dict) else {}
    server = deep.get("server") if isinstance(deep.get("server"), dict) else {}
    rto = s.get("rto") if isinstance(s.get("rto"), dict) else {}
    keys = _first(rto.get("keys"), s.get("keys"))
    keys = keys if isinstance(keys, dict) else {}
    return {
        **_run_head(run),
        "backup_id": s.get("backup_id") or s.get("id"),
        "ok": s.get("ok", run["status"] == "succeeded"),
        "download_s": _first(rto.get("download_s"), s.get("download_s"), deep.get("download_s")),
        "load_s": _first(rto.get("load_s"), s.get("load_s"), server.get("load_s")),
        "total_s": _first(rto.get("total_s"), s.get("total_s")),
        "keys_source": _first(keys.get("source"), s.get("source_keys"), deep.get("source_keys")),
        "keys_loaded": _first(keys.get("loaded"), server.get("keys")),
        "keys_expired": keys.get("expired"),
        "keys_missing": keys.get("missing"),
        "error": run.get("error"),
    }


def problem_run(run: dict[str, Any]) -> dict[str, Any]:
    s = run.get("summary") or {}
    return {
        **_run_head(run),
        "scheduled_for": isoformat(parse_iso(run.get("scheduled_for"))),
        "missed_slots": s.get("missed_slots") or s.get("slots"),
        "error": run.get("error"),
    }


def is_ad_hoc(run: dict[str, Any]) -> bool:
    if run["job"] not in AD_HOC_JOBS or run["status"] in ("missed",):
        return False
    return run["job"] != "session-sweep" or run.get("trigger") == "manual"


def sessions_removed(summary: dict[str, Any]) -> int | None:
    deleted = summary.get("deleted")
    if isinstance(deleted, dict):
        return sum(v for v in deleted.values() if isinstance(v, int))
    return None


def ad_hoc_run(run: dict[str, Any]) -> dict[str, Any]:
    s = run.get("summary") or {}
    params = s.get("params") or {}
    dry = bool(s.get("dry_run"))
    removed = sessions_removed(s)
    return {
        **_run_head(run),
        "what": describe_operation(run["job"], s, params),
        "sessions_removed": 0 if dry and removed is not None else removed,
        "would_remove": removed if dry else None,
        "dry_run": dry,
        "error": run.get("error"),
    }


def describe_operation(job: str, s: dict[str, Any], params: dict[str, Any]) -> str:
    if job == "session-delete":
        if params.get("all"):
            what = "delete every session"
        elif params.get("no_org"):
            what = "delete the sessions without an organisation"
        elif params.get("org") is not None:
            what = f"delete the sessions of organisation {params['org']}"
        else:
            what = "delete sessions"
    elif job == "session-sweep":
        older = params.get("older_than")
        what = "sweep stale sessions" + (f" older than {older}" if older else "")
        if params.get("delete_unreadable"):
            what += ", unreadable ones too"
    elif job == "backup-restore":
        where = params.get("directory") or s.get("directory") or s.get("target_dir")
        what = f"restore backup {params.get('backup_id') or s.get('backup_id') or s.get('id')}"
        what += f" into {where}" if where else ""
        what += " (--force)" if params.get("force") else ""
    else:  # keep / unkeep
        verb = "keep" if job == "backup-keep" else "unkeep"
        what = f"{verb} backup {s.get('backup_id') or params.get('backup_id')}"
        if s.get("reason"):
            what += f": {s['reason']}"
    return what + (" (dry run)" if s.get("dry_run") else "")


def config_hashes(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each config hash the runs recorded, with how many runs and when first and last (None: runs
    from before config hashes were recorded)."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run.get("config_hash"), []).append(run)
    out = []
    for value, members in groups.items():
        out.append(
            {
                "config_hash": value,
                "runs": len(members),
                "first_run": members[0]["id"],
                "last_run": members[-1]["id"],
                "first_at": isoformat(members[0]["started_at"]),
                "last_at": isoformat(members[-1]["started_at"]),
            }
        )
    return sorted(out, key=lambda g: g["first_at"] or "")


def flatten(settings: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """[{key, value}] with dotted keys, in the settings' own order (values as JSON has them, masked)."""
    out = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += flatten(value, name + ".")
        else:
            out.append({"key": name, "value": value})
    return out


def duration_text(seconds: float | None) -> str:
    """`45s`, `12m 30s`, `26h 00m`, `168h 00m (7.0 days)`: gaps and RPOs in hours, as RPOs are set."""
    if seconds is None:
        return "not recorded"
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{seconds:.0f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    text = f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return text + (f" ({whole / 86400:.1f} days)" if whole >= 2 * 86400 else "")
