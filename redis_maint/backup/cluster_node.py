"""What a Redis Cluster node says about itself: its id, its shard's slot ranges, the cluster's shards.

Read with CLUSTER MYID and CLUSTER SHARDS (Redis 7), else CLUSTER NODES, by the backup job before and
after it copies the node's files (backup/cluster.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from redis_maint.errors import MaintenanceError

if TYPE_CHECKING:
    import redis

TOTAL_SLOTS = 16384
Slots = tuple[tuple[int, int], ...]


def shard_of(client: redis.Redis, url: str) -> dict[str, Any] | None:
    """{node_id, role, primary_id, slots, topology} of a Cluster node; None when not in cluster mode."""
    from redis_maint.redis_conn import call  # redis-py: only when a backup runs, never for a listing

    if int(call(url, client.info, "cluster").get("cluster_enabled", 0)) != 1:
        return None
    myid = _text(call(url, client.execute_command, "CLUSTER MYID"))
    shards = _topology(client, url)
    mine = next((s for s in shards if myid in s["nodes"]), None)
    if mine is None:
        raise MaintenanceError(
            f"Redis Cluster node {myid} is not in its own CLUSTER SHARDS/NODES reply; "
            "check `redis-cli cluster nodes` on it (a node still joining the cluster?)"
        )
    return {
        "node_id": myid,
        "role": "primary" if mine["primary_id"] == myid else "replica",
        "primary_id": mine["primary_id"],
        "slots": [list(r) for r in mine["slots"]],
        "topology": [
            {"primary_id": s["primary_id"], "slots": [list(r) for r in s["slots"]]}
            for s in shards
            if s["slots"]
        ],
    }


def moved(before: dict[str, Any], after: dict[str, Any] | None) -> str | None:
    """Why a backup taken between these two readings does not match its recorded slots, or None."""
    if after is None:
        return "the node left cluster mode during the backup"
    if before["node_id"] != after["node_id"] or before["primary_id"] != after["primary_id"]:
        return f"the node's shard changed during the backup (primary {before['primary_id']} -> {after['primary_id']})"
    if slots_key(before["topology"]) != slots_key(after["topology"]):
        return "the cluster's slots moved during the backup (resharding or failover)"
    return None


def _topology(client: redis.Redis, url: str) -> list[dict[str, Any]]:
    """Every shard: {primary_id, nodes: {ids}, slots: ((start, end), ...)}, sorted by first slot."""
    from redis.exceptions import ResponseError

    from redis_maint.redis_conn import call

    try:
        shards = _parse_shards(call(url, client.execute_command, "CLUSTER SHARDS"))
    except ResponseError:  # Redis before 7.0
        shards = _parse_nodes(call(url, client.execute_command, "CLUSTER NODES"))
    return sorted(shards, key=lambda s: (s["slots"][0][0] if s["slots"] else TOTAL_SLOTS, s["primary_id"]))


def _parse_shards(reply: Any) -> list[dict[str, Any]]:
    out = []
    for shard in reply:
        shard = _as_dict(shard)
        flat = [int(x) for x in shard.get("slots") or []]
        nodes = [_as_dict(n) for n in shard.get("nodes") or []]
        primary = next((_text(n["id"]) for n in nodes if _text(n.get("role")) == "master"), None)
        if primary is None:
            continue  # a shard whose primary failed and no replica took over: it holds no slots now
        slots = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2))
        out.append({"primary_id": primary, "nodes": {_text(n["id"]) for n in nodes}, "slots": merge(slots)})
    return out


def _parse_nodes(reply: Any) -> list[dict[str, Any]]:
    """CLUSTER NODES as text, or as redis-py's {addr: {node_id, flags, master_id, slots}}."""
    if isinstance(reply, bytes | str):
        reply = _nodes_text(_text(reply))
    primaries: dict[str, dict[str, Any]] = {}
    replicas: list[tuple[str, str]] = []
    for node in reply.values():
        flags = _text(node.get("flags"))
        if "master" in flags.split(","):
            ranges = [(int(r[0]), int(r[-1])) for r in node.get("slots") or [] if str(r[0]).isdigit()]
            primaries[node["node_id"]] = {
                "primary_id": node["node_id"],
                "nodes": {node["node_id"]},
                "slots": merge(ranges),
            }
        elif node.get("master_id") not in (None, "-"):
            replicas.append((node["node_id"], node["master_id"]))
    for node_id, master in replicas:
        if master in primaries:
            primaries[master]["nodes"].add(node_id)
    return list(primaries.values())


def _nodes_text(text: str) -> dict[str, dict[str, Any]]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        slots = [p.split("-") for p in parts[8:] if not p.startswith("[")]
        out[parts[1]] = {"node_id": parts[0], "flags": parts[2], "master_id": parts[3], "slots": slots}
    return out


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    items = list(value)  # RESP2 without redis-py's callback: [key, value, key, value, ...]
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def merge(ranges: Iterable[tuple[int, int]]) -> Slots:
    """Sorted, adjacent and overlapping ranges joined."""
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((a, b) for a, b in out)


def slots_key(slots_or_topology: Any) -> Any:
    if slots_or_topology and isinstance(slots_or_topology[0], dict):
        return sorted(slots_key(s["slots"]) for s in slots_or_topology)
    return merge(tuple(r) for r in slots_or_topology or [])


def count(slots: Slots) -> int:
    return sum(end - start + 1 for start, end in slots)


def in_slots(slot: int, slots: Iterable[Iterable[int]]) -> bool:
    return any(start <= slot <= end for start, end in slots)
