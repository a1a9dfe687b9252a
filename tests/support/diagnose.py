"""What the diagnose tests share: running it, reading its report, checking the commands it names,
and a real Redis-like container that has exited on the local Docker engine."""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
from collections.abc import Iterator

import click

from tests.support.services.docker import CHECK_IMAGE


def diagnose(cli, *args: str) -> tuple[int, dict]:
    """`redis-maint diagnose --json ARGS` in-process: (exit code, report)."""
    result = cli("diagnose", "--json", *args)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def finding(report: dict, code: str) -> dict:
    """The first finding with this code, or a failure listing what was found."""
    for item in report["verdict"]:
        if item["code"] == code:
            return item
    raise AssertionError(
        f"no {code} finding; found {[(f['severity'], f['code']) for f in report['verdict']]}"
    )


def codes(report: dict) -> list[str]:
    return [f["code"] for f in report["verdict"]]


def redis_maint_commands(report: dict) -> list[list[str]]:
    """The `redis-maint ...` commands the findings name, as argument lists."""
    found = []
    for item in report["verdict"]:
        for command in item["next"]:
            if command.startswith("redis-maint "):
                found.append(shlex.split(command)[1:])
    return found


def assert_commands_parse(report: dict) -> None:
    """Every redis-maint command a finding names parses against the real CLI (a typo'd flag fails)."""
    from redis_maint.cli import cli as root

    for args in redis_maint_commands(report):
        command: click.Command = root
        ctx = command.make_context("redis-maint", list(args))
        rest = (
            [*ctx._protected_args, *ctx.args]
            if hasattr(ctx, "_protected_args")
            else [*ctx.protected_args, *ctx.args]
        )
        while isinstance(command, click.Group) and rest:
            name, command, rest = command.resolve_command(ctx, rest)
            ctx = command.make_context(name, rest, parent=ctx)
            if isinstance(command, click.Group):
                rest = (
                    [*ctx._protected_args, *ctx.args]
                    if hasattr(ctx, "_protected_args")
                    else [*ctx.protected_args, *ctx.args]
                )


@contextlib.contextmanager
def exited_container(client, *, log_line: str, exit_code: int = 1) -> Iterator[str]:
    """A container of the local check image that printed `log_line` and exited with `exit_code`
    (not labelled as redis-maint's own); removed afterwards. Yields its name."""
    name = f"diagnose-test-redis-{secrets.token_hex(3)}"
    script = f"echo {shlex.quote(log_line)}; exit {exit_code}"
    container = client.containers.create(CHECK_IMAGE, ["sh", "-c", script], name=name)
    try:
        container.start()
        container.wait(timeout=30)
        yield name
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def running_redis_container(client) -> Iterator[str]:
    """redis-server running in a container of the local check image (no port published); removed
    afterwards. Yields its name once Redis logs that it is ready."""
    from tests.support.common import wait_for

    name = f"diagnose-test-redis-{secrets.token_hex(3)}"
    container = client.containers.run(
        CHECK_IMAGE, ["redis-server", "--save", "", "--protected-mode", "no"], name=name, detach=True
    )
    try:
        wait_for(
            lambda: b"Ready to accept connections" in container.logs(), what="redis-server in the container"
        )
        yield name
    finally:
        container.remove(force=True)
