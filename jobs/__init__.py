"""The explicit job registry: name -> Job. Add a job by importing its JOB here."""

from __future__ import annotations

from jobs import aof_check, backup, backup_age, backup_verify, health, session_delete, session_sweep
from jobs.base import Job

REGISTRY: dict[str, Job] = {
    job.name: job
    for job in (
        health.JOB,
        backup.JOB,
        aof_check.JOB,
        backup_age.JOB,
        backup_verify.JOB,
        session_sweep.JOB,
        session_delete.JOB,
    )
}


def get_job(name: str) -> Job:
    from redis_maint.errors import UsageError

    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown job {name!r}; known jobs: {', '.join(sorted(REGISTRY))}") from None
