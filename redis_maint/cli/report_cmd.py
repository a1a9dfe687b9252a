from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from redis_maint.cli import App, pass_app

SUFFIX = {"html": ".html", "csv": ".csv", "json": ".json"}


@click.command()
@click.option(
    "--from",
    "start",
    required=True,
    metavar="DATE",
    help="Start: an ISO date (2026-11-01) or datetime (2026-11-01T09:30, +01:00 or Z). No timezone: UTC.",
)
@click.option(
    "--to",
    "end",
    required=True,
    metavar="DATE",
    help="End: a date includes that whole day; a datetime is the end, not included. No timezone: UTC.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "csv", "json"]),
    default="html",
    show_default=True,
    help="html: one self-contained page (prints to PDF); csv: one file, a `section` column per row; "
    "json: the same facts as the page.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file (default: stdout).",
)
@click.option("--as", "requested_by", metavar="NAME", help="Who asked, for history (default: $USER).")
@pass_app
def report(app: App, start: str, end: str, fmt: str, out: Path | None, requested_by: str | None) -> None:
    """The evidence for an external auditor over a range: backup calendar, RPO gaps, restore drills
    with their RTO, failed/missed/skipped runs, ad hoc deletes/restores/keeps and who ran them, the
    history's and the target's integrity checks, and the settings in force (masked).

    Recorded as an `audit-report` run; its history row holds the sha256 of the document written,
    and the document names that run. An empty range still writes a report that says there is nothing
    in it (exit 0). Exit 2 for a bad date or range, 1 if the report could not be made.

    \b
    Examples:
      redis-maint report --from 2026-11-01 --to 2026-11-30 --out november.html
      redis-maint report --from 2026-11-01 --to 2026-12-01T00:00Z --format csv --out november.csv
      redis-maint report --from 2026-10-01 --to 2026-12-31 --format json | jq .rpo

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store the report is read from (and its run recorded in)
    """
    from redis_maint.history.runs import Trigger
    from redis_maint.run.runner import default_requester, exit_code_for

    scratch = None if out is not None else Path(tempfile.mkdtemp(prefix="redis-maint-report-"))
    path = out if out is not None else scratch / f"report{SUFFIX[fmt]}"
    params = {"start": start, "end": end, "format": fmt, "out": str(path), "to_stdout": out is None}
    try:
        run = app.runner().execute(
            "audit-report",
            trigger=Trigger.MANUAL,
            requested_by=requested_by or default_requester(),
            params=params,
        )
        if run.status == "succeeded" and scratch is not None:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.flush()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    _say(run, out)
    raise click.exceptions.Exit(exit_code_for(run))


def _say(run, out: Path | None) -> None:
    """One verdict line for people: on stdout beside a file, on stderr when stdout is the report."""
    from redis_maint.redact import redact

    summary = run.summary or {}
    if run.status != "succeeded" or "sha256" not in summary:
        click.echo(f"redis-maint: {redact(run.error or f'run {run.id} of {run.job} {run.status}')}", err=True)
        return
    where = str(out) if out is not None else "stdout"
    zone = "; dates without a timezone were read as UTC" if summary.get("zone_assumed") else ""
    lines = [
        f"report: {summary['days']} day{'' if summary['days'] == 1 else 's'}, {summary['from']} to {summary['to']} (UTC, end not included){zone}",
        f"  written {summary['bytes']:,} bytes ({summary['format']}) to {where}; sha256 {summary['sha256']}",
        f"  recorded as run {run.id} (`redis-maint history show {run.id}`)",
    ]
    if summary.get("empty"):
        lines.insert(1, f"  {summary['message']}")
    click.echo("\n".join(lines), err=out is None)
