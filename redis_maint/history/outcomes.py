"""Reading outcomes from the history: a job's last real success or failure.

A "real" run is one that succeeded or failed and was not a dry run: skipped, missed and
interrupted runs, and rehearsals, say nothing about the state of what a job maintains.
"""

from __future__ import annotations

from redis_maint.history.runs import HistoryStore, Run, RunStatus

OUTCOMES = (RunStatus.SUCCEEDED, RunStatus.FAILED)
# Rows to look through for a real one: dry runs and skips can sit in between.
LOOKBACK_ROWS = 200


def is_real(run: Run) -> bool:
    return run.status in OUTCOMES and not (run.summary or {}).get("dry_run")


def last_real(store: HistoryStore, job: str, status: str) -> Run | None:
    """The newest run of `job` with this status that was not a dry run."""
    rows = store.list(job=job, status=status, limit=LOOKBACK_ROWS)
    return next((r for r in rows if is_real(r)), None)


def last_outcome(store: HistoryStore, job: str) -> Run | None:
    """The newest real run of `job`, succeeded or failed."""
    found = [r for r in (last_real(store, job, s) for s in OUTCOMES) if r is not None]
    return max(found, key=lambda r: r.id) if found else None


def previous_outcomes(store: HistoryStore, run: Run) -> list[Run]:
    """Real runs of the same job before `run`, newest first.

    Read by status: a daemon's start can record more than LOOKBACK_ROWS missed slots after a job's
    last real outcome, and they must not hide it.
    """
    rows = [r for status in OUTCOMES for r in store.list(job=run.job, status=status, limit=LOOKBACK_ROWS)]
    return sorted((r for r in rows if r.id < run.id and is_real(r)), key=lambda r: r.id, reverse=True)
