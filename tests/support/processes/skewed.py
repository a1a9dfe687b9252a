"""`scheduler.py ARGS` in a process whose wall clock runs SECONDS ahead (negative: behind).

`python -m tests.support.processes.skewed SECONDS ARGS...` runs the real CLI (a daemon, `run JOB`)
under freezegun's ticking clock: datetime.now, time.time and what is built on them (our utcnow,
APScheduler's fire times) read SECONDS off, while sleeps and timeouts stay real. libfaketime would do
it below Python, but its clock_nanosleep breaks Python's time.sleep (EINVAL).
"""

from __future__ import annotations

import runpy
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    skew = timedelta(seconds=float(sys.argv[1]))
    sys.argv = [str(ROOT / "scheduler.py"), *sys.argv[2:]]
    with freeze_time(datetime.now(UTC) + skew, tick=True):
        runpy.run_path(str(ROOT / "scheduler.py"), run_name="__main__")


if __name__ == "__main__":
    main()
