from __future__ import annotations

import click

from redis_maint.cli import App, pass_app


@click.command()
@pass_app
def daemon(app: App) -> None:
    """Run the scheduler in the foreground until SIGTERM/SIGINT (the sidecar's main process).

    It publishes its host, pid, schedules and a heartbeat in the history store (`jobs`, `doctor`).

    \b
    Examples:
      redis-maint daemon
      REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 30s" redis-maint daemon
      redis-maint --config /etc/redis-maint.toml --log-format text daemon

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_*             every setting: redis_url, data_dir, history_url, target.uri, ...
      REDIS_MAINT_JOBS__<JOB>__SCHEDULE   each job's schedule
      REDIS_MAINT_DAEMON__HEARTBEAT, REDIS_MAINT_DAEMON__DRAIN_GRACE, REDIS_MAINT_HTTP__PORT
    """
    from redis_maint.run.daemon import Daemon

    raise click.exceptions.Exit(Daemon(app.settings()).run())
