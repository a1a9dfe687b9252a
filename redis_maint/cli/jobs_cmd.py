from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json, table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
@pass_app
def jobs(app: App, as_json: bool) -> None:
    """Every registered job with its schedule, next run and last outcome."""
    from jobs import REGISTRY
    from redis_maint.timeutil import isoformat, utcnow

    settings, store = app.settings(), app.store()
    now = utcnow()
    out = []
    for name, job in REGISTRY.items():
        schedule = settings.job(name).schedule
        last = store.last(name)
        nxt = schedule.next_after(now, settings.tz)
        out.append(
            {
                "name": name,
                "description": job.description,
                "schedule": str(schedule),
                "timezone": settings.timezone,
                "next_run": isoformat(nxt),
                "last_run": None if last is None else last.to_json(),
            }
        )
    if as_json:
        emit_json(out)
        return
    table(
        None,
        ["job", "schedule", "next run (UTC)", "last status", "last started"],
        [
            [
                j["name"],
                j["schedule"],
                j["next_run"],
                (j["last_run"] or {}).get("status"),
                (j["last_run"] or {}).get("started_at"),
            ]
            for j in out
        ],
    )
