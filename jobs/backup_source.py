"""Where a backup comes from when Redis runs behind Sentinel (not a job: the backup job's helper).

A sidecar sits beside each Redis node and reads that node's files (`node_url`, `data_dir`).
`[jobs.backup] source` says which node a scheduled backup should come from:
- `primary`: the node Sentinel names the primary;
- `replica`: the freshest healthy replica (none fit: the primary's sidecar runs the slot and fails,
  saying why, so the gap is in history and alerts rather than silent);
- `auto`: that replica if one is within `max_replica_lag`, else the primary.
Only the sidecar beside the chosen node is eligible for the slot; each sidecar asks Sentinel at
every slot, so after a failover eligibility follows the new roles at the next slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis_maint.errors import JobFailedError, MaintenanceError

if TYPE_CHECKING:
    from config.schema import Settings
    from jobs.base import JobContext
    from redis_maint.topology.sentinel import NodeState, SourcePick


def behind_sentinel(settings: Settings) -> bool:
    return settings.redis_url.startswith("redis+sentinel://")


def _pick(settings: Settings, node_client=None) -> tuple[SourcePick, NodeState | None, NodeState]:
    """(the pick, this sidecar's node in Sentinel's view or None, the node that should run the slot)."""
    from redis_maint.redis_conn import call, connect
    from redis_maint.topology import sentinel

    s = settings.job("backup")
    view = sentinel.describe(settings.redis_url, settings.redis_timeout)
    pick = sentinel.choose_source(view, s.source, s.max_replica_lag)
    if settings.node_url:
        client = node_client or connect(settings.node_url, settings.redis_timeout)
        try:
            run_id = call(settings.node_url, sentinel.node_run_id, client)
        finally:
            if node_client is None:
                client.close()
        mine = view.find(run_id, _address(settings.node_url))
    else:
        mine = view.primary  # no node_url: this sidecar's files are the primary's
    return pick, mine, pick.chosen or view.primary


def _own_node_down(settings: Settings) -> str | None:
    """Why this sidecar's own node cannot be backed up from here (it does not answer), or None."""
    from redis_maint.errors import RedisUnavailableError
    from redis_maint.redis_conn import connect

    if not settings.node_url:
        return None
    try:
        connect(settings.node_url, settings.redis_timeout).close()
    except RedisUnavailableError as exc:
        return f"this sidecar's node does not answer ({exc})"
    return None


def eligible(settings: Settings) -> str | None:
    """None when this sidecar's node is the backup's source (or there is no Sentinel), else why not."""
    if not behind_sentinel(settings):
        return None
    down = _own_node_down(settings)  # a dead node is no source; Sentinel is asked only when it answers
    if down is not None:
        return down
    pick, mine, runner = _pick(settings)
    if mine is None:
        from redis_maint.redact import redact_url

        return (
            f"this sidecar's node ({redact_url(settings.node_url)}) is not among the nodes Sentinel knows "
            f"for {pick.view.service!r}"
        )
    if mine.address == runner.address:
        return None
    return (
        f"the backup comes from {runner.address} ({runner.role}: {pick.why}); "
        f"this sidecar's node is {mine.address} ({mine.role})"
    )


def for_run(ctx: JobContext) -> dict[str, Any] | None:
    """The source as the run records it (summary `source`, manifest `node`); None without Sentinel.

    Fails the run (before BGSAVE) when source = replica and no replica is fit. Sentinel not
    answering is not a reason to skip a backup: the node beside is backed up, with the error noted.
    """
    if not behind_sentinel(ctx.settings):
        return None
    s = ctx.job_settings
    try:
        pick, mine, runner = _pick(ctx.settings, ctx.node_redis() if ctx.settings.node_url else None)
    except MaintenanceError as exc:
        ctx.log.warning("Sentinel did not say which node to back up; backing up this sidecar's node")
        return {"setting": s.source, "error": str(exc)}
    out: dict[str, Any] = {
        "setting": s.source,
        "chosen": runner.address,
        "why": pick.why,
        "primary": pick.view.primary.address,
        "node": None if mine is None else mine.address,
        "role": None if mine is None else mine.role,
    }
    if mine is not None:
        out["lag_bytes"] = mine.lag_bytes
    if pick.chosen is None:
        raise JobFailedError(
            f"jobs.backup.source = replica, but no replica may be backed up: {pick.why}; nothing was backed up. "
            "Fix the replica, or set jobs.backup.source = auto to fall back to the primary",
            {"source": out},
        )
    return out


def node_record(settings: Settings, server: dict[str, Any], source: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's `node`: which node was backed up, its role and replication offset."""
    role = {"master": "primary", "slave": "replica"}.get(server.get("role") or "", server.get("role"))
    record = {
        "address": (source or {}).get("node") or _address(settings.node_redis_url),
        "role": role,
        "run_id": server.get("run_id"),
        "replication_offset": server.get("master_repl_offset"),
        "master_replid": server.get("master_replid"),
    }
    if source is not None:
        record["primary"] = source.get("primary")
        record["lag_bytes"] = source.get("lag_bytes")
        record["source"] = {
            k: source.get(k) for k in ("setting", "why", "error") if source.get(k) is not None
        }
    return record


def _address(url: str) -> str | None:
    """host:port (or the socket path) of a one-node URL, without credentials."""
    if url.startswith("redis+sentinel://"):
        return None
    from redis.connection import parse_url

    try:
        parts = parse_url(url)
    except ValueError:
        return None
    if "path" in parts:
        return str(parts["path"])
    host = parts.get("host", "localhost")
    return f"{host}:{parts.get('port', 6379)}"
