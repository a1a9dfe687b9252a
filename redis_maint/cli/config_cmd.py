from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json


@click.group()
def config() -> None:
    """Inspect settings."""


@config.command()
def sample() -> None:
    """Print every setting with its default and description, as TOML."""
    from config.sample import render_sample
    from config.schema import with_jobs
    from jobs import REGISTRY

    click.echo(render_sample(with_jobs(REGISTRY)), nl=False)


@config.command()
@pass_app
def show(app: App) -> None:
    """Print the effective settings as JSON, every secret masked (passwords, tokens, webhook paths)."""
    # The schema's secret-bearing fields serialise masked (config/secrets.py): nothing to do here.
    emit_json(app.settings().model_dump(mode="json"))
