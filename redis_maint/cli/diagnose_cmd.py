"""`redis-maint diagnose`: the runbook's Incident Response in one read-only run."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import describe_run, emit_json, verbose_option


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option(
    "--out",
    "out",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as JSON to FILE (for an incident ticket); written whole or not at all.",
)
@click.option("--as", "requested_by", metavar="NAME", help="Who asked, for history (default: $USER).")
@verbose_option
@pass_app
def diagnose(app: App, as_json: bool, out: Path | None, requested_by: str | None) -> None:
    """What is wrong with Redis, and what to run next: reachability, the Redis container, the host,
    memory, persistence, latency and load (or the data files when Redis is down), each within its
    own time bound, then findings ranked by severity, each naming its runbook procedure and the
    command to run next. Changes nothing in Redis or the container. Recorded in history as a
    `diagnose` run.

    Exit 0 when the diagnosis was made, whatever it found (the report's `level`: ok, info,
    warning or critical); 1 when diagnose itself could not run; 2 for a bad --out (nothing runs).

    \b
    Examples:
      redis-maint diagnose
      redis-maint diagnose --out /tmp/incident.json
      redis-maint diagnose --json | jq -r '.verdict[] | .severity + " " + .title'
      redis-maint diagnose --json | jq -e '.level != "critical"'

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis to diagnose
      REDIS_MAINT_DATA_DIR      Redis's data dir, as this process sees it
      REDIS_MAINT_HISTORY_URL   where the run is recorded
      REDIS_MAINT_JOBS__DIAGNOSE__REDIS_CONTAINER   the Redis container or compose service (DOCKER_HOST)
    """
    from redis_maint.cli.progress import progress_for
    from redis_maint.history.runs import RunStatus, Trigger
    from redis_maint.run.runner import default_requester, exit_code_for

    if out is not None:
        check_out(out)
    run = app.runner().execute(
        "diagnose",
        trigger=Trigger.MANUAL,
        requested_by=requested_by or default_requester(),
        progress=progress_for(as_json),
    )
    if run.status != RunStatus.SUCCEEDED:
        from redis_maint.redact import redact

        click.echo(f"redis-maint: {redact(run.error or f'run {run.id} of diagnose {run.status}')}", err=True)
        raise click.exceptions.Exit(exit_code_for(run))
    report = report_of(run)
    if out is not None:
        write_atomically(out, report)
    if as_json:
        emit_json(report)
    else:
        describe_run(run)
        if out is not None:
            click.echo(f"  {'report':<11} {out}")
    raise click.exceptions.Exit(exit_code_for(run))


def report_of(run: Any) -> dict[str, Any]:
    """The report: the run's summary (level, verdict, parts, duration_s), with the run it is."""
    summary = dict(run.summary or {})
    return {
        "level": summary.get("level"),
        "verdict": summary.get("verdict", []),
        "parts": summary.get("parts", {}),
        "duration_s": summary.get("duration_s"),
        "run_id": run.id,
        "started_at": run.to_json().get("started_at"),
    }


def check_out(path: Path) -> None:
    """A path the report can be written to, or exit 2 naming it, before anything runs."""
    from redis_maint.errors import UsageError

    target = path.expanduser()
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"--out {path}: is a directory; give a file name, e.g. {path}/diagnose.json")
    if not parent.is_dir():
        raise UsageError(f"--out {path}: directory {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: directory {parent} is not writable by uid {os.getuid()}")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"--out {path}: the file exists and is not writable by uid {os.getuid()}")


def write_atomically(path: Path, report: dict[str, Any]) -> None:
    """Write to a temporary file next to `path`, fsync it, then rename it over `path`."""
    from redis_maint.errors import MaintenanceError

    target = path.expanduser()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MaintenanceError(f"could not write the report to {path}: {exc.strerror or exc}") from None
