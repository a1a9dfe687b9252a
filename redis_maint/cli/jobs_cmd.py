from __future__ import annotations

from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.modes import mode_for, output_option


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
@output_option
@pass_app
def jobs(app: App, as_json: bool, output: str | None) -> None:
    """Every registered job with its schedule, next run and last outcome.

    With a live daemon (its heartbeat in the history store), the schedules and next runs are the
    daemon's own; otherwise "no daemon running" and the configured schedules, with no next run.

    \b
    Examples:
      redis-maint jobs
      redis-maint jobs --json | jq '.[] | {name, schedule, next_run}'
      redis-maint jobs --json | jq '.[0].daemon'     # host, pid, heartbeat of the live daemon

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store (last runs, the daemon's heartbeat)
      REDIS_MAINT_JOBS__<JOB>__SCHEDULE   configured schedules, shown when no daemon runs
      REDIS_MAINT_TIMEZONE      timezone of cron schedules
    """
    from redis_maint.history.daemons import live_daemon
    from redis_maint.timeutil import utcnow

    configured = configured_schedules(app)  # a bad setting exits 2 before the history store is opened
    store = app.store()
    now = utcnow()
    daemon = live_daemon(store, now)
    out = job_rows(app, daemon, now, configured)
    mode = mode_for(output, as_json)
    if mode == "json":
        from redis_maint.cli.output import emit_json

        emit_json(out)
        return
    from redis_maint.cli.render.columns import job_columns
    from redis_maint.cli.render.listing import emit

    if mode in ("table", "wide"):
        click.echo(daemon_line(daemon, now))
    emit(mode, job_columns(out), out, as_json=out)


def configured_schedules(app: App) -> tuple[list[Any], dict[str, str], str]:
    """(every job's facts, its configured schedule, the timezone), without importing a job module
    or building the settings model when the cached job catalog is current (cli/job_catalog.py).
    A [jobs.*] value the light check does not pass loads the full settings: exit 2 naming it."""
    from redis_maint.cli.job_catalog import job_catalog

    view = app.read_settings()
    catalog = job_catalog(view.state_dir)
    checked = view.job_schedules(catalog) if hasattr(view, "job_schedules") else None
    if checked is not None:
        return catalog, checked, view.timezone
    settings = app.settings()
    return catalog, {f.name: str(settings.job(f.name).schedule) for f in catalog}, settings.timezone


def job_rows(app: App, daemon: Any, now: Any, configured: Any = None) -> list[dict[str, Any]]:
    """`jobs --json`: the daemon's schedules and next runs when one is live, else the config's and no next run
    (nothing will run them)."""
    catalog, schedules, timezone = configured or configured_schedules(app)
    store = app.store()
    published = (daemon.schedules or {}) if daemon is not None else {}
    out = []
    for job in catalog:
        name = job.name
        in_force = published.get(name)
        last = store.last(name)
        out.append(
            {
                "name": name,
                "description": job.description,
                "schedule": in_force["schedule"] if in_force else schedules[name],
                "timezone": daemon.timezone if in_force else timezone,
                "next_run": in_force["next_run"] if in_force else None,
                "last_run": None if last is None else last.to_json(),
                "schedule_source": "daemon" if in_force else "config",
                "daemon": None if daemon is None else daemon.to_json(now),
                "scope": job.scope,  # deployment: once per slot; node: once per slot per Redis node
            }
        )
    return out


def daemon_line(daemon: Any, now: Any) -> str:
    """One line above the table: where the daemon runs, or that none does."""
    if daemon is None:
        return "no daemon running: configured schedules shown; nothing will run them"
    age = (now - daemon.heartbeat_at).total_seconds()
    return f"daemon live on {daemon.host} pid {daemon.pid}, heartbeat {age:.0f}s ago"
