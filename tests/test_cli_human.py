"""What an operator sees at a terminal: the CLI in a real pseudo-terminal (80 and 200 columns) against a
real Redis and a real SQLite history. Verdict first, ids never folded, tables that fit, no JSON logs."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.builders.sessions import seed
from tests.support.common import json_out
from tests.support.pty_cli import run_in_pty

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
WIDTHS = [80, 200]


def screen_lines(terminal: str) -> list[str]:
    """The lines a person reads: escape codes removed, the pty's CRLF undone, blank lines dropped."""
    text = ANSI.sub("", terminal).replace("\r\n", "\n")
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def json_log_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.lstrip().startswith('{"ts"')]


def backup_ids(cli) -> list[str]:
    return [b["id"] for b in json_out(cli("backups", "list", "--json"))]


@pytest.fixture
def two_backups(cli, redis_server, backup_env):
    seed(redis_server.client(), 300)
    for _ in range(2):
        assert cli("run", "backup", "--json").exit_code == 0
    return backup_ids(cli)


@pytest.mark.parametrize("columns", WIDTHS)
def test_run_backup_shows_the_verdict_first_and_the_id_whole_without_json_logs(
    cli, redis_server, backup_env, columns
):
    seed(redis_server.client(), 300)
    shown = run_in_pty("run", "backup", "--as", "ops", columns=columns)
    lines = screen_lines(shown.terminal)
    assert shown.code == 0, shown.terminal
    assert re.match(r"backup: succeeded in .* · run \d+, manual by ops", lines[0]), lines
    (backup_id,) = backup_ids(cli)
    assert any(backup_id in line for line in lines), lines  # on one line: never folded
    assert any(line.split()[:2] == ["backup", backup_id] for line in lines), lines
    assert not json_log_lines(lines), lines
    assert not any(line.startswith("info ") for line in lines), "info logs only with -v"
    assert "bytes:" not in shown.terminal and "durations_s" not in shown.terminal  # no raw dump


def test_verbose_shows_info_logs_as_text_on_a_terminal(redis_server, backup_env):
    shown = run_in_pty("-v", "run", "health", columns=120)
    lines = screen_lines(shown.terminal)
    assert shown.code == 0, shown.terminal
    assert any(line.startswith("info ") for line in lines), lines
    assert not json_log_lines(lines), lines
    # The same -v after the command name.
    after = screen_lines(run_in_pty("run", "health", "-v", columns=120).terminal)
    assert any(line.startswith("info ") for line in after), after


@pytest.mark.parametrize("columns", WIDTHS)
def test_backups_list_fits_the_terminal_and_never_folds_an_id(cli, two_backups, columns):
    shown = run_in_pty("backups", "list", columns=columns, env={"NO_COLOR": "1"})
    lines = screen_lines(shown.terminal)
    assert shown.code == 0, shown.terminal
    assert lines[0].split()[:3] == ["id", "created", "(UTC)"], lines
    for backup_id in two_backups:
        (row,) = [line for line in lines if backup_id in line]
        assert row.startswith(backup_id)
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)  # the time stays whole too
    assert all(len(line) < columns for line in lines), lines
    assert "\x1b" not in shown.terminal  # NO_COLOR: no escape code at all


def test_a_narrow_terminal_drops_columns_and_wide_shows_them_all(cli, two_backups):
    cli("backups", "keep", two_backups[0], "--reason", "before the upgrade", "--as", "ops")
    narrow = screen_lines(run_in_pty("backups", "list", columns=80).terminal)
    roomy = screen_lines(run_in_pty("backups", "list", columns=200).terminal)
    wide = screen_lines(run_in_pty("backups", "list", "-o", "wide", columns=80).terminal)
    assert "kept" not in narrow[0].split() and "kept" in roomy[0].split()
    assert any("by ops: before the upgrade" in line for line in roomy), roomy
    assert "target" in wide[0].split() and "target" not in roomy[0].split()


@pytest.mark.parametrize("columns", WIDTHS)
def test_history_fits_the_terminal_and_colours_only_without_no_color(cli, redis_server, columns):
    for _ in range(3):
        assert cli("run", "health", "--json").exit_code == 0
    shown = run_in_pty("history", columns=columns)
    lines = screen_lines(shown.terminal)
    assert lines[0].split()[:3] == ["run", "job", "status"], lines
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert all(len(line) < columns for line in lines), lines
    assert "\x1b[" in shown.terminal  # styled on a terminal...
    plain = run_in_pty("history", columns=columns, env={"NO_COLOR": "1"})
    assert "\x1b" not in plain.terminal  # ...and not at all with NO_COLOR
    assert [line.split()[:3] for line in screen_lines(plain.terminal)] == [line.split()[:3] for line in lines]


def test_history_show_renders_a_past_run_like_a_fresh_one(cli, redis_server, backup_env):
    seed(redis_server.client(), 100)
    fresh = cli("run", "backup", "--as", "ops")
    assert fresh.exit_code == 0, fresh.output
    run = json_out(cli("history", "--json"))[0]
    past = cli("history", "show", str(run["id"]))
    assert past.exit_code == 0
    # The same lines but the relative time, which moves on between the two calls.
    strip_age = re.compile(r", (just now|\d+ (s|min) ago)")
    assert strip_age.sub("", past.stdout) == strip_age.sub("", fresh.stdout)
    assert past.stdout.startswith("backup: succeeded in ")
    assert f"run {run['id']}, manual by ops" in past.stdout.splitlines()[0]
    as_json = cli("history", "show", str(run["id"]), "--json")
    assert json.loads(as_json.stdout) == run
    assert cli("history", "show", "999").exit_code == 2


def test_a_dry_run_sweep_says_would_delete(cli, redis_server):
    stale = seed(redis_server.client(), 40, stale_every=4)
    result = cli("sessions", "sweep", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("session-sweep (dry run): succeeded")
    assert "would delete" in lines[1] and "deleted" not in lines[1]
    (stale_row,) = [line for line in lines if "stale (older than" in line]
    assert stale_row.split()[-1] == str(stale)
    assert "nothing was deleted" in result.stdout
    real = cli("sessions", "sweep")
    assert "would delete" not in real.stdout and real.stdout.splitlines()[1].split()[-1] == "deleted"


@pytest.mark.docker
def test_check_tools_output_shows_only_with_verbose(cli, redis_server, check_image):
    seed(redis_server.client(), 50)
    run = json_out(cli("run", "aof-check", "--json"))
    assert run["status"] == "succeeded", run
    tool_says = "Checksum OK"  # redis-check-rdb's own words
    assert any(tool_says in c["output"] for c in run["summary"]["checks"])
    quiet = cli("history", "show", str(run["id"]))
    assert tool_says not in quiet.stdout
    assert re.search(r"checks +all \d+ ok", quiet.stdout), quiet.stdout
    loud = cli("history", "show", str(run["id"]), "-v")
    assert tool_says in loud.stdout
