from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array of {check, ok, detail} on stdout.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check config, Redis, data dir, history, the daemon's heartbeat, backup target and (when a
    job needs it) Docker.

    Exit 0 when every check that ran passed, 1 if any failed, 2 when the settings are invalid.

    \b
    Examples:
      redis-maint doctor
      redis-maint doctor --json | jq '.[] | select(.ok | not)'
      REDIS_MAINT_CONFIG=/etc/redis-maint.toml redis-maint doctor

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the maintained Redis
      REDIS_MAINT_DATA_DIR      Redis's data dir
      REDIS_MAINT_HISTORY_URL   the history store (and the daemon's heartbeat in it)
      REDIS_MAINT_TARGET__URI   the backup target (S3: the standard AWS_* variables)
      REDIS_MAINT_CHECK_IMAGE   the check image (with DOCKER_HOST or docker.url)
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
