"""A real redis-maint run that pauses AOF rewrites and holds the pause until told to go.

`python -m tests.support.processes.aof_guard_holder JOB` runs JOB through the real run path (lease, history row)
with its body replaced: enter the AOF-rewrite guard, print `paused <run_id>`, and wait for a
line on stdin. Tests kill it with SIGKILL to leave a pause behind, as a crash would.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta

import jobs
from config import load_settings
from jobs import REGISTRY
from redis_maint.run import runner
from redis_maint.snapshot.aof_guard import aof_rewrite_paused


def _hold(ctx) -> dict:
    client = ctx.redis()
    with aof_rewrite_paused(
        client, checkpoint=ctx.checkpoint, timeout=timedelta(seconds=30), note=ctx.settings.aof_guard_note
    ):
        print(f"paused {ctx.run_id}", flush=True)
        sys.stdin.readline()
    return {}


def main(job: str) -> int:
    jobs.REGISTRY[job] = dataclasses.replace(jobs.REGISTRY[job], run=_hold)
    run = runner.execute(load_settings(jobs=REGISTRY), job, trigger="manual", requested_by="holder")
    print(f"finished {run.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
