from __future__ import annotations

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.render.listing import mode_for, output_option


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array of {check, ok, detail} on stdout.")
@output_option
@pass_app
def doctor(app: App, as_json: bool, output: str | None) -> None:
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

    mode = mode_for(output, as_json)
    source = config_source(app.config_path)
    try:
        settings = app.settings()
    except ConfigError as exc:
        _report([CheckResult("config", False, f"file {source}: {exc}")], mode)
        raise click.exceptions.Exit(exc.exit_code) from None
    results = [
        CheckResult("config", True, f"valid; file {source}, then REDIS_MAINT_* variables"),
        *run_checks(settings, docker_verdicts(settings)),
    ]
    _report(results, mode)
    raise click.exceptions.Exit(0 if all(r.ok for r in results) else 1)


def _report(results, mode: str) -> None:
    from redis_maint.cli.render.columns import DOCTOR
    from redis_maint.cli.render.listing import emit

    rows = [{"check": r.name, "ok": r.ok, "detail": r.detail} for r in results]
    if mode in ("table", "wide"):
        _checklist(results, wrap=mode == "table")
    else:
        emit(mode, DOCTOR, rows, as_json=rows)


def _checklist(results, *, wrap: bool) -> None:
    """`ok   redis      PING 0.2 ms ...`: one line per check, a long detail wrapped under itself."""
    from rich.text import Text

    from redis_maint.cli.render.console import print_trimmed, stdout_console, stdout_is_tty, terminal_width

    console = stdout_console()
    indent = 16  # mark (4), a blank, the name (10), a blank
    width = terminal_width() - indent - 1 if wrap and stdout_is_tty() else None
    styles = {"skip": "dim", "ok  ": "green", "FAIL": "bold red"}
    for r in results:
        mark = "skip" if r.skipped else "ok  " if r.ok else "FAIL"
        lines = _wrapped(r.detail, width) if width and width > 20 else [r.detail]
        head = Text.assemble((mark, styles[mark]), f" {r.name:10} ", (lines[0], "" if r.ok else "red"))
        print_trimmed(console, head)
        for more in lines[1:]:
            print_trimmed(console, Text(" " * indent + more, style="" if r.ok else "red"))


def _wrapped(text: str, width: int) -> list[str]:
    import textwrap

    # Paths and ids never break in the middle: only blanks split a line.
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]
