"""`redis-maint sessions`: the runbook's session operations, SCAN-based, never KEYS.

`sweep` and `delete` are runs in history (jobs session-sweep and session-delete); `count` only reads.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json, table
from redis_maint.cli.run_cmd import run_and_report, run_row_options
from redis_maint.cli.types import DURATION
from redis_maint.errors import UsageError


@click.group()
def sessions() -> None:
    """Count, sweep and delete sessions (the runbook's Session Inspection, without KEYS)."""


@sessions.command("count")
@click.option("--by-org", is_flag=True, help="Also count per organisation (reads every session).")
@click.option("--json", "as_json", is_flag=True, help='JSON on stdout: {"total": N, "by_org": {...}}.')
@pass_app
def count_cmd(app: App, by_org: bool, as_json: bool) -> None:
    """Count sessions with SCAN (never KEYS)."""
    result = count_sessions(app, by_org)
    if as_json:
        emit_json(result)
        return
    click.echo(f"sessions: {result['total']}")
    if by_org:
        rows = [[org, n] for org, n in result["by_org"].items()]
        table(None, ["organisation", "sessions"], rows)
        click.echo(f"unreadable (not a JSON object): {result['unreadable']}")


@sessions.command("sweep")
@click.option("--older-than", type=DURATION, help="Stale threshold for this run (default: max_age).")
@click.option("--dry-run", is_flag=True, help="Report exactly what a real run would do; change nothing.")
@click.option("--delete-unreadable", is_flag=True, help="Also delete sessions with no usable createdAt.")
@run_row_options
@pass_app
def sweep_cmd(
    app: App,
    older_than: timedelta | None,
    dry_run: bool,
    delete_unreadable: bool,
    as_json: bool,
    requested_by: str | None,
) -> None:
    """Run the session-sweep job now, recorded in history as a manual run.

    Exit 0 on success, 1 on failure, 75 when another sweep holds the lock.
    """
    params: dict[str, Any] = {}
    if older_than:
        params["older_than"] = older_than
    if delete_unreadable:
        params["delete_unreadable"] = True
    run_and_report(app, "session-sweep", as_json, dry_run=dry_run, params=params, requested_by=requested_by)


@sessions.command("delete")
@click.option("--org", "org_id", metavar="ORG_ID", help="Delete this organisation's sessions, nothing else.")
@click.option("--all", "everything", is_flag=True, help="Delete every session (the emergency path).")
@click.option("--dry-run", is_flag=True, help="Report exactly what would be deleted; change nothing.")
@click.option("--yes", is_flag=True, help="Do it without asking.")
@run_row_options
@pass_app
def delete_cmd(
    app: App,
    org_id: str | None,
    everything: bool,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    requested_by: str | None,
) -> None:
    """Delete one organisation's sessions (--org) or all of them (--all), as a run in history.

    Without --yes (and without --dry-run) it counts what would go and asks on a terminal;
    otherwise it refuses with exit 2.
    """
    if bool(org_id) == everything:
        raise click.UsageError("give exactly one of --org ORG_ID or --all")
    if not dry_run and not yes:
        _confirm_or_refuse(app, org_id, as_json)
    params: dict[str, Any] = {"org": org_id} if org_id else {"all": True}
    run_and_report(app, "session-delete", as_json, dry_run=dry_run, params=params, requested_by=requested_by)


def _confirm_or_refuse(app: App, org_id: str | None, as_json: bool) -> None:
    """Show what would be deleted; on a terminal ask (--org only), else refuse with exit 2."""
    if org_id:
        n = count_sessions(app, by_org=True)["by_org"].get(org_id, 0)
        what, flags = f"{n} sessions of organisation {org_id!r}", f"--org {org_id}"
    else:
        n = count_sessions(app, by_org=False)["total"]
        what, flags = f"{n} sessions (every session)", "--all"
    if org_id and not as_json and sys.stdin.isatty():
        if click.confirm(f"Delete {what}?", default=False, err=True):
            return
        raise UsageError("nothing deleted: not confirmed")
    raise UsageError(
        f"this would delete {what}; nothing deleted. "
        f"Add --yes to do it (`redis-maint sessions delete {flags} --yes`), or --dry-run to see the run"
    )


def count_sessions(app: App, by_org: bool) -> dict[str, Any]:
    from jobs.session_sweep import layout
    from redis_maint import sessions
    from redis_maint.redis_conn import connect

    settings = app.settings()
    sweep_settings = settings.job("session-sweep")
    client = connect(settings.redis_url, settings.redis_timeout)
    try:
        batching = sessions.Batching(
            scan_count=sweep_settings.scan_count, read_batch=sweep_settings.read_batch
        )
        return sessions.count(
            client,
            settings.redis_url,
            layout(sweep_settings),
            by_org=by_org,
            batching=batching,
            timeout=settings.redis_timeout,
            idle_cpu=sweep_settings.idle_cpu,
        )
    finally:
        client.close()
