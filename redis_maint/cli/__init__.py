"""The operator and auditor CLI. Subcommands live one per module and load lazily, so --help is fast."""

from __future__ import annotations

import importlib
import os
import select
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from redis_maint.errors import MaintenanceError

# What a shell reports for a writer killed by SIGPIPE (128 + 13), as `yes | head -1` does.
EXIT_SIGPIPE = 141

# name -> "module:attribute"; add a subcommand by adding a line.
COMMANDS = {
    "run": "redis_maint.cli.run_cmd:run",
    "jobs": "redis_maint.cli.jobs_cmd:jobs",
    "history": "redis_maint.cli.history_cmd:history",
    "doctor": "redis_maint.cli.doctor_cmd:doctor",
    "daemon": "redis_maint.cli.daemon_cmd:daemon",
    "config": "redis_maint.cli.config_cmd:config",
    "backups": "redis_maint.cli.backups_cmd:backups",
    "sessions": "redis_maint.cli.sessions_cmd:sessions",
    "completion": "redis_maint.cli.completion_cmd:completion",
    "diagnose": "redis_maint.cli.diagnose_cmd:diagnose",
    "audit": "redis_maint.cli.audit_cmd:audit",
    "report": "redis_maint.cli.report_cmd:report",
    "keys": "redis_maint.cli.keys_cmd:keys",
    "archive": "redis_maint.cli.archive_cmd:archive",
}


class FailedCommand(click.ClickException):
    """A MaintenanceError on its way out: message on stderr, the error's own exit code."""

    def __init__(self, error: MaintenanceError):
        super().__init__(str(error))
        self.exit_code = error.exit_code

    def show(self, file: Any = None) -> None:
        from redis_maint.redact import redact

        # The last door out: an error message that embedded a secret is masked here too.
        click.echo(f"redis-maint: {redact(self.format_message())}", err=True)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MaintenanceError as exc:
            raise FailedCommand(exc) from None
        except BrokenPipeError:
            # `redis-maint history | head -1`: the reader left. That is no error of ours, but a
            # broken pipe to a socket (S3, Docker, a webhook) still is.
            if not stdout_reader_gone():
                raise
            quiet_stdout()
            raise click.exceptions.Exit(EXIT_SIGPIPE) from None


def stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end has been closed (poll reports POLLERR)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(mask & (select.POLLERR | select.POLLHUP) for _fd, mask in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail ("Exception ignored")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


@dataclass
class App:
    """Shared CLI state: settings load once, on first use, so --help never reads config."""

    config_path: str | None = None
    log_format: str = "json"  # in effect (chosen from the flag, the variable or the terminal)
    log_format_given: str | None = None  # --log-format as typed: repeated in suggested commands
    verbose: int = 0
    quiet_logs: bool = False  # a person at a terminal: warnings and errors only, unless -v
    _settings: Any = field(default=None, repr=False)
    _core: Any = field(default=None, repr=False)
    _view: Any = field(default=None, repr=False)
    _runner: Any = field(default=None, repr=False)

    def settings(self) -> Any:
        """Every setting, each job's own included (this loads the job modules)."""
        if self._settings is None:
            from config import load_settings
            from jobs import REGISTRY

            self._settings = self._loaded(load_settings(self.config_path, jobs=REGISTRY))
        return self._settings

    def core_settings(self) -> Any:
        """The settings every command shares, without the jobs' own: what history and catalog reads need,
        so they never import a job."""
        if self._settings is not None:
            return self._settings
        if self._core is None:
            from config import load_settings

            self._core = self._loaded(load_settings(self.config_path))
        return self._core

    def read_settings(self) -> Any:
        """What reading the history needs (history_url, log_level, instance, timezone, state_dir, the
        jobs' schedules), checked without building the settings model (config/core_view.py); a bad
        value there exits 2 with the full path's message. Full settings when already loaded."""
        if self._settings is not None or self._core is not None:
            return self._settings if self._settings is not None else self._core
        if self._view is None:
            from config.loader import load_core

            self._view = self._loaded(load_core(self.config_path))
        return self._view

    def _loaded(self, settings: Any) -> Any:
        self.setup_logs(settings.log_level)
        return settings

    def setup_logs(self, configured: str = "INFO") -> None:
        from redis_maint.logs import choose_level, setup_logging

        setup_logging(self.log_format, choose_level(configured, self.verbose, quiet=self.quiet_logs))

    def store(self):
        from redis_maint.history.runs import HistoryStore

        return HistoryStore(self.read_settings().history_url)

    def runner(self):
        """This process's Runner, made on first use: every run and operation goes through it."""
        if self._runner is None:
            from redis_maint.run.runner import build_runner

            self._runner = build_runner(self.settings(), self.store())
        return self._runner


pass_app = click.make_pass_decorator(App)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="PATH", help="TOML settings file (else $REDIS_MAINT_CONFIG)."
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default=None,
    envvar="REDIS_MAINT_LOG_FORMAT",
    show_envvar=True,
    help="Logs on stderr: JSON lines, or text for people. Default: text on a terminal, JSON otherwise "
    "(the daemon: JSON).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More detail: info logs on a terminal and the check tools' own output (-vv: debug logs).",
)
@click.version_option(package_name="redis-maint")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_format: str | None, verbose: int) -> None:
    """redis-maint: maintenance sidecar for a Redis 7 session store.

    Exit codes: 0 ok, 1 job failed, 2 usage or config error, 75 skipped (another run holds the lock).

    \b
    Examples:
      redis-maint jobs                        # schedules, the live daemon, last outcomes
      redis-maint run health --json           # run a job now, through the daemon's path
      redis-maint history --job backup --since 7d
      redis-maint COMMAND --help              # each command's examples

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_*             any setting (see `redis-maint config sample`)
    """
    from redis_maint.logs import choose_format, stderr_is_tty

    # The daemon runs unattended: JSON logs at the configured level unless told otherwise.
    unattended = ctx.invoked_subcommand == "daemon"
    typed = ctx.get_parameter_source("log_format") == click.core.ParameterSource.COMMANDLINE
    ctx.obj = App(
        config_path=config_path,
        log_format=choose_format(log_format, unattended=unattended),
        log_format_given=log_format if typed else None,
        verbose=verbose,
        quiet_logs=stderr_is_tty() and not unattended,
    )
    ctx.obj.setup_logs()


def main() -> None:
    sys.exit(cli.main(prog_name="redis-maint"))
