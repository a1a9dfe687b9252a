from __future__ import annotations

import csv
import sys
from datetime import timedelta

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.modes import mode_for, output_option
from redis_maint.cli.output import describe_run, emit_json, verbose_option
from redis_maint.cli.types import MOMENT, Moment

STATUSES = ["running", "succeeded", "failed", "skipped", "interrupted", "missed"]
TRIGGERS = ["scheduled", "manual", "catch-up"]


@click.group(invoke_without_command=True)
@click.option("--job", help="Only this job.")
@click.option(
    "--status",
    "statuses",
    type=click.Choice(STATUSES),
    multiple=True,
    help="Only runs with this status (repeatable).",
)
@click.option(
    "--since",
    type=MOMENT,
    help="Only runs started at or after this: a date (2026-11-30), a time (2026-11-30T21:00, UTC unless a zone "
    "is given) or a duration ago (7d, 12h).",
)
@click.option(
    "--until",
    type=MOMENT,
    help="Only runs started before the end of this date, or at or before this time or duration ago.",
)
@click.option(
    "--trigger",
    "triggers",
    type=click.Choice(TRIGGERS),
    multiple=True,
    help="Only runs started this way (repeatable).",
)
@click.option(
    "--by", metavar="USER", help="Only runs requested by USER (--as, $USER), or run by that OS user."
)
@click.option(
    "--dry-run/--no-dry-run",
    "dry_run",
    default=None,
    help="Only dry runs, or only real ones (default: both).",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Every run that matches (no --limit).")
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout, newest first.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV on stdout, newest first (the same as -o csv): the row's keys, then dry_run, duration_s and the "
    "common summary figures in columns of their own, the rest of the summary as JSON last.",
)
@output_option
@pass_app
def history(
    app: App, job, statuses, since, until, triggers, by, dry_run, limit, show_all, as_json, as_csv, output
) -> None:
    """Runs, newest first: scheduled, manual, catch-up, skipped and missed.

    \b
    Examples:
      redis-maint history --job backup --since 7d
      redis-maint history --status failed --status missed --since 2026-11-01 --until 2026-11-30
      redis-maint history --by alice --trigger manual --no-dry-run --all
      redis-maint history --csv --all --since 30d > runs.csv

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store
    """
    from redis_maint.history.queries import RunFilter, find_runs

    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return  # `history show RUN_ID`
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if as_csv and output not in (None, "csv"):
        raise click.UsageError(f"--csv and -o {output} disagree: choose one")
    if show_all and ctx.get_parameter_source("limit") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--all and --limit disagree: choose one")
    if since is not None and until is not None and since.start() >= until.end():
        raise click.UsageError(
            f"--since {since.given} is not before --until {until.given}: no run can match; swap them"
        )
    mode = "csv" if as_csv else mode_for(output, as_json)
    where = RunFilter(
        job=job,
        statuses=tuple(statuses),
        triggers=tuple(triggers),
        by=by,
        since=None if since is None else since.start(),
        until=None if until is None else until.end(),
        dry_run=dry_run,
    )
    found, total = find_runs(app.store(), where, None if show_all else limit)
    runs = [r.to_json() for r in found]
    if mode == "json":
        emit_json(runs)
    elif mode == "csv":
        _write_csv(runs)  # the documented --csv: every row key, the summary figures, the rest as JSON
    else:
        from redis_maint.cli.render.columns import HISTORY
        from redis_maint.cli.render.listing import emit

        if mode in ("table", "wide") and (since or until):
            click.echo(range_line(since, until))
        emit(mode, HISTORY, runs)
        if mode in ("table", "wide") and total > len(runs):
            click.echo(f"showing {len(runs)} of {total} runs; --all shows every one")


def range_line(since: Moment | None, until: Moment | None) -> str:
    """The range asked for, in UTC, above the table (a date or time without a zone is UTC)."""
    from redis_maint.cli.render import human

    stamp = human.when
    parts = []
    if since is not None:
        parts.append(f"from {stamp(since.start())}")
    if until is not None:
        last = until.end() - timedelta(microseconds=1)
        parts.append(
            f"through {last.date().isoformat()}" if until.kind == "date" else f"until {stamp(until.at)}"
        )
    unzoned = [m.given for m in (since, until) if m is not None and not m.zone_given]
    note = f"; {' and '.join(unzoned)} read as UTC" if unzoned else ""
    return f"runs started {' '.join(parts)} (times in UTC{note})"


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


# Summary figures that get a CSV column of their own. A number or text moves out of the summary
# column into its own; a list is counted and a table of counts summed, and those stay in the summary too.
SUMMARY_COLUMNS = (
    "level",  # health: ok, warn, crit
    "backup_id",  # backup, backup-check, backup-restore, backup-keep, backup-verify, backup-age
    "bytes",  # backup: size of the files
    "files",  # backup: how many files
    "keys",  # keys in Redis at the backup (its redis.dbsize), or loaded by a restore drill
    "scanned",  # session-sweep, session-delete: sessions examined
    "deleted",  # session-sweep, session-delete: sessions deleted (every reason)
    "ttl_repaired",
    "unreadable",
    "matched",  # session-delete: sessions of the organisation
)


def csv_row(run: dict) -> dict:
    """One run as flat CSV columns: the row's keys, dry_run, duration_s, the summary figures, the
    rest of the summary as JSON."""
    import json

    summary = dict(run.get("summary") or {})
    out = {k: v for k, v in run.items() if k != "summary"}
    out["dry_run"] = bool(summary.pop("dry_run", False))
    out["duration_s"] = _duration(run, summary.pop("duration_s", None))
    for key in SUMMARY_COLUMNS:
        value = summary.get(key)
        if isinstance(value, dict):
            numbers = [v for v in value.values() if isinstance(v, int | float) and not isinstance(v, bool)]
            out[key] = sum(numbers) if numbers else None
        elif isinstance(value, list):
            out[key] = len(value)
        else:
            out[key] = summary.pop(key, None)
    if out["keys"] is None and isinstance(summary.get("redis"), dict):
        out["keys"] = summary["redis"].get("dbsize")
    out["summary"] = json.dumps(summary, default=str) if run.get("summary") is not None else "null"
    return out


def _duration(run: dict, recorded) -> float | None:
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        return recorded
    from redis_maint.cli.render import human

    took = human.took(run)
    return None if took is None else round(took, 3)


def csv_fields(runs: list[dict]) -> list[str]:
    from redis_maint.history.runs import RUN_FIELDS

    # The run row's own keys as they were, the new flat ones, and the bulky summary last.
    return [k for k in RUN_FIELDS if k != "summary"] + ["dry_run", "duration_s", *SUMMARY_COLUMNS, "summary"]


def _write_csv(runs: list[dict]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=csv_fields(runs), lineterminator="\n")
    writer.writeheader()
    for r in runs:
        row = csv_row(r)
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _csv_cell(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value
