"""`redis-maint history | head -1` ends quietly: exit 0 or 141 (SIGPIPE's convention), no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from redis_maint.history import db
from redis_maint.history.runs import RunStatus
from redis_maint.timeutil import utcnow
from tests.support.common import ROOT
from tests.support.history import current_store

ROWS = 5000  # far more than a pipe's 64 KiB buffer holds in any format


@pytest.fixture
def many_runs():
    store = current_store()
    now = utcnow()
    row = {
        "trigger": "manual",
        "requested_by": "tester",
        "host": "h",
        "pid": 1,
        "status": RunStatus.SUCCEEDED,
    }
    with store.engine.begin() as conn:
        conn.execute(
            db.runs.insert(),
            [
                {
                    **row,
                    "job": "health",
                    "started_at": now,
                    "finished_at": now,
                    "summary": {"level": "ok", "n": i},
                }
                for i in range(ROWS)
            ],
        )
    return ROWS


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--csv"]], ids=["table", "json", "csv"])
def test_history_into_head_ends_quietly(many_runs, tmp_path, fmt):
    errors = tmp_path / "stderr"
    command = [sys.executable, str(ROOT / "scheduler.py"), "history", "--limit", str(many_runs), *fmt]
    script = " ".join(map(repr, command)) + f' 2>{errors} | head -1; echo "exit=${{PIPESTATUS[0]}}"'
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    first, status = shell.stdout.splitlines()[0], shell.stdout.splitlines()[-1]
    assert first.strip(), shell.stdout
    assert status in ("exit=0", "exit=141"), (status, errors.read_text())
    stderr = errors.read_text()
    for noise in ("Traceback", "Exception ignored", "BrokenPipeError", "Error"):
        assert noise not in stderr, stderr


def test_a_reader_that_closes_early_gets_no_traceback_from_a_real_subprocess(many_runs):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "history", "--csv", "--limit", str(many_runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    header = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert header.startswith(b"id,job,trigger")
    assert code == 141, stderr
    assert stderr == ""
