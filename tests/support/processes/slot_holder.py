"""A real sidecar's run of one claimed slot that never finishes, for the failover tests.

`python -m tests.support.processes.slot_holder JOB SLOT` runs JOB through the real run path as the
daemon would (trigger `scheduled`, the slot SLOT claimed), with its body replaced: print
`running <run_id> <fence>` and wait. Tests SIGKILL it, as a crashed sidecar.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import datetime

import jobs
from config import load_settings
from jobs import REGISTRY
from redis_maint.run.runner import build_runner


def _hold(ctx) -> dict:
    print(f"running {ctx.run_id} {ctx.fence}", flush=True)
    while True:
        time.sleep(1)


def main() -> int:
    name, slot = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    jobs.REGISTRY[name] = dataclasses.replace(REGISTRY[name], run=_hold)
    build_runner(load_settings(jobs=REGISTRY)).execute(
        name, trigger="scheduled", requested_by="daemon", scheduled_for=slot, claim=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
