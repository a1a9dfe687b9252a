"""The one run path: history rows, leases across processes, failures that never escape."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

import jobs
from tests.support.common import ROOT, json_out, wait_for
from tests.support.history import current_store
from tests.support.services.redis import frozen

WAIT_S = 120  # a safety net for a loaded machine, never a speed assertion

RUN_KEYS = {
    "id",
    "job",
    "trigger",
    "requested_by",
    "host",
    "pid",
    "started_at",
    "finished_at",
    "status",
    "summary",
    "error",
}


# A run against a frozen Redis (tests/support/services/redis.py frozen) blocks until the test lets it go;
# its Redis timeout outlasts any process start-up on a loaded machine.
BLOCKED_ENV = {"REDIS_MAINT_REDIS_TIMEOUT": "300s", "REDIS_MAINT_JOBS__HEALTH__TIMEOUT": "300s"}


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.usefixtures("history_url")
def test_run_json_is_one_history_row(redis_server, cli):
    ran = json_out(cli("run", "health", "--json", "--as", "alice"))
    listed = json_out(cli("history", "--json"))
    assert set(ran) >= RUN_KEYS  # the documented keys; later issues add more (hash chain, provenance)
    assert listed[0] == ran
    assert ran["requested_by"] == "alice" and ran["pid"] == os.getpid()
    assert ran["started_at"].endswith("Z") and ran["finished_at"] >= ran["started_at"]


@pytest.mark.usefixtures("history_url")
def test_history_is_newest_first_and_filters(redis_server, cli, monkeypatch):
    cli("run", "health")
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://127.0.0.1:1/0")
    cli("run", "health")
    runs = json_out(cli("history", "--json"))
    assert [r["status"] for r in runs] == ["failed", "succeeded"]
    assert [r["status"] for r in json_out(cli("history", "--json", "--status", "succeeded"))] == ["succeeded"]
    assert len(json_out(cli("history", "--json", "--limit", "1"))) == 1
    assert json_out(cli("history", "--json", "--job", "nope")) == []
    assert len(json_out(cli("history", "--json", "--since", "1h"))) == 2
    csv_lines = cli("history", "--csv").stdout.strip().splitlines()
    assert csv_lines[0].startswith("id,job,trigger") and len(csv_lines) == 3
    assert cli("history", "--since", "yesterday").exit_code == 2


@pytest.mark.usefixtures("history_url")
def test_two_processes_at_once_one_runs_one_is_skipped(redis_server):
    # The first run holds the lease, blocked on Redis, until the second process has come and gone.
    with frozen(redis_server):
        first = _spawn("run", "health", "--json", env=BLOCKED_ENV)
        wait_for(lambda: current_store().running("health"), timeout=WAIT_S, what="first run to start")
        second = _spawn("run", "health", "--json", env=BLOCKED_ENV)
        out2, err2 = second.communicate(timeout=WAIT_S)
    out1, _ = first.communicate(timeout=WAIT_S)
    assert second.returncode == 75, err2
    assert first.returncode == 0
    skipped, ran = (
        json_out(subprocess.CompletedProcess([], 0, out2)),
        json_out(subprocess.CompletedProcess([], 0, out1)),
    )
    assert skipped["status"] == "skipped" and ran["status"] == "succeeded"
    assert f"pid {first.pid} (run {ran['id']}) since" in skipped["error"]


@pytest.mark.usefixtures("history_url")
def test_an_unexpected_error_in_a_job_is_recorded_not_raised(redis_server, cli, monkeypatch):
    def boom(ctx):
        raise KeyError("surprise")

    monkeypatch.setitem(jobs.REGISTRY, "health", dataclasses.replace(jobs.REGISTRY["health"], run=boom))
    result = cli("run", "health", "--json")
    assert result.exit_code == 1
    row = json_out(result)
    assert row["status"] == "failed" and row["error"] == "unexpected KeyError: 'surprise'"
    # the lease was released: the next run is not skipped
    assert json_out(cli("run", "health", "--json"))["status"] == "failed"


@pytest.mark.usefixtures("history_url")
def test_a_killed_run_is_marked_interrupted_by_the_next_run(redis_server, cli):
    with frozen(redis_server):  # the run is still going when it is killed
        victim = _spawn("run", "health", env=BLOCKED_ENV)
        wait_for(lambda: current_store().running("health"), timeout=WAIT_S, what="run to start")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    after = json_out(cli("run", "health", "--json"))
    assert after["status"] == "succeeded"
    killed = [r for r in json_out(cli("history", "--json")) if r["pid"] == victim.pid]
    assert len(killed) == 1 and killed[0]["status"] == "interrupted"
    assert "killed or crashed" in killed[0]["error"]


def test_dry_run_reaches_the_job_and_is_recorded(redis_server, cli):
    row = json_out(cli("run", "health", "--dry-run", "--json"))
    assert row["summary"]["dry_run"] is True


def test_unknown_job_is_a_usage_error(redis_server, cli):
    result = cli("run", "nonesuch")
    assert result.exit_code == 2
    assert "unknown job 'nonesuch'; known jobs:" in result.stderr


@pytest.mark.usefixtures("history_url")
def test_concurrent_processes_lose_no_history_rows(redis_server):
    procs = [_spawn("run", "health", "--json") for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    assert set(codes) <= {0, 75}, [
        err[-1500:] for p, (_, err) in zip(procs, outs, strict=True) if p.returncode not in (0, 75)
    ]
    assert len(current_store().list()) == 6


@pytest.mark.usefixtures("history_url")
def test_jobs_lists_schedules_next_run_and_last_outcome(redis_server, cli):
    cli("run", "health")
    listed = {j["name"]: j for j in json_out(cli("jobs", "--json"))}
    assert listed["health"]["schedule"] == "* * * * *"
    # No daemon runs: the configured schedule, and no next run (nothing would run it).
    assert listed["health"]["next_run"] is None and listed["health"]["schedule_source"] == "config"
    assert listed["health"]["last_run"]["status"] == "succeeded"


@pytest.mark.usefixtures("history_url")
def test_doctor_reports_each_check_and_fails_when_one_fails(redis_server, cli, monkeypatch):
    ok = cli("doctor", "--json")
    checks = {c["check"]: c for c in json_out(ok)}
    assert checks["redis"]["ok"] and checks["history"]["ok"] and checks["data dir"]["ok"]
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", "/nonexistent/redis")
    bad = cli("doctor", "--json")
    assert bad.exit_code == 1
    assert not {c["check"]: c for c in json_out(bad)}["data dir"]["ok"]


def test_help_does_not_import_heavy_libraries():
    code = "import sys, scheduler; from click.testing import CliRunner; CliRunner().invoke(scheduler.cli, ['--help']);"
    code += "print(sorted(m for m in ('boto3', 'docker', 'apscheduler', 'sqlalchemy', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
