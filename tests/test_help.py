"""Help people can act on: every command has real examples and names the environment it reads."""

from __future__ import annotations

import re
import shlex
import warnings

import click
import pytest

from redis_maint.cli import cli as root
from tests.support.pty_cli import run_in_pty


def all_commands(group: click.Group = root, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    out = [path]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = (*path, name)
        out += all_commands(command, sub) if isinstance(command, click.Group) else [sub]
    return out


COMMANDS = all_commands()


def examples(help_text: str) -> list[str]:
    """The lines of the Examples paragraph."""
    block = help_text.split("Examples:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def command_line(example: str) -> list[str] | None:
    """The redis-maint arguments of an example (pipes, redirections, comments and $(...) dropped)."""
    text = re.sub(r'"\$\([^)]*\)"', "ID", example)
    text = text[re.search(r"(^|[\s(])redis-maint\s", text).end() - len("redis-maint ") :]
    text = re.split(r"\s[|>#]|\)", text, maxsplit=1)[0]
    args = shlex.split(text)[1:]
    return None if "COMMAND" in args else args


def parse(args: list[str]) -> click.Context:
    """Parse like click does before running: unknown options, bad choices and missing arguments raise."""
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 puts them in args
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = root.make_context("redis-maint", list(args))
        command, rest = root, ctx.protected_args + ctx.args
        while isinstance(command, click.Group) and rest:
            name, command, rest = command.resolve_command(ctx, rest)
            ctx = command.make_context(name, rest, parent=ctx)
            rest = ctx.protected_args + ctx.args if isinstance(command, click.Group) else []
    return ctx


def test_every_command_is_covered():
    assert ("run",) in COMMANDS and ("backups", "restore") in COMMANDS and ("completion",) in COMMANDS
    assert len(COMMANDS) >= 18


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "redis-maint")
def test_help_has_two_to_four_real_examples_and_names_the_environment(cli, path):
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    found = examples(result.output)
    assert 2 <= len(found) <= 4, found
    for example in found:
        args = command_line(example)
        if args is not None:
            parse(args)  # an example that names a flag the command lacks fails here
    if path != ("config", "sample"):  # it reads no setting: it prints the defaults
        assert "REDIS_MAINT_" in result.output.split("Environment", 1)[1]


def test_the_example_checker_catches_a_flag_that_does_not_exist():
    with pytest.raises(click.NoSuchOption):
        parse(command_line("redis-maint run backup --no-such-flag"))
    with pytest.raises(click.BadParameter):
        parse(command_line("redis-maint completion tcsh"))


@pytest.mark.parametrize("columns", [80, 200])
def test_run_help_lists_every_job_and_keeps_examples_whole_in_a_terminal(columns):
    from jobs import REGISTRY

    shown = run_in_pty("run", "--help", columns=columns)
    assert shown.code == 0, shown.terminal
    lines = [line.rstrip() for line in shown.terminal.replace("\r\n", "\n").splitlines()]
    jobs_section = "\n".join(lines[lines.index("Jobs:") : lines.index("Options:")])
    for name, job in REGISTRY.items():
        assert re.search(rf"^  {re.escape(name)}\s", jobs_section, re.MULTILINE), name
        # The description, however the terminal's width wraps it.
        assert " ".join(job.description.split()) in " ".join(jobs_section.split())
    # \b paragraphs: an example is never re-wrapped, even at 80 columns.
    assert "    redis-maint run backup --no-prune --as alice --json" in lines
    assert "    REDIS_MAINT_JOBS__<JOB>__<FIELD>   the job's own settings" in lines
