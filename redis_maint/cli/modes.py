"""Which output a listing takes (`-o table|wide|tsv|csv|json`, `--json`), decided without loading a
renderer: `--json` never imports rich (cli/render/ loads only for the other modes)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

MODES = ("table", "wide", "tsv", "csv", "json")


def stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def output_option(fn: Callable) -> Callable:
    """`-o/--output`, for every listing (next to its `--json`)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(MODES),
        default=None,
        help="table (fits the terminal), wide (every column), tsv, csv or json. "
        "Default: table on a terminal, tsv with a header otherwise.",
    )(fn)


def mode_for(output: str | None, as_json: bool) -> str:
    """The output mode: --json is `-o json`; no choice means table on a terminal, tsv otherwise."""
    if as_json:
        if output not in (None, "json"):
            raise click.UsageError(f"--json and -o {output} disagree: choose one")
        return "json"
    return output or ("table" if stdout_is_tty() else "tsv")
