"""A real 3-primary Redis Cluster, made of redis-servers joined by `redis-cli --cluster create`."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.common import wait_for
from tests.support.services.redis import RedisServer


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too, from a random start: test processes
    running at once (xdist workers) must not all try the same ones."""
    ports: list[int] = []
    candidate = 21000 + 7 * random.randrange(1000)
    while len(ports) < count:
        if all(_free(p) for p in (candidate, candidate + 10000)):
            ports.append(candidate)
        candidate = candidate + 7 if candidate < 29000 else 21000 + random.randrange(7)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalCluster:
    root: Path
    servers: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> LocalCluster:
        for attempt in range(3):
            try:
                self._start_nodes()
                break
            except RuntimeError:  # a node's port was taken meanwhile: other ports, a clean slate
                self.stop()
                self.servers.clear()
                if attempt == 2:
                    raise
        addrs = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(self._ready, timeout=60, what="cluster_state:ok on every node")
        return self

    def _start_nodes(self) -> None:
        for i, port in enumerate(_cluster_ports(3)):
            args = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf", "appendonly": "no"}
            node_dir = self.root / f"node{i}"
            if node_dir.exists():
                shutil.rmtree(node_dir)
            self.servers.append(RedisServer(dir=node_dir, port=port, args=args).start())

    def _ready(self) -> bool:
        return all(s.client().info("cluster").get("cluster_enabled") == 1 for s in self.servers) and all(
            s.client().cluster("info")["cluster_state"] == "ok" for s in self.servers
        )

    def client(self) -> redis.cluster.RedisCluster:
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.servers[0].port)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def flush(self) -> None:
        for server in self.servers:
            server.client().flushall()
