"""What the CLI prints: `--json` on stdout as a stable contract; runs for people (cli/render/)."""

from __future__ import annotations

import json
from typing import Any

import click


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def describe_run(run: Any, verbose: int | None = None) -> None:
    """A run for people: the verdict line, then its job's figures (cli/render/runs.py)."""
    from redis_maint.cli.render.console import print_trimmed, stdout_console
    from redis_maint.cli.render.runs import render_run

    row = run if isinstance(run, dict) else run.to_json()
    console = stdout_console()
    for item in render_run(row, verbose=current_verbosity() if verbose is None else verbose):
        print_trimmed(console, item)


def current_verbosity() -> int:
    """How many -v the operator gave (0 outside a CLI call)."""
    ctx = click.get_current_context(silent=True)
    app = ctx.find_root().obj if ctx is not None else None
    return getattr(app, "verbose", 0)


def verbose_option(fn: Any) -> Any:
    """`-v` on a command as well as before it (`history show 7 -v`): the same as the root's -v."""

    def more(ctx: click.Context, _param: click.Parameter, value: int) -> int:
        app = ctx.find_root().obj
        if value and app is not None:
            app.verbose += value
            app.setup_logs()
        return value

    return click.option(
        "-v",
        "--verbose",
        "verbose_here",
        count=True,
        expose_value=False,
        callback=more,
        help="More detail: the check tools' own output, info logs on a terminal (-vv: debug).",
    )(fn)
