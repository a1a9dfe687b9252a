"""The `audit-report` job: `redis-maint report --from DATE --to DATE`, the evidence for an external
auditor as one HTML page (or CSV, or JSON). Never scheduled.

A report proves something, so it is a run like any other: who asked, for which range, and the
sha256 of the document it wrote are in its history row, and the document names that run. It reads
the history store and the settings only; it changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from config.types import OnDemandSettings
from jobs.base import Job, JobContext, Params
from redis_maint.errors import MaintenanceError, UsageError
from redis_maint.report import csv_rows, data, html_page
from redis_maint.report.period import Period, period
from redis_maint.timeutil import isoformat, utcnow

# The jobs that reconcile the catalog with the target: the daily one and `redis-maint backups check`.
BACKUPS_CHECK_JOBS = ("backup-audit", "backup-reconcile")


class AuditReportSettings(OnDemandSettings):
    """audit-report runs only from `redis-maint report`."""


class ReportParams(Params):
    start: str = Field(min_length=1, description="--from: an ISO date or datetime (no timezone: UTC)")
    end: str = Field(
        min_length=1, description="--to: an ISO date (that whole day) or datetime (not included)"
    )
    format: Literal["html", "csv", "json"] = Field(default="html", description="html, csv or json")
    out: str = Field(min_length=1, description="the file the report is written to")
    to_stdout: bool = Field(
        default=False, description="`out` is the CLI's own temp file, printed and removed"
    )

    @model_validator(mode="after")
    def _a_range(self) -> ReportParams:
        period(self.start, self.end)  # ValueError: a usage error, before anything is recorded
        return self

    def period(self) -> Period:
        return period(self.start, self.end)

    def before_lease(self, settings: Any, store: Any) -> None:
        directory = Path(self.out).absolute().parent
        if not directory.is_dir():
            raise UsageError(f"--out {self.out}: the directory {directory} does not exist; create it first")
        if not os.access(directory, os.W_OK):
            raise UsageError(f"--out {self.out}: uid {os.getuid()} cannot write to {directory}")

    def recorded(self) -> dict[str, Any]:
        return {
            "from": self.start,
            "to": self.end,
            "format": self.format,
            "out": "-" if self.to_stdout else str(Path(self.out).absolute()),
        }


def run(ctx: JobContext) -> dict[str, Any]:
    params: ReportParams = ctx.params
    report = data.build(gather(ctx, params.period()))
    text = render(report, params.format)
    ctx.checkpoint()
    body = text.encode()
    write_atomically(Path(params.out), body)
    r = report["report"]
    return {
        "from": r["from"],
        "to": r["to"],
        "days": r["days"],
        "zone_assumed": r["zone_assumed"],
        "format": params.format,
        "out": "-" if params.to_stdout else str(Path(params.out).absolute()),
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "empty": r["empty"],
        "message": r["message"],
        "counts": report["counts"],
        "rpo_compliant": report["rpo"]["compliant"],
    }


def gather(ctx: JobContext, p: Period) -> data.Inputs:
    """Everything the report shows, read from the history store and the settings in force."""
    from redis_maint.history import evidence

    store, instance = ctx.store, ctx.settings.instance
    now = utcnow()
    return data.Inputs(
        period=p,
        generated_at=now,
        instance=instance,
        rpo_s=int(ctx.settings.job("backup-age").rpo.total_seconds()),
        runs=evidence.runs_between(store, p.start, p.end),
        backups=evidence.backups_between(store, p.start, p.end, instance),
        prior_backup=evidence.last_complete_before(store, p.start, instance),
        verifications=evidence.runs_of(store, data.DRILL_JOBS, since=p.start),
        # The schema's secret-bearing fields serialise masked, as `config show` prints them.
        settings=ctx.settings.model_dump(mode="json"),
        audit_verify=audit_result(ctx),
        backups_check=last_backups_check(ctx, p),
        run_id=ctx.run_id,
        requested_by=ctx.requested_by,
        os_user=os_user(),
        host=socket.gethostname(),
        version=_version(),
        exclude_run_ids={ctx.run_id},
    )


def audit_result(ctx: JobContext) -> dict[str, Any]:
    """`audit verify`'s result now: the hash chain and the newest checkpoints on the target."""
    from redis_maint.audit.check import verify_against

    return verify_against(ctx.store.engine, ctx.settings.target.open, ctx.settings.instance)


def last_backups_check(ctx: JobContext, p: Period) -> dict[str, Any] | None:
    from redis_maint.history import evidence

    run = evidence.last_run(ctx.store, BACKUPS_CHECK_JOBS, before=p.end)
    if run is None:
        return None
    summary = run.get("summary") or {}
    facts = {
        "run_id": run["id"],
        "started_at": isoformat(run["started_at"]),
        "status": run["status"],
        "job": run["job"],
        "requested_by": run.get("requested_by"),
    }
    for key in ("ok", "checked", "missing", "changed", "unknown", "read_data"):
        facts[key] = summary.get(key)
    facts["error"] = run.get("error")
    return facts


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "html":
        return html_page.render(report)
    if fmt == "csv":
        return csv_rows.render(report)
    import json

    return json.dumps(report, indent=2, default=str) + "\n"


def write_atomically(path: Path, body: bytes) -> None:
    """The whole document or nothing: a temp file beside it, renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise MaintenanceError(
            f"could not write the report to {path}: {exc.strerror or exc}; check the path and free space"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def os_user() -> str | None:
    """Who this process runs as, from the OS (not $USER, which anyone can set)."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def _version() -> str:
    from redis_maint import __version__

    return __version__


JOB = Job(
    name="audit-report",
    description="the evidence for an external auditor over a date range (report --from --to); never scheduled",
    settings_model=AuditReportSettings,
    run=run,
    params_model=ReportParams,
)
