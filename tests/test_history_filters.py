"""`history` for auditors: --since/--until as ISO dates, times (no zone = UTC) or
durations ago, --trigger, --by, repeatable --status, --dry-run/--no-dry-run, "showing 50 of 58" and
--all, dry runs marked in the table, and a CSV with the common summary figures in flat columns.

The runs are written through the history store's own functions into a real SQLite file, at the times
they would have happened; the CSV's figures come from real runs of the jobs on a real redis-server."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from redis_maint.history import db
from redis_maint.history.runs import RUN_FIELDS, RunStatus
from redis_maint.provenance import os_user
from redis_maint.timeutil import utcnow
from tests.support.builders.evidence import run_at
from tests.support.builders.sessions import seed
from tests.support.common import json_out
from tests.support.history import current_store

NOV30 = datetime(2026, 11, 30, tzinfo=UTC)


def ids(result) -> list[int]:
    assert result.exit_code == 0, result.output
    return [r["id"] for r in json.loads(result.stdout)]


@pytest.fixture
def week():
    """Runs around 2026-11-30: who, how, status and dry runs vary; returns name -> run id."""
    store = current_store()
    plan = {
        "nov29-late": (NOV30 - timedelta(hours=2), "health", RunStatus.SUCCEEDED, "scheduled", "daemon", {}),
        "nov30-early": (NOV30 + timedelta(hours=3), "backup", RunStatus.SUCCEEDED, "scheduled", "daemon", {}),
        "nov30-dry": (NOV30 + timedelta(hours=9), "session-sweep", RunStatus.SUCCEEDED, "manual", "alice", {"dry_run": True}),
        "nov30-21h": (NOV30 + timedelta(hours=21), "session-delete", RunStatus.SUCCEEDED, "manual", "bob", {}),
        "nov30-2130": (NOV30 + timedelta(hours=21, minutes=30), "health", RunStatus.FAILED, "catch-up", "daemon", {}),
        "dec01": (NOV30 + timedelta(days=1, hours=1), "backup", RunStatus.MISSED, "scheduled", "daemon", {}),
    }  # fmt: skip
    return {
        name: run_at(store, when, job, status, summary, trigger=trigger, requested_by=who)
        for name, (when, job, status, trigger, who, summary) in plan.items()
    }


def test_since_and_until_take_dates_times_and_zones(cli, week):
    # A date is a whole day: --until 2026-11-30 takes in 23:59 of that day, --since starts at 00:00.
    assert ids(cli("history", "--since", "2026-11-30", "--until", "2026-11-30", "--json")) == [
        week["nov30-2130"],
        week["nov30-21h"],
        week["nov30-dry"],
        week["nov30-early"],
    ]
    # A time without a zone is UTC; --since includes its instant, --until too.
    assert ids(cli("history", "--since", "2026-11-30T21:00", "--until", "2026-11-30T21:30", "--json")) == [
        week["nov30-2130"],
        week["nov30-21h"],
    ]
    # With a zone: 22:00+01:00 is 21:00 UTC; Z and a space instead of T work too.
    zoned = ids(cli("history", "--since", "2026-11-30T22:00+01:00", "--json"))
    assert zoned == ids(cli("history", "--since", "2026-11-30 21:00Z", "--json"))
    assert zoned == [week["dec01"], week["nov30-2130"], week["nov30-21h"]]


def test_since_as_a_duration_ago_still_works(cli, week):
    recent = run_at(current_store(), utcnow() - timedelta(hours=1), "health", RunStatus.SUCCEEDED, {})
    assert ids(cli("history", "--since", "12h", "--json")) == [recent]
    assert ids(cli("history", "--until", "12h", "--since", "2026-12-01", "--json")) == [week["dec01"]]


def test_trigger_by_status_and_dry_run_filters(cli, week):
    assert ids(cli("history", "--trigger", "manual", "--json")) == [week["nov30-21h"], week["nov30-dry"]]
    assert ids(cli("history", "--trigger", "catch-up", "--json")) == [week["nov30-2130"]]
    assert ids(cli("history", "--by", "alice", "--json")) == [week["nov30-dry"]]
    assert ids(cli("history", "--status", "failed", "--status", "missed", "--json")) == [
        week["dec01"],
        week["nov30-2130"],
    ]
    assert ids(cli("history", "--dry-run", "--json")) == [week["nov30-dry"]]
    real = ids(cli("history", "--no-dry-run", "--json"))
    assert week["nov30-dry"] not in real and len(real) == len(week) - 1
    assert ids(cli("history", "--by", "bob", "--trigger", "manual", "--no-dry-run", "--json")) == [
        week["nov30-21h"]
    ]


def test_by_also_matches_the_os_user_that_wrote_the_row(cli, week):
    if "os_user" not in db.runs.c:
        pytest.skip("the history has no os_user column yet")
    # Every row here was written by this process: the claim says daemon/alice/bob, the OS says who ran it.
    assert sorted(ids(cli("history", "--by", os_user(), "--json"))) == sorted(week.values())
    assert ids(cli("history", "--by", "nobody-at-all", "--json")) == []


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--since", "yesterday"), "--since"),
        (("--until", "2026-13-01"), "--until"),
        (("--since", "2026-11-30T25:00"), "--since"),
        (("--until", "2"), "--until"),
        (("--since", "0s"), "--since"),
    ],
)
def test_a_bad_time_exits_2_naming_the_flag_and_an_example(cli_process, args, flag):
    result = cli_process("history", *args, "--json")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert flag in result.stderr and "2026-11-30" in result.stderr and "7d" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_range_that_ends_before_it_starts_or_a_bad_choice_exits_2(cli):
    backwards = cli("history", "--since", "2026-12-01", "--until", "2026-11-30")
    assert (
        backwards.exit_code == 2 and "--since 2026-12-01 is not before --until 2026-11-30" in backwards.output
    )
    assert cli("history", "--trigger", "cron").exit_code == 2
    assert cli("history", "--all", "--limit", "5").exit_code == 2


def test_the_table_says_what_it_cut_and_all_shows_everything(cli, week):
    store = current_store()
    for _ in range(58 - len(week)):
        store.record(
            "health", "scheduled", RunStatus.SUCCEEDED, requested_by="daemon", summary={"level": "ok"}
        )
    table = cli("history", "-o", "table").stdout.splitlines()
    assert table[-1] == "showing 50 of 58 runs; --all shows every one"
    assert len(table) == 1 + 50 + 1
    everything = cli("history", "-o", "table", "--all").stdout.splitlines()
    assert len(everything) == 1 + 58 and not any(line.startswith("showing") for line in everything)
    assert "showing" not in cli("history", "-o", "table", "--limit", "58").stdout
    # --json stays a plain list, cut or not; tsv has no such line (a pipe wants rows only).
    assert len(json_out(cli("history", "--json"))) == 50
    assert len(json_out(cli("history", "--json", "--all"))) == 58
    assert len(cli("history", "-o", "tsv").stdout.splitlines()) == 1 + 50


def test_the_table_marks_a_dry_run_and_says_times_are_utc(cli, week):
    out = cli("history", "-o", "table", "--since", "2026-11-30T09:00", "--until", "2026-11-30").stdout
    lines = out.splitlines()
    assert lines[0] == (
        "runs started from 2026-11-30 09:00:00 through 2026-11-30 "
        "(times in UTC; 2026-11-30T09:00 and 2026-11-30 read as UTC)"
    )
    dry = next(line for line in lines if line.startswith(str(week["nov30-dry"])))
    assert "succeeded (dry run)" in dry
    real = next(line for line in lines if line.startswith(str(week["nov30-21h"])))
    assert "dry run" not in real
    # tsv keeps the bare status (machine values)
    tsv = [line.split("\t") for line in cli("history", "-o", "tsv", "--dry-run").stdout.splitlines()]
    assert tsv[1][tsv[0].index("status")] == "succeeded"
    zoned = cli("history", "-o", "table", "--since", "2026-11-30T22:00+01:00").stdout.splitlines()[0]
    assert zoned == "runs started from 2026-11-30 21:00:00 (times in UTC)"


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_flat_columns_for_the_common_figures_after_the_existing_ones(cli, redis_server, monkeypatch):
    """Real runs: a backup to a local directory, a dry-run sweep and a delete of one organisation."""
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "false")
    seed(redis_server.client(), 40, orgs=2)
    for args in (
        ("run", "backup"),
        ("sessions", "sweep", "--dry-run"),
        ("sessions", "delete", "--org", "org-0", "--yes"),
        ("run", "health"),
    ):
        result = cli(*args, "--json")
        assert result.exit_code == 0, result.output
    runs = {r["job"]: r for r in json_out(cli("history", "--json"))}
    text = cli("history", "--csv").stdout
    assert cli("history", "-o", "csv").stdout == text
    header = next(csv.reader(io.StringIO(text)))
    existing = [k for k in RUN_FIELDS if k != "summary"]
    assert header[: len(existing)] == existing  # the columns there were, first and in order
    assert header[len(existing) : len(existing) + 2] == ["dry_run", "duration_s"] and header[-1] == "summary"
    rows = {r["job"]: r for r in csv_rows(text)}

    backup, s = rows["backup"], runs["backup"]["summary"]
    assert backup["backup_id"] == s["backup_id"] and backup["bytes"] == str(s["bytes"])
    assert backup["files"] == str(len(s["files"])) and backup["keys"] == str(s["redis"]["dbsize"])
    assert backup["dry_run"] == "false" and float(backup["duration_s"]) == s["duration_s"]
    rest = json.loads(backup["summary"])
    assert "backup_id" not in rest and "bytes" not in rest and "duration_s" not in rest
    assert rest["files"] == s["files"] and rest["redis"] == s["redis"]  # counted, and kept whole

    sweep, s = rows["session-sweep"], runs["session-sweep"]["summary"]
    assert sweep["dry_run"] == "true" and "dry_run" not in json.loads(sweep["summary"])
    assert sweep["scanned"] == str(s["scanned"]) == "40"
    assert sweep["deleted"] == str(sum(s["deleted"].values()))
    assert json.loads(sweep["summary"])["deleted"] == s["deleted"]  # the breakdown stays

    delete, s = rows["session-delete"], runs["session-delete"]["summary"]
    assert delete["matched"] == str(s["matched"]) == "20" and delete["deleted"] == "20"
    assert rows["health"]["level"] == runs["health"]["summary"]["level"]
    # nothing is lost: the flat columns and the rest give back every summary
    for job, row in rows.items():
        moved = {k for k in runs[job]["summary"] if k not in json.loads(row["summary"])}
        assert moved <= {"dry_run", "duration_s", "level", "backup_id", "bytes", "scanned", "ttl_repaired",
                         "unreadable", "matched", "keys"}, (job, moved)  # fmt: skip
        for key in moved - {"dry_run"}:
            value = runs[job]["summary"][key]
            assert row[key] == ("" if value is None else str(value)), (job, key)
