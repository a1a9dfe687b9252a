from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.completers import backup_ids
from redis_maint.cli.modes import mode_for, output_option
from redis_maint.cli.output import describe_run, emit_json, verbose_option
from redis_maint.cli.types import MOMENT

STATUSES = ["pending", "complete", "failed", "pruned", "missing", "changed"]
STATUSES += ["incomplete"]  # a cluster backup with shards missing (backup/cluster.py)


@click.group()
def backups() -> None:
    """Backups in the catalog: list, show, verify, restore, keep and unkeep them.

    \b
    Examples:
      redis-maint backups list
      redis-maint backups show ID
      redis-maint backups verify ID --deep
      redis-maint backups restore ID --target /srv/restore

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
      REDIS_MAINT_TARGET__URI   the backup target (S3: the standard AWS_* variables)
    """


@backups.command("list")
@click.option("--instance", help="Only this instance (default: all).")
@click.option("--status", type=click.Choice(STATUSES), help="Only backups with this status.")
@click.option(
    "--since",
    type=MOMENT,
    help="Only backups created at or after this: a date (2026-11-30), a time (2026-11-30T21:00, UTC unless "
    "a zone is given) or a duration ago (7d).",
)
@click.option(
    "--until",
    type=MOMENT,
    help="Only backups created before the end of this date, or at or before this time or duration ago.",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Every backup that matches (no --limit).")
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout, newest first.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV on stdout, one row per file: backup_id, created_at, status, path, size, sha256, version_id, "
    "etag (a backup with no files: one row, no path). -o csv is one row per backup.",
)
@output_option
@pass_app
def list_(
    app: App,
    instance: str | None,
    status: str | None,
    since,
    until,
    limit: int,
    show_all: bool,
    as_json: bool,
    as_csv: bool,
    output: str | None,
) -> None:
    """Backups from the catalog, newest first (pruned and failed ones too).

    \b
    Examples:
      redis-maint backups list
      redis-maint backups list --status complete --limit 5
      redis-maint backups list --json | jq -r '.[0].id'
      redis-maint backups list --csv --since 2026-11-01 --until 2026-11-30 --all > backup-files.csv

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
    """
    from redis_maint.history.queries import find_backups

    ctx = click.get_current_context()
    if as_csv and (as_json or output is not None):
        raise click.UsageError("--csv is an export of its own: use it without --json and -o")
    if show_all and ctx.get_parameter_source("limit") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--all and --limit disagree: choose one")
    if since is not None and until is not None and since.start() >= until.end():
        raise click.UsageError(
            f"--since {since.given} is not before --until {until.given}: no backup can match; swap them"
        )
    mode = "csv-files" if as_csv else mode_for(output, as_json)
    found = find_backups(
        app.store(),
        instance=instance,
        status=None if status == "incomplete" else status,
        since=None if since is None else since.start(),
        until=None if until is None else until.end(),
        limit=None if show_all else limit,
    )
    rows = [r.to_json() for r in found]
    if any(r.cluster_id for r in found):  # Redis Cluster: a cluster backup's shards as one entry
        rows = _cluster_rows(app, found, status)
    if mode == "json":
        emit_json(rows)
        return
    if mode == "csv-files":
        _write_file_csv(rows)
        return
    from redis_maint.cli.render.columns import BACKUPS
    from redis_maint.cli.render.listing import emit

    emit(mode, BACKUPS, rows)


def _cluster_rows(app: App, found: list, status: str | None) -> list[dict[str, Any]]:
    """Each cluster backup as one entry with its shards nested (--status: its own, or any shard's)."""
    from redis_maint.backup import cluster
    from redis_maint.history.catalog import Catalog

    rows = cluster.listing(Catalog(app.store()), list(found))
    if status is None:
        return rows
    return [
        r for r in rows if r["status"] == status or any(s["status"] == status for s in r.get("shards") or [])
    ]


FILE_CSV = ("backup_id", "created_at", "status", "path", "size", "sha256", "version_id", "etag")


