"""`redis-maint archive status|run`: the AOF archiver (point-in-time recovery)."""

from __future__ import annotations

from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json, verbose_option


@click.group()
def archive() -> None:
    """The AOF archive: Redis's incr files shipped as they grow, for restores to a point in time.

    \b
    Examples:
      redis-maint archive status
      redis-maint archive status --json | jq .lag_s
      redis-maint archive run --once

    \b
    Environment:
      REDIS_MAINT_CONFIG              the settings file, when --config is not given
      REDIS_MAINT_HISTORY_URL         the history store holding the archive's state
      REDIS_MAINT_REDIS_URL           the Redis the archive follows and whose clock measures the lag
      REDIS_MAINT_ARCHIVE__ENABLED    whether the daemon archives (archive.enabled)
      REDIS_MAINT_ARCHIVE__INTERVAL   how often a segment is uploaded (archive.interval)
      REDIS_MAINT_TARGET__URI         where the archive goes (S3: the standard AWS_* variables)
    """


@archive.command()
@click.option("--json", "as_json", is_flag=True, help="The status as JSON on stdout.")
@verbose_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """The current generation, the lag (Redis's clock minus the newest instant safe in the archive),
    the last segment's time and the window a restore can reach.

    JSON keys: generation, lag_s, last_segment_at, window_start, window_end (and instance, clock, now,
    incr_file, offset, reason, segments, bytes, generations, enabled).

    \b
    Examples:
      redis-maint archive status
      redis-maint archive status --json | jq '{generation, lag_s, window_start, window_end}'

    \b
    Environment:
      REDIS_MAINT_CONFIG              the settings file, when --config is not given
      REDIS_MAINT_HISTORY_URL         the history store holding the archive's state
      REDIS_MAINT_REDIS_URL           the Redis the archive follows and whose clock measures the lag
      REDIS_MAINT_ARCHIVE__ENABLED    whether the daemon archives (archive.enabled)
      REDIS_MAINT_ARCHIVE__INTERVAL   how often a segment is uploaded (archive.interval)
      REDIS_MAINT_TARGET__URI         where the archive goes (S3: the standard AWS_* variables)
    """
    from pathlib import Path

    from redis_maint.archive.state import ArchiveState
    from redis_maint.archive.status import archive_status, problem_path, read_problem

    settings = app.core_settings()
    now, clock = _redis_clock(settings)
    result = archive_status(ArchiveState(app.store(), settings.instance), now, clock)
    result["enabled"] = settings.archive.enabled
    result["problem"] = read_problem(problem_path(Path(settings.state_dir), settings.instance))
    if as_json:
        emit_json(result)
        return
    for line in describe(result):
        click.echo(line)


def _redis_clock(settings: Any):
    """Redis's TIME, or this host's clock when Redis cannot be asked (said in `clock`)."""
    from datetime import UTC, datetime

    from redis_maint.errors import MaintenanceError
    from redis_maint.redis_conn import connect
    from redis_maint.snapshot.bgsave import server_time
    from redis_maint.timeutil import utcnow

    try:
        client = connect(settings.node_redis_url, settings.redis_timeout)
        try:
            return datetime.fromtimestamp(server_time(client), UTC), "redis"
        finally:
            client.close()
    except MaintenanceError:
        return utcnow(), "local"


def describe(r: dict[str, Any]) -> list[str]:
    if r["generation"] is None:
        state = "enabled" if r.get("enabled") else "disabled (archive.enabled = false)"
        return [f"archive: nothing archived yet for {r['instance']}; the archiver is {state}"]
    lag = "unknown" if r["lag_s"] is None else f"{r['lag_s']:.1f} s"
    lines = [
        f"archive: generation {r['generation']} · lag {lag} (by {r['clock']} clock)",
        f"  window      {r['window_start'] or '—'} .. {r['window_end'] or '—'}",
        f"  last        {r['last_segment_at'] or 'no segment yet'}",
        f"  following   {r['incr_file']} at offset {r['offset']:,}",
        f"  stored      {r['segments']:,} segments, {r['bytes']:,} bytes in {len(r['generations'])} generations",
        f"  started     {r['reason']}",
    ]
    if r.get("problem"):
        p = r["problem"]
        lines.append(f"  failing     {p['failures']} ticks since {p['since']}: {p['error']} (position kept)")
    if not r.get("enabled"):
        lines.append("  note        archive.enabled is false: the daemon does not archive")
    return lines


@archive.command()
@click.option(
    "--once", is_flag=True, help="One tick: upload what was appended, then exit (else: until SIGTERM)."
)
@click.option(
    "--prune", "prune_too", is_flag=True, help="Also apply retention (archive.window, oldest backup)."
)
@click.option("--json", "as_json", is_flag=True, help="What the tick did as JSON on stdout.")
@click.option("--as", "requested_by", metavar="NAME", help="Who asked, for history (default: $USER).")
@verbose_option
@pass_app
def run(app: App, once: bool, prune_too: bool, as_json: bool, requested_by: str | None) -> None:
    """Archive now, under the archiver's lease, as the daemon's archiver does every archive.interval:
    once, or in the foreground until SIGTERM/SIGINT (waiting while another archiver holds the lease).

    Exit 0 when it archived (or had nothing to do), 1 when it failed (the position is kept), 75 when
    another archiver (the daemon's) holds the lease.

    \b
    Examples:
      redis-maint archive run --once
      redis-maint archive run --once --prune --json

    \b
    Environment:
      REDIS_MAINT_CONFIG              the settings file, when --config is not given
      REDIS_MAINT_HISTORY_URL         the history store holding the archive's state
      REDIS_MAINT_REDIS_URL           the Redis the archive follows and whose clock measures the lag
      REDIS_MAINT_ARCHIVE__ENABLED    whether the daemon archives (archive.enabled)
      REDIS_MAINT_ARCHIVE__INTERVAL   how often a segment is uploaded (archive.interval)
      REDIS_MAINT_TARGET__URI         where the archive goes (S3: the standard AWS_* variables)
    """
    from redis_maint.run.archiving import build_service
    from redis_maint.run.runner import default_requester

    settings = app.core_settings()
    service = build_service(settings, app.store(), requested_by=requested_by or default_requester())
    if not once:
        _run_in_foreground(service)
        return
    report, pruned = service.once(prune_too=prune_too)
    result = report.to_json() | {"pruned": pruned}
    if as_json:
        emit_json(result)
        return
    if report.skipped:
        click.echo(f"archive: nothing archived: {report.skipped}")
        return
    click.echo(
        f"archive: generation {report.generation} · {report.segments} segments, {report.bytes:,} bytes "
        f"· offset {report.offset:,}"
    )
    for reason in report.started:
        click.echo(f"  started   {reason}")
    if pruned and pruned["pruned"]:
        click.echo(f"  pruned    {len(pruned['pruned'])} generations older than {pruned['keep_from']}")


def _run_in_foreground(service: Any) -> None:
    import signal

    def stop(_signum, _frame):
        service.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()
