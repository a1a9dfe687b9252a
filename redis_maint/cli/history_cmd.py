from __future__ import annotations

import csv
import sys

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.modes import mode_for, output_option
from redis_maint.cli.output import describe_run, emit_json, verbose_option
from redis_maint.cli.types import DURATION

STATUSES = ["running", "succeeded", "failed", "skipped", "interrupted", "missed"]


@click.group(invoke_without_command=True)
@click.option("--job", help="Only this job.")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option("--since", type=DURATION, help="Only runs started within this long, e.g. 7d, 12h.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout, newest first.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout, newest first (the same as -o csv).")
@output_option
@pass_app
def history(app: App, job, status, since, limit, as_json, as_csv, output) -> None:
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

    if click.get_current_context().invoked_subcommand is not None:
        return  # `history show RUN_ID`
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if as_csv and output not in (None, "csv"):
        raise click.UsageError(f"--csv and -o {output} disagree: choose one")
    mode = "csv" if as_csv else mode_for(output, as_json)
    cutoff = utcnow() - since if since else None
    runs = [r.to_json() for r in app.store().list(job=job, status=status, since=cutoff, limit=limit)]
    if mode == "json":
        emit_json(runs)
    elif mode == "csv":
        _write_csv(runs)  # the documented --csv: every row key, the summary as JSON
    else:
        from redis_maint.cli.render.columns import HISTORY
        from redis_maint.cli.render.listing import emit

        emit(mode, HISTORY, runs)


@history.command("show")
@click.argument("run_id", metavar="RUN_ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="The run's row as JSON, as in `history --json`.")
@verbose_option
@pass_app
def show(app: App, run_id: int, as_json: bool) -> None:
    """One past run, rendered like a fresh one: the verdict, then its job's figures (-v: the tools' output).

    \b
    Examples:
      redis-maint history show 42
      redis-maint history show 42 -v
      redis-maint history show 42 --json | jq .summary

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store
    """
    run = app.store().get(run_id)
    if run is None:
        raise click.UsageError(f"no run {run_id} in history (see `redis-maint history`)")
    if as_json:
        emit_json(run.to_json())
    else:
        describe_run(run)


def _write_csv(runs: list[dict]) -> None:
    import json

    from redis_maint.history.runs import RUN_FIELDS

    # The run row's own keys, with the bulky summary last.
    fields = [k for k in RUN_FIELDS if k != "summary"] + ["summary"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in runs:
        writer.writerow({**r, "summary": json.dumps(r["summary"], default=str)})
