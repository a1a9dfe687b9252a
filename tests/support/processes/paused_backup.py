"""A real `backup` run that stops itself with SIGSTOP at a chosen step, for the fencing tests.

`python -m tests.support.processes.paused_backup STEP READY_FILE` runs the backup job through the real run
path (lease, fencing token, history row, catalog, local or S3 target). Just before STEP (`commit_point`:
the first commit point, publishing the manifest once the files are uploaded; `_retention`: the prune), it
writes its run's fencing token to READY_FILE and sends itself SIGSTOP, as if the host had paused it. The test takes the job over meanwhile and resumes it
with SIGCONT. On exit it prints the run's history row as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import jobs.backup as backup
from config import load_settings
from jobs import REGISTRY
from jobs.base import JobContext
from redis_maint.history.leases import Lease
from redis_maint.run import runner


def _paused(step: str, ready: Path):
    original = getattr(backup, step)

    def pause_then_go_on(ctx, *args, **kwargs):
        ready.write_text(json.dumps({"run_id": ctx.run_id, "fence": ctx.fence}))
        os.kill(os.getpid(), signal.SIGSTOP)  # every thread stops here, the lease heartbeat too
        return original(ctx, *args, **kwargs)

    return pause_then_go_on


def _paused_once_at_commit_point(ready: Path):
    """Pause just before the first commit point; once resumed, that commit point's own check runs before
    the lease heartbeat may renew. Otherwise which of the two notices the takeover first is up to the
    scheduler (on a loaded machine the heartbeat often wins), and the test is about the commit point's
    fencing check; the heartbeat's own verdict is what test_leases covers."""
    original = JobContext.commit_point
    checked = threading.Event()
    renew = Lease._renew

    def renew_after_the_check(lease):
        if ready.exists() and threading.current_thread().name.startswith("lease-"):
            checked.wait(60)
        return renew(lease)

    Lease._renew = renew_after_the_check

    def pause_then_go_on(ctx, what):
        if ready.exists():
            return original(ctx, what)
        ready.write_text(json.dumps({"run_id": ctx.run_id, "fence": ctx.fence, "what": what}))
        os.kill(os.getpid(), signal.SIGSTOP)
        try:
            return original(ctx, what)
        finally:
            checked.set()

    return pause_then_go_on


def main() -> int:
    step, ready = sys.argv[1], Path(sys.argv[2])
    if step == "commit_point":
        JobContext.commit_point = _paused_once_at_commit_point(ready)
    else:
        setattr(backup, step, _paused(step, ready))
    run = runner.execute(load_settings(jobs=REGISTRY), "backup", trigger="manual", requested_by="paused")
    print(json.dumps(run.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