def file_rows(backups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`backups list --csv`: one row per file of each backup (one row without a file for a backup that
    has none, so every backup shows). version_id and etag are empty until the catalog records them."""
    out = []
    for b in backups:
        head = {"backup_id": b["id"], "created_at": b["created_at"], "status": b["status"]}
        files = b.get("files") or [{}]
        for f in files:
            out.append({**head, **{k: f.get(k) for k in FILE_CSV[3:]}})
    return out


def _write_file_csv(backups: list[dict[str, Any]]) -> None:
    import csv
    import sys

    writer = csv.DictWriter(sys.stdout, fieldnames=FILE_CSV, lineterminator="\n")
    writer.writeheader()
    writer.writerows(file_rows(backups))


@backups.command()
@click.argument("backup_id", metavar="ID", shell_complete=backup_ids)
@click.option("--json", "as_json", is_flag=True, help="JSON object on stdout.")
@pass_app
def show(app: App, backup_id: str, as_json: bool) -> None:
    """A backup's manifest (read from the target) and its history (from the catalog).

    \b
    Examples:
      redis-maint backups show 20261201T030000Z-c886fe
      redis-maint backups show "$(redis-maint backups list --json | jq -r '.[0].id')" --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
      REDIS_MAINT_TARGET__URI   the backup target (S3: the standard AWS_* variables)
    """
    from redis_maint.errors import MaintenanceError

    located, target = _open(app, backup_id)
    record = located.record
    try:
        from redis_maint.backup.stored import read_manifest

        manifest, manifest_error = read_manifest(target, located.location), None
    except MaintenanceError as exc:
        manifest, manifest_error = None, str(exc)
    finally:
        target.close()
    run = app.store().get(record.run_id) if record is not None and record.run_id else None
    out = {
        "id": backup_id,
        "target": target.uri_for(located.location),
        "catalog": None if record is None else _record_detail(record),
        "manifest": manifest,
        "manifest_error": manifest_error,
        "run": None if run is None else run.to_json(),
    }
    if as_json:
        emit_json(out)
    else:
        _describe(out)


AS_OPTION = click.option(
    "--as", "requested_by", metavar="NAME", help="Who asked, for history (default: $USER)."
)


@backups.command()
@click.argument("backup_id", metavar="ID", shell_complete=backup_ids)
@click.option("--json", "as_json", is_flag=True, help="The verification result as JSON on stdout.")
@click.option(
    "--deep",
    is_flag=True,
    help="Also run redis-check-aof/rdb on a downloaded copy and load it in a throwaway redis-server "
    "container (needs Docker); records the key and session counts it loaded.",
)
@AS_OPTION
@verbose_option
@pass_app
def verify(app: App, backup_id: str, as_json: bool, deep: bool, requested_by: str | None) -> None:
    """Download every file, recompute its sha256 against the manifest, record the result.

    Recorded as a `backup-check` run in history. Exit 0 when every file matches (and, with --deep,
    every check is ok and Redis loads it), 1 otherwise, 75 when another check holds the lock.

    \b
    Examples:
      redis-maint backups verify 20261201T030000Z-c886fe
      redis-maint backups verify 20261201T030000Z-c886fe --deep --json
      redis-maint backups verify 20261201T030000Z-cluster --deep

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
      REDIS_MAINT_TARGET__URI   the backup target (S3: the standard AWS_* variables)
      REDIS_MAINT_CHECK_IMAGE   the image of the --deep check container (with DOCKER_HOST)
    """
    state = _cluster_backup(app, backup_id)
    if state is not None:  # a cluster backup: its manifest, then each shard as a backup-check run
        from redis_maint.cli import cluster_backups_cmd

        code = cluster_backups_cmd.verify(
            app, state, deep, as_json, lambda p: _operate(app, "backup-check", p, requested_by, as_json)
        )
        raise click.exceptions.Exit(code)
    run = _operate(app, "backup-check", {"backup_id": backup_id, "deep": deep}, requested_by, as_json)
    result = _result_or_exit(run)
    if as_json:
        emit_json(result)
    else:
        describe_run(run)  # as `history show RUN_ID` renders this backup-check run
    raise click.exceptions.Exit(_exit_code(run))


@backups.command()
@click.argument("backup_id", metavar="[ID]", required=False, shell_complete=backup_ids)
@click.option(
    "--to-time",
    "to_time",
    metavar="TIME",
    help="Instead of a backup: restore the AOF archive to this second, ISO 8601 (2026-12-01T21:30:05Z; "
    "no zone = UTC) or `latest`.",
)
@click.option(
    "--before-run",
    "before_run",
    metavar="RUN_ID",
    type=click.IntRange(min=1),
    help="Instead of a backup: restore the AOF archive to the last second before that recorded run "
    "started (e.g. a `sessions delete --all`); the history row records the run undone.",
)
@click.option(
    "--target",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to lay the Redis files out in (empty, unless --force). Required unless --online.",
)
@click.option(
    "--online",
    is_flag=True,
    help="Restore into the running Redis (the configured node) by replication from a throwaway "
    "redis-server, without stopping it; needs --yes. Replaces its whole dataset.",
)
@click.option(
    "--yes", is_flag=True, help="--online: do it. Without it, say what happens and what is lost (exit 2)."
)
@click.option(
    "--online-host",
    "online_host",
    metavar="ADDR",
    help="--online: the address of this host the live Redis can connect to, where the throwaway server "
    "listens (default: the address the live Redis sees this sidecar's connection come from).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Restore into a non-empty DIR, moving its Redis files aside. Never into a DIR a Redis is running on.",
)
@click.option("--json", "as_json", is_flag=True, help="What was restored, as JSON on stdout.")
@click.option(
    "--shard",
    "node_id",
    metavar="NODE_ID",
    help="Redis Cluster: restore this node's shard of a cluster backup (its CLUSTER MYID).",
)
@AS_OPTION
@verbose_option
@pass_app
def restore(
    app: App,
    backup_id: str,
    directory: Path,
    force: bool,
    as_json: bool,
    requested_by: str | None,
    node_id: str | None = None,
    to_time: str | None = None,
    before_run: int | None = None,
    online: bool = False,
    yes: bool = False,
    online_host: str | None = None,
) -> None:
    """Download and verify a backup, then lay out dump.rdb and appendonlydir/ in DIR.

    With --to-time or --before-run instead of ID: the AOF archive's base and segments up to that
    second, checked (sha256), cut at the time by redis-check-aof --truncate-to-timestamp in a throwaway
    container, and proven by loading them in a throwaway redis-server (key count, DEBUG DIGEST);
    appendonlydir/ is laid out in DIR. A time outside the archive's window exits 2 and states it.

    With --online --yes instead of --target: the same dataset, prepared in a staging dir, is loaded in a
    throwaway redis-server on this host (random password, free port, bound to the address the live
    Redis reaches this host at), and the running Redis takes it over: REPLICAOF to it, the full sync,
    REPLICAOF NO ONE, its masterauth restored, BGREWRITEAOF. Writes made to it during the sync are lost
    (refused with READONLY) and clients see LOADING briefly. Refused (exit 2, nothing changed) on a
    replica, a Cluster node, behind Sentinel, or when the live Redis cannot reach this host.

    Refused (exit 2, nothing recorded) while a Redis runs on DIR: the configured one (its CONFIG GET
    dir, or REDIS_MAINT_DATA_DIR) or any local redis-server working there. Stop it first; start it
    again with the same appendonly setting. A failed restore leaves DIR as it was. Recorded as a
    `backup-restore` run in history; exit 75 when another restore holds the lock.

    \b
    Examples:
      redis-maint backups restore 20261201T030000Z-c886fe --target /srv/redis-restore
      redis-maint backups restore --to-time 2026-12-01T21:30:05Z --target /srv/redis-restore
      redis-maint backups restore 20261201T030000Z-cluster --shard 07c37dfeb235 --target /data
      redis-maint backups restore --before-run 4711 --online --yes --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
      REDIS_MAINT_TARGET__URI   the backup target (S3: the standard AWS_* variables)
      REDIS_MAINT_REDIS_URL, REDIS_MAINT_DATA_DIR   the Redis that must not be running on DIR
    """
    if online:  # into the running Redis (redis_maint/archive/online.py)
        if directory is not None or force or node_id is not None:
            raise click.UsageError(
                "--online restores into the running Redis: no --target, --force or --shard"
            )
        params = {"backup_id": backup_id, "to_time": to_time, "before_run": before_run}
        params |= {"online": True, "yes": yes, "online_host": online_host}
        run = _operate(app, "backup-restore", params, requested_by, as_json)
        result = _result_or_exit(run)
        emit_json(result) if as_json else describe_run(run)
        raise click.exceptions.Exit(_exit_code(run))
    if directory is None:
        raise click.UsageError("Missing option '--target' (or restore into the running Redis with --online).")
    if yes or online_host is not None:
        raise click.UsageError("--yes and --online-host go with --online")
    if backup_id is None or to_time is not None or before_run is not None:  # the AOF archive
        params = {"backup_id": backup_id, "directory": str(directory), "force": force}
        params |= {"to_time": to_time, "before_run": before_run}
        if node_id is not None:
            raise click.UsageError("--shard restores a backup of a Redis Cluster node, not the AOF archive")
    else:
        state = _cluster_backup(app, backup_id)
        if state is not None or node_id is not None:  # Redis Cluster: one shard of a cluster backup
            from redis_maint.cli import cluster_backups_cmd

            backup_id = cluster_backups_cmd.shard_backup_id(app, backup_id, node_id, state)
        params = {"backup_id": backup_id, "directory": str(directory), "force": force}
    run = _operate(app, "backup-restore", params, requested_by, as_json)
    result = _result_or_exit(run)
    if as_json:
        emit_json(result)
        raise click.exceptions.Exit(_exit_code(run))
    describe_run(run)  # the files, where, how to start Redis and what to check after
    raise click.exceptions.Exit(_exit_code(run))


def _operate(app: App, job: str, params: dict[str, Any], requested_by: str | None, as_json: bool = True):
    """One operation through this process's Runner: pre-check, lease, row, observers; downloads
    draw progress on a terminal unless the output is JSON."""
    from redis_maint.cli.progress import progress_for
    from redis_maint.history.runs import Trigger
    from redis_maint.run.runner import default_requester

    who = requested_by or default_requester()
    progress = progress_for(as_json)
    return app.runner().execute(
        job, trigger=Trigger.MANUAL, requested_by=who, params=params, progress=progress
    )


def _exit_code(run) -> int:
    from redis_maint.run.runner import exit_code_for

    return exit_code_for(run)


def _result_or_exit(run) -> dict[str, Any]:
    """The operation's result object: its run's summary without what the run path added. A run
    that has none (skipped by a held lock, or stopped by an error) says why on stderr and exits."""
    from redis_maint.run.runner import RUN_PATH_KEYS

    summary = run.summary or {}
    if "id" not in summary:
        _say_why(run)
        raise click.exceptions.Exit(_exit_code(run))
    return {k: v for k, v in summary.items() if k not in RUN_PATH_KEYS}


def _say_why(run) -> None:
    from redis_maint.redact import redact

    click.echo(f"redis-maint: {redact(run.error or f'run {run.id} of {run.job} {run.status}')}", err=True)


def _cluster_backup(app: App, backup_id: str):
    """The cluster backup with this id (backup/cluster.py), or None: a backup's own id comes first."""
    from redis_maint.history.catalog import Catalog

    catalog = Catalog(app.store())
    if catalog.get(backup_id) is not None:
        return None
    from redis_maint.backup import cluster

    return cluster.find(catalog, backup_id, app.core_settings().instance)


def _open(app: App, backup_id: str):
    from redis_maint.backup.lookup import open_backup
    from redis_maint.history.catalog import Catalog

    settings = app.core_settings()
    return open_backup(backup_id, Catalog(app.store()), settings.target.open, settings.instance)


def _record_detail(record) -> dict[str, Any]:
    from redis_maint.timeutil import isoformat

    return {
        **record.to_json(),
        "target_root": record.target_root,
        "location": record.location,
        "server": record.server,
        "checks": record.checks,
        "verify_result": record.verify_result,
        "events": record.events,
        "created_at": isoformat(record.created_at),
    }


def _describe(out: dict[str, Any]) -> None:
    from redis_maint.cli.output import current_verbosity
    from redis_maint.cli.render.backup_view import render_backup
    from redis_maint.cli.render.console import print_trimmed, stdout_console

    console = stdout_console()
    for item in render_backup(out, verbose=current_verbosity()):
        print_trimmed(console, item)


# ---- keep / unkeep: backups retention never prunes (like WAL-G's permanent backups) ----


def _keep_options(fn):
    from redis_maint.cli.run_cmd import run_row_options

    reason = click.option("--reason", metavar="TEXT", help="Why, for the audit trail (show, history).")
    return run_row_options(reason(fn))


@backups.command()
@click.argument("backup_id", metavar="ID", shell_complete=backup_ids)
@_keep_options
@pass_app
def keep(app: App, backup_id: str, reason: str | None, as_json: bool, requested_by: str | None) -> None:
    """Keep a complete backup: retention never prunes it until `backups unkeep ID`.

    Recorded in the backup's catalog events and as a `backup-keep` run in history, with who
    (--as, else $USER) and why. Exit 2 for an unknown, pruned or incomplete backup.

    \b
    Examples:
      redis-maint backups keep 20261201T030000Z-c886fe --reason "before the 7.2 upgrade"
      redis-maint backups keep 20261201T030000Z-c886fe --as alice --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
    """
    _keep_or_unkeep(app, backup_id, reason, as_json, requested_by, keep=True)


@backups.command()
@click.argument("backup_id", metavar="ID", shell_complete=backup_ids)
@_keep_options
@pass_app
def unkeep(app: App, backup_id: str, reason: str | None, as_json: bool, requested_by: str | None) -> None:
    """Undo `backups keep ID`: retention treats the backup like any other again.

    Recorded like keep, as a `backup-unkeep` run. Exit 2 if the backup is not kept.

    \b
    Examples:
      redis-maint backups unkeep 20261201T030000Z-c886fe
      redis-maint backups unkeep 20261201T030000Z-c886fe --reason "upgrade done" --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
    """
    _keep_or_unkeep(app, backup_id, reason, as_json, requested_by, keep=False)


def _keep_or_unkeep(app: App, backup_id: str, reason, as_json: bool, requested_by, *, keep: bool) -> None:
    run = _operate(
        app,
        "backup-keep" if keep else "backup-unkeep",
        {"backup_id": backup_id, "reason": reason},
        requested_by,
    )
    if as_json:
        emit_json(run.to_json())
    elif run.status != "succeeded":
        _say_why(run)
    elif keep:
        click.echo(
            f"backup {backup_id} is kept (by {run.requested_by}): retention will not prune it; "
            f"undo with `redis-maint backups unkeep {backup_id}`"
        )
    else:
        click.echo(
            f"backup {backup_id} is no longer kept (by {run.requested_by}): retention applies to it again"
        )
    raise click.exceptions.Exit(_exit_code(run))


# ---- check: the catalog reconciled with the target (like restic's check) ----


@backups.command()
@click.option(
    "--read-data",
    is_flag=True,
    help="Also re-read every object and compare its sha256 (reads every backup in full).",
)
@click.option("--json", "as_json", is_flag=True, help="The check's result as JSON on stdout.")
@AS_OPTION
@verbose_option
@pass_app
def check(app: App, read_data: bool, as_json: bool, requested_by: str | None) -> None:
    """Reconcile the catalog with the backup target: missing, changed and unknown backups.

    Every complete (or kept) backup in the catalog must be on the target as recorded: each file
    and its manifest present, with the recorded size (and the ETag/VersionId recorded at upload
    on S3); --read-data also re-hashes every object. Backups on the target that the catalog does
    not know are listed too. The catalog marks backups `missing` or `changed` (and `complete`
    again once found intact). Recorded as a `backup-reconcile` run in history; the daily
    `backup-audit` job runs the same check. Exit 0 when catalog and target agree, 1 on any
    difference or when the target cannot be listed, 75 when another check holds the lock.

    \b
    Examples:
      redis-maint backups check
      redis-maint backups check --read-data --json | jq '.missing'

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
      REDIS_MAINT_TARGET__URI   the backup target (S3: the standard AWS_* variables)
    """
    from redis_maint.run.runner import RUN_PATH_KEYS

    run = _operate(app, "backup-reconcile", {"read_data": read_data}, requested_by, as_json)
    summary = run.summary or {}
    if "checked" not in summary:  # skipped by a held lock, or the target could not be listed
        _say_why(run)
        raise click.exceptions.Exit(_exit_code(run))
    if as_json:
        emit_json({k: v for k, v in summary.items() if k not in RUN_PATH_KEYS})
    else:
        describe_run(run)
    raise click.exceptions.Exit(_exit_code(run))
