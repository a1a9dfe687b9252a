"""The report as one CSV file: a row per fact, with a `section` column saying which part of the
report it belongs to, and the same columns on every row (empty where a column does not apply).

Sections, in order: report (key/value), calendar (one row per day), rpo (key/value), rpo_gap
(each gap over the RPO), restore_drill, problem_run, ad_hoc, integrity (key/value), config_hash,
setting (key/value, masked). A text cell that a spreadsheet would run as a formula (it starts with
= + - @, a tab or a carriage return) is prefixed with a single quote: requesters and reasons are
user input.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

COLUMNS = (
    "section",
    "date",
    "at",
    "run_id",
    "job",
    "trigger",
    "status",
    "backup_id",
    "requested_by",
    "os_user",
    "host",
    "what",
    "sessions_removed",
    "download_s",
    "load_s",
    "total_s",
    "keys_source",
    "keys_loaded",
    "keys_expired",
    "keys_missing",
    "gap_s",
    "config_hash",
    "key",
    "value",
    "detail",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows(data):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    report = data["report"]
    for key in ("title", "instance", "from", "to", "days", "timezone", "zone_note", "generated_at"):
        out.append({"section": "report", "key": key, "value": report[key]})
    for key in ("run_id", "requested_by", "os_user", "host", "version", "empty", "message"):
        out.append({"section": "report", "key": key, "value": report.get(key)})
    for day in data["calendar"]:
        out.append(
            {
                "section": "calendar",
                "date": day["date"],
                "status": day["status"],
                "backup_id": day["backup_id"],
                "value": day["verification"],
                "detail": day["tooltip"],
            }
        )
    rpo = data["rpo"]
    for key in ("rpo_s", "largest_gap_s", "compliant", "complete_backups", "measured_until"):
        out.append({"section": "rpo", "key": key, "value": rpo[key]})
    for gap in rpo["over_rpo"]:
        out.append(
            {
                "section": "rpo_gap",
                "at": gap["from"],
                "backup_id": gap["from_backup"],
                "gap_s": gap["gap_s"],
                "value": gap["to_backup"],
                "detail": f"until {gap['to']}" + (" (no later backup)" if gap["open"] else ""),
            }
        )
    for d in data["restore_drills"]:
        out.append({"section": "restore_drill", **_run(d), "detail": d.get("error")})
    for p in data["problem_runs"]:
        out.append(
            {"section": "problem_run", **_run(p), "value": p.get("scheduled_for"), "detail": p["error"]}
        )
    for a in data["ad_hoc"]:
        out.append(
            {
                "section": "ad_hoc",
                **_run(a),
                "what": a["what"],
                "sessions_removed": a["sessions_removed"],
                "value": "dry run" if a["dry_run"] else None,
                "detail": a.get("error"),
            }
        )
    for name, result in data["integrity"].items():
        if result is None:
            out.append({"section": "integrity", "key": name, "value": "not recorded"})
            continue
        for key, value in result.items():
            out.append({"section": "integrity", "key": f"{name}.{key}", "value": value})
    for h in data["config_hashes"]:
        out.append(
            {
                "section": "config_hash",
                "config_hash": h["config_hash"] or "not recorded",
                "run_id": h["first_run"],
                "at": h["first_at"],
                "value": h["runs"],
                "detail": f"runs {h['first_run']} to {h['last_run']}, last at {h['last_at']}",
            }
        )
    for s in data["settings"]:
        out.append({"section": "setting", "key": s["key"], "value": s["value"]})
    return out


def _run(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "run_id",
        "job",
        "trigger",
        "status",
        "backup_id",
        "requested_by",
        "os_user",
        "host",
        "config_hash",
    )
    keys += ("download_s", "load_s", "total_s", "keys_source", "keys_loaded", "keys_expired", "keys_missing")
    return {"at": row["started_at"], **{k: row.get(k) for k in keys}}


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
