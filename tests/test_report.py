"""`redis-maint report`: the auditor's page renders in a real headless Chromium (one calendar cell per
day, no console error, nothing hostile executed), and the CSV and JSON hold the same facts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

import pytest

from tests.support.builders.evidence import FORMULA, HOSTILE, build_week
from tests.support.chromium import png_facts, print_to_pdf, render_page
from tests.support.common import json_out
from tests.support.history import current_store

WEEK = ("--from", "2026-11-02", "--to", "2026-11-08")
EXPECTED_COLOURS = {
    "2026-11-02": "green",  # complete, restore drill
    "2026-11-03": "amber",  # checksums only
    "2026-11-04": "red",  # failed
    "2026-11-05": "red",  # none (missed)
    "2026-11-06": "amber",  # complete, never verified
    "2026-11-07": "green",  # backups verify --deep
    "2026-11-08": "red",  # none
}
PASSWORD = "s3cr3t-pa55"


@pytest.fixture
def week(monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://maint:{PASSWORD}@127.0.0.1:6390/0")
    return build_week(current_store())


def report_json(cli, *args: str) -> dict:
    result = cli("report", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_html_report_renders_in_headless_chromium_with_one_cell_per_day(cli, week, tmp_path):
    page = tmp_path / "report.html"
    result = cli("report", *WEEK, "--out", str(page), "--as", "auditor")
    assert result.exit_code == 0, result.output
    html = page.read_text()

    rendered = render_page(page, tmp_path / "chromium")

    assert rendered.console == [], rendered.log[-3000:]
    width, height, distinct = png_facts(rendered.png)
    assert (width, height) == (1280, 2000)
    assert distinct > 50, "the screenshot is blank"
    cells = re.findall(r'<rect class="day (\w+)" data-date="([\d-]+)"', rendered.dom)
    assert {day: colour for colour, day in cells} == EXPECTED_COLOURS
    assert len(cells) == 7
    # Every cell has its tooltip, after the browser parsed it.
    assert rendered.dom.count("<title>2026-11-") == 7
    # Self-contained: no script, nothing fetched; the hostile requester is text, not markup.
    assert "<script" not in rendered.dom and "<script" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "<img" not in rendered.dom
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "@media print" in html and "@page" in html
    pdf = print_to_pdf(page, tmp_path / "chromium")
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 2  # pages, printed
    # The sections an auditor asks for.
    for section in ("calendar", "rpo", "drills", "problems", "ad-hoc", "integrity", "config"):
        assert f'<section id="{section}">' in html
    assert PASSWORD not in html
    # The report is a run, and its row holds the sha256 of what was handed over.
    run = current_store().last("audit-report")
    assert run.status == "succeeded" and run.requested_by == "auditor"
    assert run.summary["sha256"] == hashlib.sha256(page.read_bytes()).hexdigest()
    assert run.summary["params"]["from"] == "2026-11-02"
    assert f"run {run.id} of audit-report" in html


def test_the_console_check_catches_a_page_that_logs_an_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>t</title><script>console.error('boom'); nosuch();</script>")
    rendered = render_page(page, tmp_path / "chromium", screenshot=False)
    assert any("boom" in line for line in rendered.console)
    assert any("Uncaught" in line for line in rendered.console)


def test_the_json_report_holds_the_calendar_rpo_drills_problems_and_ad_hoc_runs(cli, week):
    data = report_json(cli, *WEEK)

    assert {d["date"]: d["status"] for d in data["calendar"]} == EXPECTED_COLOURS
    by_day = {d["date"]: d for d in data["calendar"]}
    assert by_day["2026-11-03"]["verification"] == "checksums"
    assert by_day["2026-11-06"]["verification"] == "none"
    assert "failed" in by_day["2026-11-04"]["tooltip"]

    rpo = data["rpo"]
    assert rpo["rpo_s"] == 26 * 3600 and rpo["compliant"] is False
    assert rpo["largest_gap_s"] == 72 * 3600  # 11-03 03:00 to 11-06 03:00 (11-04 failed, 11-05 none)
    assert [(g["from_backup"], g["gap_s"] // 3600) for g in rpo["over_rpo"]] == [
        (week.backups["10-31"], 48),
        (week.backups["11-03"], 72),
        (week.backups["11-07"], 45),  # open: to the end of the range
    ]
    assert rpo["over_rpo"][-1]["open"] is True

    drills = {d["run_id"]: d for d in data["restore_drills"]}
    assert set(drills) == {week.runs["drill"], week.runs["deep"]}  # not the checksum-only check
    assert drills[week.runs["drill"]]["download_s"] == 1.25
    assert drills[week.runs["drill"]]["load_s"] == 0.75
    assert drills[week.runs["deep"]]["keys_loaded"] == 2000

    problems = {p["run_id"]: p["status"] for p in data["problem_runs"]}
    assert problems == {
        week.runs["failed"]: "failed",
        week.runs["missed"]: "missed",
        week.runs["skipped"]: "skipped",
        week.runs["interrupted"]: "interrupted",
    }

    assert data["counts"]["missed_slots"] == 1

    ad_hoc = {a["run_id"]: a for a in data["ad_hoc"]}
    assert set(ad_hoc) == {week.runs["delete"], week.runs["keep"], week.runs["restore"]}
    delete = ad_hoc[week.runs["delete"]]
    assert delete["requested_by"] == HOSTILE and delete["sessions_removed"] == 12
    assert delete["what"] == "delete the sessions of organisation org-7"
    assert "/srv/restore" in ad_hoc[week.runs["restore"]]["what"]

    assert data["report"]["empty"] is False and data["report"]["days"] == 7
    settings = {s["key"]: s["value"] for s in data["settings"]}
    assert "jobs.backup_age.rpo" in settings
    assert PASSWORD not in json.dumps(data)
    assert "***" in settings["redis_url"]
    # Runs from before config hashes were recorded are grouped as such, not dropped.
    assert sum(h["runs"] for h in data["config_hashes"]) == data["counts"]["runs"]


def test_the_csv_report_is_one_file_with_a_section_column_and_no_live_formulas(cli, week):
    result = cli("report", *WEEK, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))

    sections = [r["section"] for r in rows]
    assert list(dict.fromkeys(sections))[:3] == ["report", "calendar", "rpo"]
    assert {"restore_drill", "problem_run", "ad_hoc", "integrity", "config_hash", "setting"} <= set(sections)
    calendar = [r for r in rows if r["section"] == "calendar"]
    assert {r["date"]: r["status"] for r in calendar} == EXPECTED_COLOURS
    keep = next(r for r in rows if r["section"] == "ad_hoc" and r["job"] == "backup-keep")
    assert keep["requested_by"] == "'" + FORMULA  # a spreadsheet shows it, never runs it
    assert all(not v.startswith("=") for r in rows for v in r.values())
    assert len({len(r) for r in rows}) == 1


def test_an_empty_range_says_there_is_nothing_in_it(cli, week, tmp_path):
    page = tmp_path / "empty.html"
    result = cli("report", "--from", "2025-01-01", "--to", "2025-01-03", "--out", str(page))
    assert result.exit_code == 0, result.output
    assert "Nothing was recorded from 2025-01-01T00:00:00Z to 2025-01-04T00:00:00Z" in result.stdout
    assert 'id="empty"' in page.read_text()
    data = report_json(cli, "--from", "2025-01-01", "--to", "2025-01-03")
    assert data["report"]["empty"] is True and data["counts"]["runs"] == 0
    assert len(data["calendar"]) == 3


def test_dates_without_a_timezone_are_utc_and_the_output_says_so(cli, week):
    data = report_json(cli, "--from", "2026-11-02T00:00", "--to", "2026-11-03T00:00+01:00")
    assert (data["report"]["from"], data["report"]["to"]) == ("2026-11-02T00:00:00Z", "2026-11-02T23:00:00Z")
    assert data["report"]["zone_assumed"] is True
    assert "read as UTC" in data["report"]["zone_note"]

    result = cli("report", "--from", "2026-11-02", "--to", "2026-11-02")
    assert result.exit_code == 0
    assert "Dates and times given without a timezone were read as UTC" in result.stdout
    assert "dates without a timezone were read as UTC" in result.stderr

    zoned = report_json(cli, "--from", "2026-11-02T00:00Z", "--to", "2026-11-03T00:00Z")
    assert zoned["report"]["zone_assumed"] is False
    assert [d["date"] for d in zoned["calendar"]] == ["2026-11-02"]


@pytest.mark.parametrize(
    "args, says",
    [
        (("--from", "2026-11-08", "--to", "2026-11-02"), "must be after --from"),
        (("--from", "yesterday", "--to", "2026-11-02"), "is not an ISO date or datetime"),
        (("--from", "2000-01-01", "--to", "2026-11-02"), "split it into several reports"),
    ],
)
def test_a_bad_range_exits_2_and_records_nothing(cli, args, says):
    result = cli("report", *args)
    assert result.exit_code == 2
    assert says in result.stderr and "Traceback" not in result.output
    assert current_store().last("audit-report") is None


def test_a_real_backup_checked_by_checksums_shows_amber_today_with_the_last_backups_check(
    cli, redis_server, backup_env
):
    from redis_maint.timeutil import utcnow

    assert cli("run", "backup", "--json").exit_code == 0
    backup_id = json_out(cli("backups", "list", "--json"))[0]["id"]
    assert cli("backups", "verify", backup_id, "--json").exit_code == 0
    assert cli("backups", "check", "--json").exit_code == 0
    today = utcnow().date().isoformat()

    data = report_json(cli, "--from", today, "--to", today)

    assert [(d["date"], d["status"], d["backup_id"]) for d in data["calendar"]] == [
        (today, "amber", backup_id)
    ]
    assert data["calendar"][0]["verification"] == "checksums"
    assert data["restore_drills"] == []
    largest = data["rpo"]["largest_gap"]  # from the start of today to it, or from it to now
    assert backup_id in (largest["from_backup"], largest["to_backup"])
    assert data["rpo"]["compliant"] is True  # no gap can be over 26h within one day
    check = data["integrity"]["backups_check"]
    assert (check["job"], check["status"], check["checked"], check["missing"]) == (
        "backup-reconcile",
        "succeeded",
        1,
        [],
    )


def test_the_report_shows_audit_verify_and_names_a_tampered_history(cli, week, tmp_path):
    import sqlite3

    pytest.importorskip("redis_maint.audit.check")
    before = report_json(cli, *WEEK)["integrity"]["audit_verify"]
    assert before["intact"] is True and len(before["head_hash"]) == 64

    db_path = current_store().engine.url.database
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE runs SET requested_by = 'mallory' WHERE id = ?", (week.runs["delete"],))
    page = tmp_path / "tampered.html"
    assert cli("report", *WEEK, "--out", str(page)).exit_code == 0

    after = report_json(cli, *WEEK)["integrity"]["audit_verify"]
    assert after["intact"] is False
    assert any(b["how"] == "edited" for b in after["breaks"])
    assert "NOT intact" in page.read_text()


def test_verified_events_with_a_depth_rto_blocks_and_dry_runs_are_read_as_recorded():
    from datetime import UTC, datetime

    from redis_maint.report import data
    from redis_maint.report.period import period

    created = datetime(2026, 11, 2, 3, tzinfo=UTC)
    backup = {
        "id": "b1",
        "created_at": created,
        "completed_at": created,
        "status": "complete",
        "events": [
            {"at": "2026-11-02T05:00:00Z", "event": "verified", "detail": "ok", "depth": "restore-drill"}
        ],
    }
    verified = data.verification_by_backup([], [backup])
    assert verified["b1"]["depth"] == "restore-drill"
    days = data.calendar_days(period("2026-11-02", "2026-11-02"), [backup], verified)
    assert days[0]["status"] == "green"
    # A failed check only: the backup is not counted as good.
    failed = {**backup, "events": [{"event": "verified", "detail": "FAILED: x", "depth": "checksums"}]}
    assert (
        data.calendar_days(
            period("2026-11-02", "2026-11-02"), [failed], data.verification_by_backup([], [failed])
        )[0]["status"]
        == "red"
    )

    drill = {
        "id": 5,
        "job": "backup-verify",
        "status": "succeeded",
        "started_at": created,
        "summary": {
            "backup_id": "b1",
            "ok": True,
            "rto": {"download_s": 2.0, "load_s": 3.0, "total_s": 6.5},
            "keys": {"source": 10, "loaded": 8, "expired": 2, "missing": 0},
        },
    }
    row = data.restore_drill(drill)
    assert (row["download_s"], row["load_s"], row["total_s"]) == (2.0, 3.0, 6.5)
    assert (row["keys_source"], row["keys_loaded"], row["keys_expired"], row["keys_missing"]) == (10, 8, 2, 0)

    dry = {
        "id": 6,
        "job": "session-delete",
        "trigger": "manual",
        "status": "succeeded",
        "started_at": created,
        "summary": {"dry_run": True, "deleted": {"organisation": 4}, "params": {"all": True}},
    }
    assert data.is_ad_hoc(dry)
    row = data.ad_hoc_run(dry)
    assert (row["sessions_removed"], row["would_remove"]) == (0, 4)
    assert row["what"] == "delete every session (dry run)"
