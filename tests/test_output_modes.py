"""`-o table|wide|tsv|csv|json` on every listing; piped output is TSV with a header; `--json` is the
same bytes as before; logs choose text or JSON by terminal, flag or variable."""

from __future__ import annotations

import csv
import io
import json

import pytest

from redis_maint.cli.render import human
from redis_maint.cli.render.listing import Column, fit, tsv_cell
from tests.support.builders.sessions import seed
from tests.support.common import json_out
from tests.support.daemon import start_daemon, stop_daemon
from tests.support.pty_cli import run_in_pty

HISTORY_TSV = [
    "id",
    "job",
    "status",
    "started_at",
    "duration_s",
    "trigger",
    "requested_by",
    "error",
    "host",
    "pid",
    "finished_at",
]
RUN_KEYS = ["id", "job", "trigger", "requested_by", "host", "pid", "started_at", "finished_at", "status"]


def tsv(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


@pytest.fixture
def runs(cli, redis_server):
    for job in ("health", "health", "backup-age"):
        assert cli("run", job, "--json").exit_code == 0
    return json_out(cli("history", "--json"))


def test_piped_history_is_tsv_with_a_header_of_row_keys(cli_process, runs):
    out = cli_process("history")  # stdout is a pipe
    assert out.returncode == 0, out.stderr
    header, *rows = tsv(out.stdout)
    assert header == HISTORY_TSV
    assert [r[0] for r in rows] == [str(r["id"]) for r in runs]
    assert [r[3] for r in rows] == [r["started_at"] for r in runs]  # ISO 8601, as in --json
    assert all(len(r) == len(header) for r in rows)


@pytest.mark.parametrize(
    ("args", "header"),
    [
        (("backups", "list"), ["id", "created_at", "status", "size", "files", "verify_ok"]),
        (("jobs",), ["name", "schedule", "next_run", "last_status", "last_started_at", "description"]),
        (("doctor",), ["check", "ok", "detail"]),
        (("sessions", "count", "--by-org"), ["organisation", "sessions"]),
    ],
)
def test_every_listing_piped_is_tsv_with_a_header(cli_process, redis_server, args, header):
    seed(redis_server.client(), 30, orgs=3)
    out = cli_process(*args)
    assert out.returncode in (0, 1), out.stderr  # doctor may fail a check (no Docker needed here)
    got, *rows = tsv(out.stdout)
    assert got[: len(header)] == header
    assert all(len(r) == len(got) for r in rows)
    if args[0] == "sessions":
        assert sorted(int(r[1]) for r in rows) == [10, 10, 10]


def test_json_is_the_same_bytes_as_before_and_o_json_is_its_alias(cli, runs):
    as_json = cli("history", "--json").stdout
    assert cli("history", "-o", "json").stdout == as_json
    assert as_json == json.dumps(runs, indent=2, default=str) + "\n"
    # the README's documented shape first; keys added since (hash chain, provenance) follow it
    assert list(runs[0])[: len(RUN_KEYS) + 2] == [*RUN_KEYS, "summary", "error"]
    for args in (("backups", "list"), ("jobs",), ("doctor",)):
        assert cli(*args, "--json").stdout == cli(*args, "-o", "json").stdout
    assert cli("history", "--json", "-o", "tsv").exit_code == 2


def test_history_csv_flag_is_unchanged_and_o_csv_is_the_same(cli, runs):
    flag = cli("history", "--csv").stdout
    assert cli("history", "-o", "csv").stdout == flag
    rows = list(csv.DictReader(io.StringIO(flag)))
    assert list(rows[0])[: len(RUN_KEYS) + 1] == [*RUN_KEYS, "error"] and list(rows[0])[-1] == "summary"
    # the summary's common figures have columns of their own (tests/test_history_filters.py); the rest stays
    rest = json.loads(rows[0]["summary"])
    moved = {k: v for k, v in runs[0]["summary"].items() if k not in rest}
    assert rest == {k: v for k, v in runs[0]["summary"].items() if k not in moved}
    assert "duration_s" in moved
    assert [rows[0][k] for k in moved] == ["" if v is None else str(v) for v in moved.values()]


def test_table_into_a_pipe_keeps_every_cell_whole(cli, runs):
    out = cli("history", "-o", "table").stdout.splitlines()
    assert out[0].split()[:3] == ["run", "job", "status"]
    assert len(out) == 1 + len(runs)
    assert "\x1b" not in "".join(out)  # no terminal, no styles


def test_logs_are_json_off_a_terminal_text_on_request(cli_process, redis_server):
    piped = cli_process("run", "health")
    assert piped.stderr.strip(), "a run logs at info off a terminal"
    assert all(json.loads(line)["level"] for line in piped.stderr.splitlines())
    as_text = cli_process("run", "health", env={"REDIS_MAINT_LOG_FORMAT": "text"})
    assert as_text.returncode == 0, as_text.stderr
    assert as_text.stderr.splitlines()[0].startswith("info ")
    flag = cli_process("--log-format", "text", "run", "health")
    assert flag.stderr.splitlines()[0].startswith("info ")
    bad = cli_process("run", "health", env={"REDIS_MAINT_LOG_FORMAT": "xml"})
    assert bad.returncode == 2


def test_json_logs_on_a_terminal_when_asked(redis_server):
    shown = run_in_pty("--log-format", "json", "-v", "run", "health", columns=200)
    assert shown.code == 0, shown.terminal
    assert '{"ts"' in shown.terminal


def test_the_daemon_logs_json_when_stderr_is_not_a_terminal(redis_server, tmp_path):
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="* * * * *")
    try:
        first = proc.stderr.readline()
    finally:
        stop_daemon(proc)
    record = json.loads(first)
    assert record["level"] in ("info", "warning") and record["msg"]


