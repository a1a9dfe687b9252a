"""`backups verify` and `backups restore` on a Redis Cluster backup (redis_maint/backup/cluster.py).

verify: the cluster manifest against the history store and each shard's manifest.json, then each
shard as a `backup-check` run of its own (with --deep, one throwaway redis-server per shard). restore:
one shard at a time (--shard NODE_ID), through `backup-restore` like any backup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from redis_maint.cli import App
from redis_maint.cli.output import emit_json
from redis_maint.errors import UsageError


def verify(app: App, state: Any, deep: bool, as_json: bool, operate: Callable[[dict[str, Any]], Any]) -> int:
    """Check a cluster backup; print the result; return the exit code (0 ok, 1 a problem, 75 a lock)."""
    from redis_maint.backup import cluster
    from redis_maint.run.runner import RUN_PATH_KEYS, exit_code_for

    settings = app.core_settings()
    target = settings.target.open(state.row["target_root"] if state.manifest_written else None)
    try:
        manifest = cluster.verify_manifest(state, target)
    finally:
        target.close()
    shards, codes = [], []
    for slots in state.expected:
        record = state.chosen.get(slots)
        entry: dict[str, Any] = {"slots": [list(r) for r in slots]}
        if record is None:
            shards.append(
                {**entry, "node_id": None, "backup_id": None, "ok": False, "error": "no complete backup"}
            )
            continue
        run = operate({"backup_id": record.id, "deep": deep})
        codes.append(exit_code_for(run))
        result = {k: v for k, v in (run.summary or {}).items() if k not in RUN_PATH_KEYS}
        entry.update(node_id=(record.shard or {}).get("node_id"), backup_id=record.id, run_id=run.id)
        shards.append(
            {
                **entry,
                "status": run.status,
                "ok": run.status == "succeeded",
                "error": run.error,
                "result": result,
            }
        )
    problems = [
        *manifest["problems"],
        *(f"shard {s['node_id']} ({s['backup_id']}): {s['error']}" for s in shards if not s["ok"]),
    ]
    out = {
        "id": state.cluster_id,
        "kind": "cluster",
        "instance": state.instance,
        "status": state.status,
        "ok": not problems,
        "deep": deep,
        "cluster": state.summary(),
        "manifest": manifest,
        "shards": shards,
        "problems": problems,
    }
    if as_json:
        emit_json(out)
    else:
        _describe(out)
    if 75 in codes and not problems:
        return 75
    return 0 if out["ok"] else 1


def _describe(out: dict[str, Any]) -> None:
    from redis_maint.backup.cluster import ranges_text

    c = out["cluster"]
    verdict = "ok" if out["ok"] else "FAILED"
    how = "loaded in a throwaway redis-server each" if out["deep"] else "sha256 of every file"
    click.echo(
        f"cluster backup {out['id']}: {verdict} · {c['shards_complete']}/{c['shards_expected']} shards, {c['slots_covered']} slots ({how})"
    )
    m = out["manifest"]
    click.echo(f"  manifest   {'ok' if m['ok'] else 'FAILED'}  {m['location'] or '(none)'}")
    for s in out["shards"]:
        keys = ((s.get("result") or {}).get("deep") or {}).get("keys") or {}
        loaded = f"  {keys.get('loaded')} of {keys.get('source')} keys loaded" if keys else ""
        click.echo(
            f"  shard      {'ok' if s['ok'] else 'FAILED'}  {s['node_id'] or '?'}  slots {ranges_text(s['slots'])}"
            f"  backup {s['backup_id'] or '-'}{loaded}"
        )
    for problem in out["problems"]:
        click.echo(f"  problem    {problem}")


def shard_backup_id(app: App, backup_id: str, node_id: str | None, state: Any) -> str:
    """The backup to restore for `backups restore ID [--shard NODE_ID]` (UsageError: exit 2)."""
    if state is None:  # a backup's own id: --shard must name its node
        from redis_maint.history.catalog import Catalog

        record = Catalog(app.store()).get(backup_id)
        shard = (record.shard or {}) if record is not None else {}
        if record is not None and shard.get("node_id") != node_id:
            raise UsageError(
                f"backup {backup_id} is not a shard of node {node_id}"
                + (
                    f" (it is node {shard['node_id']}'s)"
                    if shard.get("node_id")
                    else " (it is not a Cluster shard)"
                )
                + "; drop --shard, or give the cluster backup's id"
            )
        return backup_id
    shards = _restorable(state)
    if node_id is None:
        raise UsageError(
            f"{backup_id} is a cluster backup of {len(shards)} shard(s); restore one shard at a time with "
            f"--shard NODE_ID (into that node's data dir, with the node stopped):\n{_shard_lines(shards)}"
        )
    found = [r for r in shards if (r.shard or {}).get("node_id") == node_id]
    if not found:  # a unique prefix, as `redis-cli cluster nodes` users abbreviate ids
        found = [r for r in shards if str((r.shard or {}).get("node_id")).startswith(node_id)]
        if len({(r.shard or {}).get("node_id") for r in found}) > 1:
            raise UsageError(
                f"--shard {node_id} matches several shards; give more of the node id:\n{_shard_lines(shards)}"
            )
    if not found:
        raise UsageError(
            f"cluster backup {backup_id} has no shard of node {node_id}; its shards:\n{_shard_lines(shards)}"
        )
    return found[-1].id


def _restorable(state: Any) -> list[Any]:
    """The shard backups one can restore: the chosen complete one of each shard, else any complete."""
    from redis_maint.history.catalog import BackupStatus

    chosen = list(state.chosen.values())
    return chosen or [r for r in state.shards if r.status == BackupStatus.COMPLETE]


def _shard_lines(shards: list[Any]) -> str:
    from redis_maint.backup.cluster import ranges_text

    if not shards:
        return "  (none is complete)"
    return "\n".join(
        f"  --shard {(r.shard or {}).get('node_id')}  slots {ranges_text((r.shard or {}).get('slots') or [])}  (backup {r.id})"
        for r in shards
    )
