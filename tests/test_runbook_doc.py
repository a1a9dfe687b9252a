"""docs/runbook.md must not go stale: every `redis-maint ...` command in it parses against the real
CLI, and the read-only ones run against a real Redis."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from redis_maint.cli import COMMANDS
from redis_maint.cli import cli as root
from tests.support.common import ROOT

DOC = ROOT / "docs" / "runbook.md"
COMMAND = re.compile(r"redis-maint (?=[a-z])")
# Safe to run for real in a test: they read, or only run the health job.
READ_ONLY = (("history",), ("jobs",), ("config",), ("doctor",), ("run", "health"), ("sessions", "count"))
# Read-only, but about one run that exists only where the runbook's reader is: parsed, not run.
NAMES_A_RUN = (("history", "show"),)


def doc_commands() -> list[list[str]]:
    """Commands from fenced code blocks and inline code spans, from their last `redis-maint ` on."""
    text = DOC.read_text()
    fenced = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    found = []
    for snippet in fenced + inline:
        snippet = snippet.split(" #", 1)[0].strip()
        starts = [m.start() for m in COMMAND.finditer(snippet)]
        if starts:
            found.append(shlex.split(snippet[starts[-1] :])[1:])
    return found


def parse(args: list[str]) -> click.Command:
    """Parse like `redis-maint ARGS` would, down to the leaf command, without running anything."""
    command: click.Command = root
    ctx = command.make_context("redis-maint", list(args))
    while isinstance(command, click.Group):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        rest = [*protected, *ctx.args]
        if not rest and command.invoke_without_command:
            break  # `history` lists; `history show ID` is its subcommand
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return command


def test_the_runbook_shows_every_top_level_command():
    used = {args[0] for args in doc_commands()}
    assert len(doc_commands()) >= 30
    assert set(COMMANDS) - {"daemon"} <= used, f"not in docs/runbook.md: {set(COMMANDS) - used}"


@pytest.mark.parametrize("args", doc_commands(), ids=" ".join)
def test_every_documented_command_parses(args):
    try:
        parse(args)
    except click.UsageError as exc:
        pytest.fail(
            f"`redis-maint {shlex.join(args)}` in docs/runbook.md does not parse: {exc.format_message()}"
        )


def test_the_read_only_documented_commands_run(cli, redis_server):
    ran = 0
    for args in doc_commands():
        if (
            any(tuple(args[: len(prefix)]) == prefix for prefix in READ_ONLY)
            and tuple(args[:2]) not in NAMES_A_RUN
        ):
            result = cli(*args)
            # doctor exits 1 when e.g. no Docker engine answers here; 2 would be a usage error.
            assert result.exit_code in (0, 1) if args[0] == "doctor" else result.exit_code == 0, (
                f"redis-maint {shlex.join(args)}: {result.output}"
            )
            ran += 1
    assert ran >= 10
