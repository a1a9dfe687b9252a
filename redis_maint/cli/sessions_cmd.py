"""`redis-maint sessions`: the runbook's session operations, SCAN-based, never KEYS.

`sweep` and `delete` are runs in history (jobs session-sweep and session-delete); `count` only reads.
What would log users out asks for --yes first: a sweep below max_age, an organisation delete, --all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli import sessions_messages as msg
from redis_maint.cli.output import describe_run, emit_json
from redis_maint.cli.progress import progress_for
from redis_maint.cli.render.listing import emit, mode_for, output_option, write_rows
from redis_maint.cli.run_cmd import run_and_report, run_row_options
from redis_maint.cli.types import DURATION
from redis_maint.errors import UsageError
from redis_maint.progress import Progress


def _total_column():
    from redis_maint.cli.render.listing import Column

    return Column("total", "sessions", lambda r: r["total"])


@click.group()
def sessions() -> None:
    """Count, sweep and delete sessions (the runbook's Session Inspection, without KEYS).

    \b
    Examples:
      redis-maint sessions count --by-org
      redis-maint sessions sweep --dry-run
      redis-maint sessions delete --org ORG_ID --dry-run

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis holding the sessions
      REDIS_MAINT_SESSIONS__<FIELD>   key_pattern, created_field, organisation_field, batch sizes
    """


@sessions.command("count")
@click.option("--by-org", is_flag=True, help="Also count per organisation (reads every session).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='JSON on stdout: {"total": N, "by_org": {...}, "no_org": N, "unreadable": N}.',
)
@output_option
@pass_app
def count_cmd(app: App, by_org: bool, as_json: bool, output: str | None) -> None:
    """Count sessions with SCAN (never KEYS).

    \b
    Examples:
      redis-maint sessions count
      redis-maint sessions count --by-org
      redis-maint sessions count --by-org --json | jq .by_org

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis holding the sessions
      REDIS_MAINT_SESSIONS__<FIELD>   key_pattern, created_field, organisation_field, batch sizes
    """
    mode = mode_for(output, as_json)
    # A bar only under a table on a terminal: never in JSON or a pipe's tsv/csv.
    result = count_sessions(app, by_org, progress_for(as_json, mode))
    if mode == "json":
        emit_json(result)
    elif by_org:
        _count_by_org(result, mode)
    elif mode in ("tsv", "csv"):
        write_rows(mode, [_total_column()], [result])
    else:
        click.echo(f"sessions: {result['total']:,}")


def _count_by_org(result: dict[str, Any], mode: str) -> None:
    """One row per organisation, largest first; on a table, the totals under it."""
    from redis_maint.cli.render.columns import ORGS

    rows = [{"organisation": org, "sessions": n} for org, n in result["by_org"].items()]
    rows.sort(key=lambda r: (-r["sessions"], r["organisation"]))
    emit(mode, ORGS, rows)
    if mode in ("table", "wide"):
        click.echo(f"sessions: {result['total']:,}")
        click.echo(f"without an organisationId (--no-org): {result['no_org']:,}")
        click.echo(f"unreadable (not a JSON object): {result['unreadable']:,}")


@sessions.command("sweep")
@click.option("--older-than", type=DURATION, help="Stale threshold for this run (default: max_age).")
@click.option("--dry-run", is_flag=True, help="Report exactly what a real run would do; change nothing.")
@click.option("--delete-unreadable", is_flag=True, help="Also delete sessions with no usable createdAt.")
@click.option(
    "--yes", is_flag=True, help="Go ahead even when --older-than is below max_age (logs users out)."
)
@run_row_options
@pass_app
def sweep_cmd(
    app: App,
    older_than: timedelta | None,
    dry_run: bool,
    delete_unreadable: bool,
    yes: bool,
    as_json: bool,
    requested_by: str | None,
) -> None:
    """Run the session-sweep job now, recorded in history as a manual run.

    An --older-than below max_age deletes live sessions: without --yes (or --dry-run) a dry pass
    shows how many would go, and the command refuses with exit 2.
    Exit 0 on success, 1 on failure, 75 when another sweep holds the lock.

    \b
    Examples:
      redis-maint sessions sweep --dry-run
      redis-maint sessions sweep --older-than 12h --yes
      redis-maint sessions sweep --delete-unreadable --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis holding the sessions
      REDIS_MAINT_SESSIONS__<FIELD>   key_pattern, created_field, organisation_field, batch sizes
      REDIS_MAINT_JOBS__SESSION_SWEEP__MAX_AGE   when a session is stale
      REDIS_MAINT_HISTORY_URL   where the run is recorded
    """
    from jobs.session_sweep import JOB, logs_users_out

    raw: dict[str, Any] = {"older_than": older_than, "delete_unreadable": delete_unreadable}
    params = JOB.parse_params({k: v for k, v in raw.items() if v})
    if not dry_run and not yes and logs_users_out(app.settings().job("session-sweep"), params):
        _refuse_early_sweep(app, params, as_json, requested_by)
    run_and_report(app, "session-sweep", as_json, dry_run=dry_run, params=params, requested_by=requested_by)


def _refuse_early_sweep(app: App, params: Any, as_json: bool, requested_by: str | None) -> None:
    """Dry-pass the sweep as asked (the real engine, changing nothing) and refuse with its counts."""
    from jobs import session_runs
    from jobs.session_sweep import plan_for
    from redis_maint import sessions
    from redis_maint.durations import format_duration

    progress = progress_for(as_json)

    def dry_pass(client, settings) -> Any:
        return sessions.sweep(
            client,
            settings.redis_url,
            plan_for(settings, settings.job("session-sweep"), params, True, params.older_than),
            batching=session_runs.batching(settings.sessions),
            timeout=settings.redis_timeout,
            idle_cpu=settings.sessions.idle_cpu,
            on_start=lambda total: progress.start(total, "sweeping sessions (dry run)", "keys"),
            on_tick=progress.advance,
        )

    try:
        report = _with_redis(app, dry_pass)
    finally:
        progress.finish()
    s = app.settings().job("session-sweep")
    older = format_duration(params.older_than)
    why = msg.early_sweep(older, format_duration(s.max_age), report.deleted, report.scanned)
    args = ["sessions", "sweep", "--older-than", older]
    args += ["--delete-unreadable"] if params.delete_unreadable else []
    raise UsageError(msg.refusal(why, _suggest(app, [*args, "--yes"], as_json, requested_by)))


@sessions.command("delete")
@click.option("--org", "org_id", metavar="ORG_ID", help="Delete this organisation's sessions, nothing else.")
@click.option(
    "--no-org", is_flag=True, help="Delete the sessions without an organisationId (missing or null)."
)
@click.option("--all", "everything", is_flag=True, help="Delete every session (the emergency path).")
@click.option("--dry-run", is_flag=True, help="Report exactly what would be deleted; change nothing.")
@click.option("--yes", is_flag=True, help="Do it without asking.")
@run_row_options
@pass_app
def delete_cmd(
    app: App,
    org_id: str | None,
    no_org: bool,
    everything: bool,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    requested_by: str | None,
) -> None:
    """Delete one organisation's sessions (--org), those without one (--no-org) or all (--all),
    as a run in history.

    Without --yes (and without --dry-run) it counts what would go and asks on a terminal
    (--org, --no-org); otherwise it refuses with exit 2. A target that matches no session
    refuses with exit 2 and names the largest organisations; with --yes it is a run that
    matched 0 (exit 0), and the same list goes to stderr.

    \b
    Examples:
      redis-maint sessions delete --org 3f2a9c --dry-run
      redis-maint sessions delete --org 3f2a9c --yes
      redis-maint sessions delete --no-org --yes --as alice
      redis-maint sessions delete --all --yes --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis holding the sessions
      REDIS_MAINT_SESSIONS__<FIELD>   key_pattern, created_field, organisation_field, batch sizes
      REDIS_MAINT_HISTORY_URL   where the run is recorded
    """
    from jobs.session_delete import JOB

    if (org_id is not None) + no_org + everything != 1:
        raise click.UsageError("give exactly one of --org ORG_ID, --no-org or --all")
    raw = {"org": org_id, "no_org": no_org, "all": everything}
    params = JOB.parse_params({k: v for k, v in raw.items() if v is not None and v is not False})
    if not dry_run and not yes:
        _confirm_or_refuse(app, params, as_json, requested_by)
    _run_delete(app, params, dry_run, as_json, requested_by)


def _confirm_or_refuse(app: App, params: Any, as_json: bool, requested_by: str | None) -> None:
    """Show what would be deleted; on a terminal ask (--org/--no-org only), else refuse with exit 2."""
    if params.all:
        n = count_sessions(app, by_org=False, progress=progress_for(as_json))["total"]
        what = f"{n} sessions (every session)"
    else:
        census = count_sessions(app, by_org=True, progress=progress_for(as_json))
        n = census["no_org"] if params.no_org else census["by_org"].get(params.org, 0)
        if n == 0:
            raise UsageError(msg.no_match(params.org, params.no_org, census["by_org"], census["no_org"]))
        what = msg.sessions_of(n, params.org, params.no_org)
    if not params.all and not as_json and sys.stdin.isatty():
        if click.confirm(f"Delete {what}?", default=False, err=True):
            return
        raise UsageError("nothing deleted: not confirmed")
    flags = msg.org_flags(params.org, params.no_org)
    raise UsageError(
        msg.refusal(
            msg.would_delete(what),
            _suggest(app, ["sessions", "delete", *flags, "--yes"], as_json, requested_by),
        )
    )


def _run_delete(app: App, params: Any, dry_run: bool, as_json: bool, requested_by: str | None) -> None:
    """run_and_report, plus a plain word on stderr when the target matched no session."""
    from redis_maint.history.runs import Trigger
    from redis_maint.run import runner

    run = app.runner().execute(
        "session-delete",
        trigger=Trigger.MANUAL,
        requested_by=requested_by or runner.default_requester(),
        progress=progress_for(as_json),
        dry_run=dry_run,
        params=params,
    )
    if as_json:
        emit_json(run.to_json())
    else:
        describe_run(run)
    summary = run.summary or {}
    if summary.get("matched") == 0:
        by_org, no_org = summary.get("remaining_by_org", {}), summary.get("remaining_no_org", 0)
        click.echo(f"redis-maint: {msg.no_match(params.org, params.no_org, by_org, no_org)}", err=True)
    raise click.exceptions.Exit(runner.exit_code_for(run))


def _suggest(app: App, args: list[str], as_json: bool, requested_by: str | None) -> str:
    return msg.command(
        args,
        config_path=app.config_path,
        log_format=app.log_format_given or "json",
        as_json=as_json,
        requested_by=requested_by,
    )


def count_sessions(app: App, by_org: bool, progress: Progress | None = None) -> dict[str, Any]:
    from jobs import session_runs
    from redis_maint import sessions

    def census(client, settings) -> dict[str, Any]:
        return sessions.count(
            client,
            settings.redis_url,
            session_runs.layout(settings.sessions),
            by_org=by_org,
            batching=session_runs.batching(settings.sessions),
            timeout=settings.redis_timeout,
            idle_cpu=settings.sessions.idle_cpu,
            progress=progress,
        )

    return _with_redis(app, census)


def _with_redis(app: App, fn: Callable[..., Any]) -> Any:
    """`fn(client, settings)` on a connection to the maintained Redis."""
    from redis_maint.redis_conn import connect

    settings = app.settings()
    client = connect(settings.redis_url, settings.redis_timeout)
    try:
        return fn(client, settings)
    finally:
        client.close()
