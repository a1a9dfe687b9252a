"""`redis-maint sessions ...` against a real Redis: JSON shapes, history rows, and the refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.support.builders.sessions import DAY_MS, HOUR_MS, put, seed, server_now_ms, session
from tests.support.common import ROOT, json_out

SUMMARY_KEYS = {
    "scanned",
    "deleted",
    "ttl_repaired",
    "unreadable",
    "unreadable_samples",
    "duration_s",
    "keys_per_s",
    "remaining_by_org",
}
REASONS = {"stale", "expired_no_ttl", "unreadable", "organisation", "all"}


def _mixed(client) -> None:
    now = server_now_ms(client)
    for i in range(30):
        put(client, f"session:s{i}", session(now - 30 * HOUR_MS, "acme" if i < 10 else "globex"))
    for i in range(20):
        put(client, f"session:f{i}", session(now - 2 * HOUR_MS, "acme" if i < 5 else "globex"))
    put(client, "session:nottl", session(now - 3 * HOUR_MS, "acme"), ttl_ms=None)
    put(client, "session:old-nottl", session(now - 50 * HOUR_MS, "acme"), ttl_ms=None)
    put(client, "session:bad", b"not json")
    put(client, "session:13h", session(now - 13 * HOUR_MS, "initech"))
    put(client, "ratelimit:acme", b"5", ttl_ms=None)


def test_count_json_shapes(redis_server, cli):
    _mixed(redis_server.client())

    plain = json_out(cli("sessions", "count", "--json"))
    by_org = json_out(cli("sessions", "count", "--by-org", "--json"))

    assert plain == {"total": 54}
    assert by_org == {
        "total": 54,
        "by_org": {"globex": 35, "acme": 17, "initech": 1},
        "no_org": 0,
        "unreadable": 1,
    }


def test_sweep_json_is_the_history_row_of_a_manual_session_sweep(redis_server, cli):
    client = redis_server.client()
    _mixed(client)

    result = cli("sessions", "sweep", "--json", "--as", "alice")

    assert result.exit_code == 0, result.output
    row = json_out(result)
    assert (row["job"], row["trigger"], row["status"], row["requested_by"]) == (
        "session-sweep",
        "manual",
        "succeeded",
        "alice",
    )
    summary = row["summary"]
    assert set(summary) >= SUMMARY_KEYS
    assert set(summary["deleted"]) == REASONS
    assert summary["scanned"] == 54
    assert summary["deleted"] == {
        "stale": 30,
        "expired_no_ttl": 1,
        "unreadable": 0,
        "organisation": 0,
        "all": 0,
    }
    assert summary["ttl_repaired"] == 1
    assert summary["unreadable"] == 1 and summary["unreadable_samples"] == ["session:bad"]
    assert summary["remaining_by_org"] == {"globex": 15, "acme": 6, "initech": 1}
    assert isinstance(summary["duration_s"], float) and summary["keys_per_s"] > 0
    assert 0 < client.pttl("session:nottl") <= 21 * HOUR_MS
    assert client.get("ratelimit:acme") == b"5" and client.get("session:bad") == b"not json"
    history = json_out(cli("history", "--job", "session-sweep", "--json"))
    assert [h["id"] for h in history] == [row["id"]]


def test_sweep_older_than_and_delete_unreadable_are_recorded_params(redis_server, cli):
    client = redis_server.client()
    _mixed(client)

    row = json_out(cli("sessions", "sweep", "--older-than", "12h", "--delete-unreadable", "--yes", "--json"))

    assert row["summary"]["params"] == {"older_than": "12h", "delete_unreadable": True}
    assert row["summary"]["stale_after"] == "12h"
    assert row["summary"]["deleted"]["stale"] == 31  # the 13h-old session too
    assert row["summary"]["deleted"]["unreadable"] == 1
    assert client.get("session:13h") is None and client.get("session:bad") is None


def test_dry_run_predicts_the_real_run_exactly(redis_server, cli):
    client = redis_server.client()
    _mixed(client)
    seed(client, 500, prefix="session:bulk")
    before = client.dbsize()

    dry = json_out(cli("sessions", "sweep", "--dry-run", "--json"))["summary"]
    assert client.dbsize() == before
    real = json_out(cli("sessions", "sweep", "--json"))["summary"]

    assert dry["dry_run"] is True and "dry_run" not in real
    for key in ("scanned", "deleted", "ttl_repaired", "unreadable", "unreadable_samples", "remaining_by_org"):
        assert dry[key] == real[key], key
    assert client.dbsize() == before - sum(real["deleted"].values())


def test_delete_org_removes_only_that_organisation(redis_server, cli):
    client = redis_server.client()
    _mixed(client)
    others = {k: client.get(k) for k in client.scan_iter() if b'"acme"' not in (client.get(k) or b"")}

    dry = json_out(cli("sessions", "delete", "--org", "acme", "--dry-run", "--json"))
    row = json_out(cli("sessions", "delete", "--org", "acme", "--yes", "--json", "--as", "bob"))

    assert (row["job"], row["status"], row["requested_by"]) == ("session-delete", "succeeded", "bob")
    assert row["summary"]["params"] == {"org": "acme"}
    assert row["summary"]["deleted"]["organisation"] == dry["summary"]["deleted"]["organisation"] == 17
    assert {k: client.get(k) for k in client.scan_iter()} == others


def test_delete_without_yes_shows_the_count_and_refuses(redis_server, cli):
    client = redis_server.client()
    _mixed(client)

    everything = cli("sessions", "delete", "--all")
    one_org = cli("sessions", "delete", "--org", "acme", "--json")

    assert everything.exit_code == 2
    assert "54 sessions" in everything.stderr and "--yes" in everything.stderr
    assert one_org.exit_code == 2 and "17 sessions of organisation 'acme'" in one_org.stderr
    assert everything.stdout == "" and one_org.stdout == ""
    assert client.dbsize() == 55
    assert json_out(cli("history", "--json")) == []


def test_delete_all_with_yes_is_the_emergency_path(redis_server, cli):
    client = redis_server.client()
    _mixed(client)

    row = json_out(cli("sessions", "delete", "--all", "--yes", "--json"))

    assert row["summary"]["deleted"]["all"] == 54
    assert row["summary"]["params"] == {"all": True}
    assert list(client.scan_iter()) == [b"ratelimit:acme"]


def test_delete_needs_exactly_one_target(redis_server, cli):
    neither = cli("sessions", "delete", "--yes")
    both = cli("sessions", "delete", "--org", "a", "--all", "--yes")

    assert neither.exit_code == 2 and both.exit_code == 2
    assert "exactly one of --org ORG_ID, --no-org or --all" in both.stderr


def test_session_delete_run_without_parameters_is_a_usage_error_with_a_hint(redis_server, cli):
    put(redis_server.client(), "session:x", session(0))

    result = cli("run", "session-delete", "--json")

    assert result.exit_code == 2 and result.stdout == ""
    assert "sessions delete --org ORG_ID" in result.stderr
    assert redis_server.client().dbsize() == 1


def _full_redis(redis_factory, monkeypatch):
    """A Redis at ~95% of maxmemory; noeviction, so the test data is not evicted under us."""
    server = redis_factory(args={"maxmemory-policy": "noeviction"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    client = server.client()
    _mixed(client)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"] / 0.95))
    return client


def test_memory_pressure_tightens_the_threshold_when_enabled(redis_factory, cli, monkeypatch):
    client = _full_redis(redis_factory, monkeypatch)
    monkeypatch.setenv("REDIS_MAINT_JOBS__SESSION_SWEEP__MEMORY_PRESSURE", "true")

    summary = json_out(cli("sessions", "sweep", "--json"))["summary"]

    assert summary["memory_pressure"]["applied"] is True
    assert summary["memory_pressure"]["ratio"] > 0.9
    assert summary["stale_after"] == "12h"
    assert summary["deleted"]["stale"] == 31, "deletes must work on a full Redis"
    assert client.get("session:13h") is None


def test_memory_pressure_is_off_by_default(redis_factory, cli, monkeypatch):
    _full_redis(redis_factory, monkeypatch)

    summary = json_out(cli("sessions", "sweep", "--dry-run", "--json"))["summary"]

    assert summary["memory_pressure"] == {"enabled": False}
    assert summary["stale_after"] == "1d" and summary["deleted"]["stale"] == 30


def test_older_than_rejects_a_bad_duration(redis_server, cli):
    result = cli("sessions", "sweep", "--older-than", "soon")

    assert result.exit_code == 2
    assert "is not a duration" in result.stderr


def test_sweep_refuses_to_overlap_a_running_sweep(redis_server, cli_process):
    put(redis_server.client(), "session:x", session(server_now_ms(redis_server.client()) - 1 * DAY_MS))
    from config import load_settings
    from jobs import REGISTRY
    from redis_maint.history.leases import Lease
    from redis_maint.history.runs import HistoryStore

    settings = load_settings(jobs=REGISTRY)
    lease = Lease.acquire(HistoryStore(settings.history_url), "session-sweep", settings.lock.lease_ttl)
    try:
        result = cli_process("sessions", "sweep", "--json")
    finally:
        lease.release()

    assert result.returncode == 75
    assert json_out(result)["status"] == "skipped"


def test_a_sweep_past_its_timeout_fails_and_says_which_setting(redis_server, cli, monkeypatch):
    seed(redis_server.client(), 2000)
    monkeypatch.setenv("REDIS_MAINT_JOBS__SESSION_SWEEP__TIMEOUT", "0.001s")  # 0s is refused

    result = cli("sessions", "sweep", "--json")

    assert result.exit_code == 1
    row = json_out(result)
    assert row["status"] == "failed" and "jobs.session_sweep.timeout" in row["error"]


def test_sigterm_stops_a_foreground_sweep_between_batches(redis_server, monkeypatch):
    """The sweep runs in a thread of its own (idle CPU priority); SIGTERM must still stop it cleanly."""
    client = redis_server.client()
    total = 40_000
    stale = seed(client, total)
    tiny_batches = {  # a slow sweep, so that the signal lands mid-way
        "REDIS_MAINT_SESSIONS__SCAN_COUNT": "10",
        "REDIS_MAINT_SESSIONS__READ_BATCH": "1",
        "REDIS_MAINT_SESSIONS__ACT_BATCH": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "sessions", "sweep", "--json"],
        env={**os.environ, **tiny_batches},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while client.dbsize() == total and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 1, stderr
    row = json.loads(stdout)
    assert row["status"] == "interrupted", row
    left = client.dbsize()
    assert total - stale < left < total, "the sweep had started and was stopped before the end"
    fresh = [f"session:{i:08d}" for i in range(1, total, 2)]
    assert client.exists(*fresh) == len(fresh), "no fresh session was touched"
