from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array of {check, ok, detail} on stdout.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check config, Redis, data dir, history, backup target and Docker. Exit 1 if any check fails."""
    from redis_maint.doctor import CheckResult, run_checks
    from redis_maint.errors import ConfigError

    try:
        settings = app.settings()
    except ConfigError as exc:
        results = [CheckResult("config", False, str(exc))]
        _report(results, as_json)
        raise click.exceptions.Exit(exc.exit_code) from None
    source = app.config_path or "defaults, file and environment"
    results = [CheckResult("config", True, f"valid ({source})"), *run_checks(settings)]
    _report(results, as_json)
    raise click.exceptions.Exit(0 if all(r.ok for r in results) else 1)


def _report(results, as_json: bool) -> None:
    if as_json:
        emit_json([{"check": r.name, "ok": r.ok, "detail": r.detail} for r in results])
        return
    for r in results:
        click.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name:10} {r.detail}")
