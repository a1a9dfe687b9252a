"""The explicit job registry: name -> Job. Add a job by importing its JOB here.

Importing a job module builds its settings and parameter models and nothing else: what a run needs
(the history store, Redis, Docker, boto3) is imported inside the run, so `config show` and `config
sample` load no job's machinery (tests/test_cli_imports.py).
"""

from __future__ import annotations

from typing import Any

from jobs import (
    aof_check,
    audit_checkpoint,
    audit_report,
    audit_verify,
    backup,
    backup_age,
    backup_audit,
    backup_check,
    backup_keep,
    backup_reconcile,
    backup_restore,
    backup_verify,
    diagnose,
    health,
    session_delete,
    session_sweep,
)
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
        backup_check.JOB,
        backup_restore.JOB,
        backup_keep.KEEP,
        backup_keep.UNKEEP,
        diagnose.JOB,
        audit_report.JOB,
        backup_reconcile.JOB,
        backup_audit.JOB,
        audit_verify.JOB,
        audit_checkpoint.JOB,
    )
}


def get_job(name: str) -> Job:
    from redis_maint.errors import UsageError

    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown job {name!r}; known jobs: {', '.join(sorted(REGISTRY))}") from None


def docker_verdicts(settings: Any) -> list[tuple[bool, str]]:
    """For each job that can start containers: (needs Docker as configured, why), for `doctor`."""
    verdicts = []
    for name, job in sorted(REGISTRY.items()):
        if job.containers is None:
            continue
        job_settings = settings.job(name)
        schedule = job_settings.schedule
        uses, why = job.containers(job_settings)
        if not uses:
            verdicts.append((False, f"{name}: {why}"))
        elif schedule.kind == "off":
            verdicts.append((False, f"{name}: schedule off"))
        else:
            verdicts.append((True, f"{name} ({schedule}): {why}"))
    return verdicts