# ---- pure logic: fitting, escaping, human figures ----


def test_fit_shrinks_text_then_drops_the_least_useful_and_never_touches_ids():
    cols = [
        Column("id", "id", str, whole=True),
        Column("note", "note", str, wrap=True),
        Column("extra", "extra", str, drop=1),
    ]
    natural = [24, 40, 12]
    assert fit(cols, natural, None) == ([0, 1, 2], natural)  # no terminal: all whole
    keep, widths = fit(cols, natural, 70)  # 24+2+40+2+12 = 80 > 69: the note shrinks
    assert keep == [0, 1, 2] and widths[0] == 24 and widths[2] == 12
    assert sum(widths) + 2 * 2 < 70
    keep, widths = fit(cols, natural, 40)  # even at its floor the note needs more: extra goes
    assert keep == [0, 1] and widths[0] == 24 and sum(widths[i] for i in keep) + 2 < 40


def test_tsv_cells_never_break_a_row():
    assert tsv_cell("a\tb\nc\\d") == "a\\tb\\nc\\\\d"
    assert tsv_cell(None) == "" and tsv_cell(True) == "true"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (999, "999 bytes"),
        (1_045_016, "1.0 MiB"),
        (485_656, "474.3 KiB"),
        (3 * 1024**3, "3.0 GiB"),
    ],
)
def test_sizes_read_in_binary_units(n, text):
    assert human.size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.131, "131 ms"),
        (1.225, "1.2 s"),
        (42, "42 s"),
        (65, "1 min 5 s"),
        (3725, "1 h 2 min"),
        (93600, "1 d 2 h"),
    ],
)
def test_durations_read_in_the_two_largest_units(seconds, text):
    assert human.duration(seconds) == text


def test_relative_times():
    now = human.parse_time("2026-12-01T12:00:00Z")
    assert human.ago("2026-12-01T09:00:00Z", now) == "3 h ago"
    assert human.ago("2026-12-01T12:05:00Z", now) == "in 5 min"
    assert human.ago(None, now) == ""
