from __future__ import annotations

import click

from redis_maint.cli import App, pass_app


@click.command()
@pass_app
def daemon(app: App) -> None:
    """Run the scheduler in the foreground until SIGTERM/SIGINT (the sidecar's main process)."""
    from redis_maint.run.daemon import Daemon

    raise click.exceptions.Exit(Daemon(app.settings()).run())
