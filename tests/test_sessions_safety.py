"""Sweeps that would log users out, and organisation deletes that could hit the wrong sessions,
against a real Redis: refusals show real dry-pass counts, delete nothing, and suggest a command a
shell takes exactly as it is."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.support.builders.sessions import HOUR_MS, put, server_now_ms, session, snapshot
from tests.support.common import json_out

# max_age is 1d by default: --older-than 12h deletes sessions that are still live
EARLY = ("sessions", "sweep", "--older-than", "12h")


def _live_and_stale(client) -> None:
    """40 sessions: 10 stale (30h), 10 at 13h, 20 at 2h; one has no TTL and is past max_age."""
    now = server_now_ms(client)
    for i in range(10):
        put(client, f"session:old{i}", session(now - 30 * HOUR_MS, "acme"))
        put(client, f"session:13h{i}", session(now - 13 * HOUR_MS, "acme"))
    for i in range(19):
        put(client, f"session:new{i}", session(now - 2 * HOUR_MS, "globex"))
    put(client, "session:old-nottl", session(now - 50 * HOUR_MS, "acme"), ttl_ms=None)


def _suggested(stderr: str) -> list[str]:
    """The command a refusal suggests: the indented line starting with redis-maint, as argv."""
    (line,) = [ln.strip() for ln in stderr.splitlines() if ln.startswith("  redis-maint ")]
    argv = shlex.split(line)
    assert argv[0] == "redis-maint"
    return argv[1:]


def _rows(cli) -> list:
    return json_out(cli("history", "--json"))


# -- item 2: ad hoc sweeps below max_age -----------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_a_sweep_below_max_age_refuses_with_the_dry_pass_counts_and_deletes_nothing(
    redis_server, cli, as_json
):
    client = redis_server.client()
    _live_and_stale(client)
    before = snapshot(client)

    result = cli(*EARLY, *(["--json"] if as_json else []))

    assert result.exit_code == 2
    assert result.stdout == ""
    # the dry pass is the real engine: 10 stale + 10 at 13h + 1 expired without TTL, of 40
    assert "21 of 40 sessions (52.5%)" in result.stderr
    assert "stale 20, expired_no_ttl 1" in result.stderr
    assert "logs those users out" in result.stderr and "max_age (1d)" in result.stderr
    assert snapshot(client) == before
    assert _rows(cli) == []


def test_the_suggested_command_goes_ahead_with_yes(redis_server, cli):
    client = redis_server.client()
    _live_and_stale(client)

    argv = _suggested(cli(*EARLY, "--delete-unreadable", "--json", "--as", "o'neil $(id)").stderr)

    assert argv == [*EARLY[:3], "12h", "--delete-unreadable", "--yes", "--json", "--as", "o'neil $(id)"]
    row = json_out(cli(*argv))
    assert row["status"] == "succeeded" and row["requested_by"] == "o'neil $(id)"
    assert row["summary"]["deleted"]["stale"] == 20 and row["summary"]["deleted"]["expired_no_ttl"] == 1
    assert sorted(client.scan_iter()) == sorted(f"session:new{i}".encode() for i in range(19))


def test_the_suggested_command_keeps_the_config_file(redis_server, cli, tmp_path):
    config = tmp_path / "my config.toml"
    config.write_text('[jobs.session_sweep]\nmax_age = "2d"\n')
    _live_and_stale(redis_server.client())

    result = cli("--config", str(config), "sessions", "sweep", "--older-than", "1d")

    assert result.exit_code == 2 and "max_age (2d)" in result.stderr
    assert _suggested(result.stderr)[:2] == ["--config", str(config)]
    assert cli(*_suggested(result.stderr)).exit_code == 0


@pytest.mark.parametrize("older_than", ["24h", "1d", "25h"])
def test_older_than_at_or_above_max_age_needs_no_yes(redis_server, cli, older_than):
    client = redis_server.client()
    _live_and_stale(client)

    row = json_out(cli("sessions", "sweep", "--older-than", older_than, "--json"))

    assert row["status"] == "succeeded"
    assert row["summary"]["deleted"]["stale"] == 10 and client.dbsize() == 29


def test_a_dry_run_below_max_age_needs_no_yes(redis_server, cli):
    client = redis_server.client()
    _live_and_stale(client)
    before = snapshot(client)

    result = cli(*EARLY, "--dry-run", "--json")

    assert result.exit_code == 0
    assert json_out(result)["summary"]["deleted"]["stale"] == 20
    assert snapshot(client) == before


def test_a_scheduled_sweep_under_memory_pressure_needs_no_yes(redis_factory, settings, monkeypatch):
    """The daemon's path is unchanged: pressure_max_age (12h) < max_age still sweeps on its own."""
    from redis_maint.history.runs import Trigger
    from redis_maint.run import runner

    server = redis_factory(args={"maxmemory-policy": "noeviction"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_JOBS__SESSION_SWEEP__MEMORY_PRESSURE", "true")
    client = server.client()
    _live_and_stale(client)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"] / 0.95))

    run = runner.execute(settings(), "session-sweep", trigger=Trigger.SCHEDULED, requested_by="daemon")

    assert run.status == "succeeded"
    assert run.summary["stale_after"] == "12h" and run.summary["deleted"]["stale"] == 20
    assert client.dbsize() == 19


# -- item 10: organisation deletes -------------------------------------------------------------------


def _orgs(client, sizes: dict) -> None:
    """`sizes` maps an organisation id (None: no organisationId at all) to a number of sessions."""
    now = server_now_ms(client)
    for org, n in sizes.items():
        for i in range(n):
            value = session(now - HOUR_MS, org)
            if org is None:
                value = json.dumps({"createdAt": now - HOUR_MS, "userId": "u"}).encode()
            put(client, f"session:{org}:{i}", value)


SIZES = {"acme": 9, "globex": 8, "initech": 7, "umbrella": 6, "hooli": 5, "tiny": 1, "wee": 2, None: 3}


def test_an_org_that_matches_nothing_lists_the_largest_orgs_and_refuses(redis_server, cli):
    client = redis_server.client()
    _orgs(client, SIZES)
    before = snapshot(client)

    result = cli("sessions", "delete", "--org", "acmee")

    assert result.exit_code == 2 and result.stdout == ""
    assert "no session has organisationId 'acmee'; nothing was deleted." in result.stderr
    listed = [ln.split() for ln in result.stderr.splitlines() if ln.startswith("  ")]
    assert listed == [["9", "acme"], ["8", "globex"], ["7", "initech"], ["6", "umbrella"], ["5", "hooli"]]
    assert "without an organisationId: 3 (address them with --no-org)" in result.stderr
    assert snapshot(client) == before
    assert _rows(cli) == []


def test_an_org_that_matches_nothing_with_yes_is_a_run_that_matched_zero(redis_server, cli):
    client = redis_server.client()
    _orgs(client, SIZES)

    result = cli("sessions", "delete", "--org", "acmee", "--yes", "--json")

    assert result.exit_code == 0
    row = json_out(result)
    assert row["status"] == "succeeded" and row["summary"]["matched"] == 0
    assert row["summary"]["deleted"]["organisation"] == 0 and client.dbsize() == 41
    assert "no session has organisationId 'acmee'" in result.stderr and "  9  acme" in result.stderr
    assert [r["id"] for r in _rows(cli)] == [row["id"]]


def test_no_org_deletes_exactly_the_sessions_without_an_organisation(redis_server, cli):
    client = redis_server.client()
    now = server_now_ms(client)
    put(client, "session:missing", json.dumps({"createdAt": now, "userId": "u"}).encode())
    put(client, "session:null", session(now, None))
    put(client, "session:literal", session(now, "(none)"))
    put(client, "session:acme", session(now, "acme"))

    census = json_out(cli("sessions", "count", "--by-org", "--json"))
    refused = cli("sessions", "delete", "--no-org")
    row = json_out(cli("sessions", "delete", "--no-org", "--yes", "--json"))

    assert census["by_org"] == {"(none)": 1, "acme": 1} and census["no_org"] == 2
    assert refused.exit_code == 2 and "2 sessions without an organisationId" in refused.stderr
    assert _suggested(refused.stderr) == ["sessions", "delete", "--no-org", "--yes"]
    assert row["summary"]["params"] == {"no_org": True} and row["summary"]["matched"] == 2
    assert row["summary"]["remaining_by_org"] == {"(none)": 1, "acme": 1}
    assert row["summary"]["remaining_no_org"] == 0
    assert sorted(client.scan_iter()) == [b"session:acme", b"session:literal"]


def test_org_none_in_parentheses_is_just_an_organisation_id(redis_server, cli):
    client = redis_server.client()
    now = server_now_ms(client)
    put(client, "session:null", session(now, None))
    put(client, "session:literal", session(now, "(none)"))

    row = json_out(cli("sessions", "delete", "--org", "(none)", "--yes", "--json"))

    assert row["summary"]["matched"] == 1 and row["summary"]["remaining_no_org"] == 1
    assert list(client.scan_iter()) == [b"session:null"]


def test_an_empty_org_is_refused_with_a_pointer_to_no_org(redis_server, cli):
    client = redis_server.client()
    put(client, "session:null", session(server_now_ms(client), None))

    result = cli("sessions", "delete", "--org", "", "--yes")

    assert result.exit_code == 2 and "--no-org" in result.stderr
    assert client.dbsize() == 1 and _rows(cli) == []


def test_no_org_with_another_target_is_a_usage_error(redis_server, cli):
    result = cli("sessions", "delete", "--no-org", "--org", "acme", "--yes")

    assert result.exit_code == 2 and "exactly one of --org ORG_ID, --no-org or --all" in result.stderr


HOSTILE = [
    "acme corp",
    'it\'s $(touch /tmp/pwned) `id` "x"',
    "--all",
    "-x; rm -rf ~",
    "tab\there\nnewline",
]


@pytest.mark.parametrize("org", HOSTILE)
def test_a_hostile_org_id_is_quoted_in_the_suggested_command(redis_server, cli, org):
    client = redis_server.client()
    now = server_now_ms(client)
    for i in range(3):
        put(client, f"session:h{i}", session(now, org))
    put(client, "session:other", session(now, "acme"))

    refused = cli("sessions", "delete", "--org", org, "--as", "ops $(whoami)")
    argv = _suggested_multiline(refused.stderr)
    row = json_out(cli(*argv, "--json"))

    assert refused.exit_code == 2 and "3 sessions of organisation" in refused.stderr
    assert row["summary"]["params"] == {"org": org} and row["requested_by"] == "ops $(whoami)"
    assert list(client.scan_iter()) == [b"session:other"]


def _suggested_multiline(stderr: str) -> list[str]:
    """Like _suggested, for a command whose quoted org id may itself hold a newline."""
    start = stderr.index("\n  redis-maint ") + 3
    end = stderr.index("\n(or add --dry-run", start)
    argv = shlex.split(stderr[start:end])
    assert argv[0] == "redis-maint"
    return argv[1:]


# -- pure rules, no Redis ------------------------------------------------------------------------


def test_an_organisation_plan_needs_an_id():
    from redis_maint.sessions import Mode, Plan

    with pytest.raises(ValueError, match="NO_ORG"):
        Plan(mode=Mode.ORG)
    with pytest.raises(ValueError):
        Plan(mode=Mode.ORG, org="")


def test_no_org_matches_missing_and_null_but_not_the_text_none():
    from redis_maint.sessions import Mode, Plan, SweepReport
    from redis_maint.sessions.rules import decide

    keys = [b"a", b"b", b"c", b"d"]
    values = [b'{"createdAt": 1}', b'{"organisationId": null}', b'{"organisationId": "(none)"}', b"{}"]
    report = SweepReport()

    actions = decide(Plan(mode=Mode.NO_ORG), keys, values, set(), report)

    assert [a[0] for a in actions] == [b"a", b"b", b"d"]
    assert dict(report.by_org) == {"(none)": 1}


def test_share_rounds_and_never_shows_a_misleading_zero():
    from redis_maint.cli.sessions_messages import share

    assert [share(1, 3), share(0, 5), share(1, 10_000), share(3, 0)] == ["33.3%", "0%", "<0.1%", "0%"]
