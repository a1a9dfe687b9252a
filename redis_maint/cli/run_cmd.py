from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.completers import job_names
from redis_maint.cli.help_text import RunCommand
from redis_maint.cli.output import describe_run, emit_json, verbose_option
from redis_maint.cli.progress import progress_for


def run_and_report(app: App, job: str, as_json: bool, **kwargs) -> None:
    """Run a job through the one run path, print the row, exit with the run's code."""
    from redis_maint.history.runs import Trigger
    from redis_maint.run import runner

    requested_by = kwargs.pop("requested_by", None) or runner.default_requester()
    run = app.runner().execute(
        job,
        trigger=Trigger.MANUAL,
        requested_by=requested_by,
        progress=progress_for(as_json),
        **kwargs,
    )
    if as_json:
        emit_json(run.to_json())
    else:
        describe_run(run)
    raise click.exceptions.Exit(runner.exit_code_for(run))


def run_row_options(fn):
    """--json, --as and -v, shared by every command that runs a job through the run path."""
    fn = verbose_option(fn)
    fn = click.option("--as", "requested_by", metavar="NAME", help="Who asked (default: $USER).")(fn)
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the run's history row as JSON on stdout."
    )(fn)


@click.command(cls=RunCommand)
@click.argument("job", shell_complete=job_names)
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
@click.option(
    "--no-prune",
    is_flag=True,
    help="backup only: store the backup but apply no retention (e.g. an ad hoc backup before a change).",
)
@click.option(
    "--cluster-id",
    metavar="ID",
    help="backup only, on Redis Cluster: the cluster backup this shard's backup joins (give every shard's "
    "sidecar the same ID; scheduled runs use their slot).",
)
@run_row_options
@pass_app
def run(
    app: App,
    job: str,
    dry_run: bool,
    no_prune: bool,
    as_json: bool,
    requested_by: str | None,
    cluster_id: str | None = None,
) -> None:
    """Run JOB now, in this process, through the same path as the daemon.

    Exit 0 on success, 1 on failure, 2 for bad parameters (nothing runs),
    75 when another run holds the job's lock.

    \b
    Examples:
      redis-maint run health
      redis-maint run backup --dry-run
      redis-maint run backup --no-prune --as alice --json
      redis-maint run session-sweep --json | jq .summary

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the maintained Redis
      REDIS_MAINT_DATA_DIR      Redis's data dir, as this process sees it
      REDIS_MAINT_HISTORY_URL   where the run is recorded
      REDIS_MAINT_TARGET__URI   where backups go (S3 credentials: the standard AWS_* variables)
      REDIS_MAINT_JOBS__<JOB>__<FIELD>   the job's own settings
    """
    params = {"prune": False} if no_prune else None
    if cluster_id is not None:
        params = {**(params or {}), "cluster_id": cluster_id}
    run_and_report(app, job, as_json, dry_run=dry_run, params=params, requested_by=requested_by)
