"""Which Redis nodes hold sessions: the one we are connected to, or every primary of a Cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import redis

from redis_maint.errors import RedisUnavailableError
from redis_maint.redact import redact, redact_url
from redis_maint.redis_conn import call


@dataclass(frozen=True)
class Node:
    name: str
    client: redis.Redis


def is_cluster(client: redis.Redis) -> bool:
    return int(client.info("cluster").get("cluster_enabled", 0)) == 1


@contextmanager
def primaries(client: redis.Redis, url: str, timeout: timedelta) -> Iterator[tuple[list[Node], bool]]:
    """Yield (nodes, slotted): the client itself, or one client per Cluster primary (slotted=True)."""
    if not call(url, is_cluster, client):
        yield [Node("main", client)], False
        return
    from redis.cluster import RedisCluster

    secs = timeout.total_seconds()
    try:
        cluster = RedisCluster.from_url(url, socket_timeout=secs, socket_connect_timeout=secs)
    except (redis.RedisError, ValueError) as exc:
        raise RedisUnavailableError(
            f"Redis at {redact_url(url)} is a Cluster but its primaries could not be found: {redact(str(exc))}; "
            "check that the addresses the nodes announce are reachable from here"
        ) from None
    try:
        nodes = [Node(n.name, cluster.get_redis_connection(n)) for n in cluster.get_primaries()]
        yield sorted(nodes, key=lambda n: n.name), True
    finally:
        cluster.close()


def server_time_ms(client: redis.Redis) -> int:
    """The node's clock: TTLs and PEXPIREAT are judged by it, not by ours."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def memory_ratio(nodes: list[Node]) -> float | None:
    """The highest used_memory/maxmemory over the nodes; None when no node sets maxmemory."""
    ratios = []
    for node in nodes:
        mem = node.client.info("memory")
        if int(mem.get("maxmemory", 0)):
            ratios.append(int(mem["used_memory"]) / int(mem["maxmemory"]))
    return round(max(ratios), 4) if ratios else None


def persistent_keys(client: redis.Redis) -> int:
    """Keys without a TTL in the client's database (INFO keyspace: keys - expires).

    When it is 0 no session lacks a TTL, and the sweep skips its per-key TTL probe.
    """
    db = client.connection_pool.connection_kwargs.get("db", 0) or 0
    space = client.info("keyspace").get(f"db{db}", {})
    return int(space.get("keys", 0)) - int(space.get("expires", 0))
