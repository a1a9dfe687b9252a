from __future__ import annotations

import json
from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json


@click.group()
def config() -> None:
    """Inspect settings: the effective values and where they came from, or the full sample.

    \b
    Examples:
      redis-maint config show --origin
      redis-maint config sample > /etc/redis-maint.toml

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_*             any setting (e.g. REDIS_MAINT_JOBS__BACKUP__SCHEDULE)
    """


@config.command()
def sample() -> None:
    """Print every setting with its default and description, as TOML.

    \b
    Examples:
      redis-maint config sample
      redis-maint config sample > /etc/redis-maint.toml
      redis-maint config sample | less

    It reads no setting: the output is the built-in defaults, whatever is set.
    """
    from config.sample import render_sample
    from config.schema import with_jobs
    from jobs import REGISTRY

    click.echo(render_sample(with_jobs(REGISTRY)), nl=False)


@config.command()
@click.option(
    "--origin",
    is_flag=True,
    help="One line per setting with where it came from: default, the file (its path) or the "
    "environment (the variable's name).",
)
@pass_app
def show(app: App, origin: bool) -> None:
    """Print the effective settings as JSON, every secret masked (passwords, tokens, webhook paths).

    \b
    Examples:
      redis-maint config show
      redis-maint config show --origin
      REDIS_MAINT_CONFIG=/etc/redis-maint.toml redis-maint config show --origin

    Reads --config PATH, else $REDIS_MAINT_CONFIG, else the shipped file; then REDIS_MAINT_* variables.

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_*             any setting (e.g. REDIS_MAINT_REDIS_URL, REDIS_MAINT_JOBS__BACKUP__SCHEDULE)
    """
    settings = app.settings()
    # The schema's secret-bearing fields serialise masked (config/secrets.py): nothing to do here.
    dumped = settings.model_dump(mode="json")
    if not origin:
        emit_json(dumped)
        return
    click.echo(f"# config file: {settings.config_file}")
    for path, value in _leaves(dumped):
        click.echo(f"{'.'.join(path)} = {json.dumps(value)}  # {settings.origin(path)}")


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, (*prefix, key)))
        else:
            out.append(((*prefix, key), value))
    return out
