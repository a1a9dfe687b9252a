"""Goal benchmark: several sidecars on one PostgreSQL run each scheduled slot exactly once.

    .venv/bin/python bench/exactly_once.py               # 3 daemons, 5 minutes, a SIGKILL every 30 s
    .venv/bin/python bench/exactly_once.py --minutes 1   # quicker

Starts its own PostgreSQL (as the tests do: tests/support/services/postgres.py, initdb into a temp dir
on a free port) and a small real redis-server (2,000 sessions), then 3 `scheduler.py daemon` processes
on the same history database, beside the same Redis node, with health, backup-age and session-sweep
on `every 2s` and everything else off. Every 30 s (`--kill-every`) one daemon (in turn) is SIGKILLed
and started again at once. With `--skew` (default 180 s), the last daemon's wall clock runs that far
ahead (tests/support/processes/skewed.py), so "one clock" is measured too.

At the end every daemon gets SIGTERM and the history is read: for each job and each 2 s slot of the
window (from one period after all three ran to one period before the stop), how many runs reached an
outcome. Figures: slots run twice (goal 0), slots lost beyond one period after a kill (goal 0), slots
lost within a period of a kill, catch-up runs, interrupted runs, and the runs per daemon process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis_maint.history.runs import HistoryStore  # noqa: E402
from redis_maint.run.exactly_once import grid_floor  # noqa: E402
from redis_maint.timeutil import utcnow  # noqa: E402
from tests.support.builders.backups import fill_sessions  # noqa: E402
from tests.support.exactly_once import (  # noqa: E402
    figures,
    kill_sidecar,
    sidecar_env,
    start_sidecar,
    stop_sidecar,
)
from tests.support.services.postgres import PostgresServer, find_bindir  # noqa: E402
from tests.support.services.redis import RedisServer  # noqa: E402

JOBS = ["health", "backup-age", "session-sweep"]
PERIOD = timedelta(seconds=2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=30.0, help="seconds between SIGKILLs")
    parser.add_argument(
        "--skew", type=float, default=180.0, help="seconds the last daemon's clock is ahead (0: none)"
    )
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        print("no PostgreSQL: run `bash scripts/system-deps.sh postgresql`", file=sys.stderr)
        return 2
    skew = args.skew or None
    work = Path(tempfile.mkdtemp(prefix="bench-exactly-once-"))
    pg = PostgresServer(bindir).init().start().setup_user()
    redis_server = RedisServer(work / "redis").start()
    try:
        fill_sessions(redis_server.client(), 2000)
        url = pg.url(pg.create_database())
        env = sidecar_env(
            JOBS,
            "every 2s",
            REDIS_MAINT_HISTORY_URL=url,
            REDIS_MAINT_REDIS_URL=redis_server.url,
            REDIS_MAINT_DATA_DIR=str(redis_server.dir),
            REDIS_MAINT_STATE_DIR=str(work / "state"),
        )
        HistoryStore(url)  # the schema, once, before the daemons race to create it
        return _run(args, env, url, skew, work)
    finally:
        redis_server.stop()
        pg.destroy()


def _run(args, env: dict[str, str], url: str, skew: float | None, work: Path) -> int:
    skews = [None] * (args.daemons - 1) + [skew]
    daemons = [start_sidecar(env, skew=s, log=work / f"daemon{i}.log") for i, s in enumerate(skews)]
    store = HistoryStore(url)
    time.sleep(5)  # start-up: imports, catch-up
    start = grid_floor(utcnow(), PERIOD) + PERIOD
    stop_at = time.monotonic() + args.minutes * 60
    kills, victim = [], 0
    next_kill = time.monotonic() + args.kill_every
    while time.monotonic() < stop_at:
        time.sleep(max(0.0, min(next_kill, stop_at) - time.monotonic()))
        if time.monotonic() >= stop_at:
            break
        kills.append(utcnow())
        kill_sidecar(daemons[victim])
        daemons[victim] = start_sidecar(env, skew=skews[victim], log=work / f"daemon{victim}.log")
        victim = (victim + 1) % len(daemons)
        next_kill += args.kill_every
    end = grid_floor(utcnow(), PERIOD) - PERIOD
    codes = [stop_sidecar(p) for p in daemons]
    fig = figures(store, JOBS, PERIOD, start, end, kills)
    print(f"exactly once: {args.daemons} daemons on one PostgreSQL, jobs {', '.join(JOBS)} every 2s")
    print(f"window {start.isoformat()} .. {end.isoformat()} ({(end - start).total_seconds():.0f} s)")
    print(
        f"SIGKILLs {len(kills)} (every {args.kill_every:g} s), skewed daemon: {f'{skew:+g} s' if skew else 'none'}"
    )
    print("\n".join(fig.lines()))
    print(f"daemon exit codes on SIGTERM: {codes}")
    for job, slot in fig.run_twice + fig.lost_beyond:
        rows = [r for r in store.list(job=job) if r.scheduled_for == slot]
        seen = "; ".join(f"run {r.id} {r.trigger} {r.status} pid {r.pid} fence {r.fence}" for r in rows)
        print(f"  {job} {slot.isoformat()}: {seen or 'no row'}")
    return 0 if not fig.run_twice and not fig.lost_beyond else 1


if __name__ == "__main__":
    sys.exit(main())
