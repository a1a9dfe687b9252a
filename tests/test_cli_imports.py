"""A command loads what it needs when it needs it: reading the history never imports a job,
the Redis client, the Docker SDK, boto3 or APScheduler (each costs start-up time in every call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.common import ROOT

HEAVY = ("docker", "boto3", "botocore", "apscheduler", "redis")
# Runs the real CLI in a fresh interpreter and reports which modules it loaded.
PROBE = """
import json, sys
from redis_maint.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="redis-maint", standalone_mode=False)
finally:
    sys.stdout.flush()
    print("\\n@@MODULES@@" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*args: str) -> set[str]:
    env = {**os.environ}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert "@@MODULES@@" in out.stderr, out.stderr[-2000:]
    return set(json.loads(out.stderr.rsplit("@@MODULES@@", 1)[1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m == "jobs" or m.startswith("jobs."))


@pytest.mark.parametrize("args", [("history", "--json"), ("backups", "list", "--json")])
def test_reading_the_history_imports_no_job_and_no_service_client(args):
    modules = loaded_by(*args)
    assert "redis_maint.history.runs" in modules  # it did read the history
    assert heavy(modules) == []


def test_listing_jobs_loads_their_settings_but_not_redis_docker_or_boto3():
    modules = loaded_by("jobs", "--json")
    assert "jobs.backup" in modules
    assert [m for m in heavy(modules) if m.split(".")[0] in ("redis", "docker", "boto3", "botocore")] == []
