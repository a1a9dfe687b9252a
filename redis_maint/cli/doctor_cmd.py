from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array of {check, ok, detail} on stdout.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check config, Redis, data dir, history, backup target and (when a job needs it) Docker.

    Exit 0 when every check that ran passed, 1 if any failed, 2 when the settings are invalid.
    """
    from config.loader import config_source
    from jobs import docker_verdicts
    from redis_maint.errors import ConfigError
    from redis_maint.observe.doctor import CheckResult, run_checks

    source = config_source(app.config_path)
    try:
        settings = app.settings()
    except ConfigError as exc:
        _report([CheckResult("config", False, f"file {source}: {exc}")], as_json)
        raise click.exceptions.Exit(exc.exit_code) from None
    results = [
        CheckResult("config", True, f"valid; file {source}, then REDIS_MAINT_* variables"),
        *run_checks(settings, docker_verdicts(settings)),
    ]
    _report(results, as_json)
    raise click.exceptions.Exit(0 if all(r.ok for r in results) else 1)


def _report(results, as_json: bool) -> None:
    if as_json:
        emit_json([{"check": r.name, "ok": r.ok, "detail": r.detail} for r in results])
        return
    for r in results:
        mark = "skip" if r.skipped else "ok  " if r.ok else "FAIL"
        click.echo(f"{mark} {r.name:10} {r.detail}")
