"""Several real `scheduler.py daemon` sidecars on one history store, and the figures that say whether
each scheduled slot ran exactly once (tests/test_exactly_once.py and bench/exactly_once.py).

A slot is `(job, scheduled_for)` (every sidecar here is beside the same Redis node, so node jobs
have one scope too). It *ran* when a row of it reached an outcome (succeeded or failed) or is still
running; it ran *twice* when two rows of it reached an outcome. A slot with no such row was *lost*;
one lost within one period of a kill (either side) is counted apart, the goal being none beyond.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = ("succeeded", "failed")
DAEMON_TRIGGERS = ("scheduled", "catch-up")


def sidecar_env(jobs: list[str], every: str, **extra: str) -> dict[str, str]:
    """Every job off but `jobs`, each on `every`; no HTTP endpoint."""
    import jobs as registry

    env = {f"REDIS_MAINT_JOBS__{n.upper().replace('-', '_')}__SCHEDULE": "off" for n in registry.REGISTRY}
    env.update({f"REDIS_MAINT_JOBS__{n.upper().replace('-', '_')}__SCHEDULE": every for n in jobs})
    return {**os.environ, **env, "REDIS_MAINT_HTTP__PORT": "0", **extra}


def start_sidecar(
    env: dict[str, str], *, skew: float | None = None, log: Path | None = None
) -> subprocess.Popen:
    """A daemon process; with `skew` its wall clock runs that many seconds ahead (processes/skewed.py)."""
    cmd = [sys.executable, str(ROOT / "scheduler.py"), "daemon"]
    if skew:
        cmd = [sys.executable, "-m", "tests.support.processes.skewed", str(skew), "daemon"]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, cwd=ROOT, env=env)


def started(log: Path) -> bool:
    """Whether the sidecar logging to `log` is up: signal handlers in place, schedules added (a SIGTERM
    before that kills a process still importing, exit -15)."""
    return log.exists() and '"msg": "daemon started"' in log.read_text(errors="replace")


def stop_sidecar(proc: subprocess.Popen, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def kill_sidecar(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


@dataclass
class Figures:
    slots: int = 0  # expected slots in the window, all jobs
    ran: int = 0
    run_twice: list[tuple[str, datetime]] = field(default_factory=list)
    lost: list[tuple[str, datetime]] = field(default_factory=list)
    lost_beyond: list[tuple[str, datetime]] = field(default_factory=list)
    catch_ups: int = 0
    interrupted: int = 0
    skipped: int = 0
    missed: int = 0
    by_pid: dict[int, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"slots in the window        {self.slots}",
            f"slots run                  {self.ran}",
            f"slots run twice            {len(self.run_twice)}  (goal 0)",
            f"slots lost beyond 1 period {len(self.lost_beyond)}  (goal 0)",
            f"slots lost within 1 period {len(self.lost) - len(self.lost_beyond)} of a kill",
            f"catch-up runs (failover)   {self.catch_ups}",
            f"runs interrupted (killed)  {self.interrupted}",
            f"rows skipped / missed      {self.skipped} / {self.missed}",
            f"runs per daemon pid        {dict(sorted(self.by_pid.items()))}",
        ]


def grid(start: datetime, end: datetime, period: timedelta) -> list[datetime]:
    """Slots of an `every` schedule (anchored at the epoch) in [start, end]."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + -((epoch - start) // period) * period
    out, slot = [], first
    while slot <= end:
        out.append(slot)
        slot += period
    return out


def figures(
    store, jobs: list[str], period: timedelta, start: datetime, end: datetime, kills: list[datetime]
) -> Figures:
    """The figures for slots in [start, end] (pick a window every sidecar had the chance to cover)."""
    from redis_maint.history import db
    from redis_maint.timeutil import as_utc

    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                db.runs.c.job, db.runs.c.scheduled_for, db.runs.c.status, db.runs.c.trigger, db.runs.c.pid
            ).where(db.runs.c.job.in_(jobs), db.runs.c.trigger.in_(DAEMON_TRIGGERS))
        ).all()
    fig = Figures()
    statuses: dict[tuple[str, datetime], list[str]] = defaultdict(list)
    pids: Counter[int] = Counter()
    for job, slot, status, trigger, pid in rows:
        if slot is None:
            continue
        slot = as_utc(slot)
        if not start <= slot <= end:
            continue
        statuses[(job, slot)].append(status)
        fig.catch_ups += trigger == "catch-up" and status in OUTCOMES
        fig.interrupted += status == "interrupted"
        fig.skipped += status == "skipped"
        fig.missed += status == "missed"
        if status in OUTCOMES:
            pids[pid] += 1
    fig.by_pid = dict(pids)
    for job in jobs:
        for slot in grid(start, end, period):
            fig.slots += 1
            seen = statuses.get((job, slot), [])
            done = sum(s in OUTCOMES for s in seen)
            if done > 1:
                fig.run_twice.append((job, slot))
            if done or "running" in seen:
                fig.ran += 1
                continue
            fig.lost.append((job, slot))
            if not any(k - period <= slot <= k + period for k in kills):
                fig.lost_beyond.append((job, slot))
    return fig
