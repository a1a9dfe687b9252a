from __future__ import annotations

import csv
import sys

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json, table
from redis_maint.cli.types import DURATION

STATUSES = ["running", "succeeded", "failed", "skipped", "interrupted", "missed"]


@click.command()
@click.option("--job", help="Only this job.")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option("--since", type=DURATION, help="Only runs started within this long, e.g. 7d, 12h.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout, newest first.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout, newest first.")
@pass_app
def history(app: App, job, status, since, limit, as_json, as_csv) -> None:
    """Runs, newest first: scheduled, manual, catch-up, skipped and missed.

    \b
    Examples:
      redis-maint history --job backup --since 7d
      redis-maint history --status failed --limit 10
      redis-maint history --json | jq '.[0]'
      redis-maint history --csv --since 30d > runs.csv

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store
    """
    from redis_maint.timeutil import utcnow

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    cutoff = utcnow() - since if since else None
    runs = [r.to_json() for r in app.store().list(job=job, status=status, since=cutoff, limit=limit)]
    if as_json:
        emit_json(runs)
    elif as_csv:
        _write_csv(runs)
    else:
        table(
            None,
            ["id", "job", "trigger", "by", "started", "status", "error"],
            [
                [
                    r["id"],
                    r["job"],
                    r["trigger"],
                    r["requested_by"],
                    r["started_at"],
                    r["status"],
                    (r["error"] or "")[:80],
                ]
                for r in runs
            ],
        )


def _write_csv(runs: list[dict]) -> None:
    import json

    from redis_maint.history.runs import RUN_FIELDS

    # The run row's own keys, with the bulky summary last.
    fields = [k for k in RUN_FIELDS if k != "summary"] + ["summary"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in runs:
        writer.writerow({**r, "summary": json.dumps(r["summary"], default=str)})
