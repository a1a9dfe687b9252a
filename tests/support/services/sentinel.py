"""A real Sentinel test bed: a primary, a replica and one Sentinel (`redis-server --sentinel`), on free
ports with temp dirs, with Sentinel's timers small so a failover takes a couple of seconds."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.common import free_port, wait_for
from tests.support.services.redis import REDIS_SERVER, RedisServer

SERVICE = "sessions"
PASSWORD = "sentinel-bed-pw-7f3a"  # the data nodes' (requirepass/masterauth); the Sentinel has none
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000


@dataclass
class SentinelBed:
    root: Path
    nodes: list[RedisServer] = field(default_factory=list)
    sentinel_port: int = field(default_factory=free_port)
    sentinel_proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://:{PASSWORD}@127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def start(self) -> SentinelBed:
        auth = {"masterauth": PASSWORD}
        primary = RedisServer(dir=self.root / "node-a", args=dict(auth), password=PASSWORD).start()
        self.nodes.append(primary)
        replica_args = {**auth, "replicaof": f"127.0.0.1 {primary.port}"}
        self.nodes.append(RedisServer(dir=self.root / "node-b", args=replica_args, password=PASSWORD).start())
        wait_for(lambda: self.link_up(self.nodes[1]), timeout=20, what="the replica's first sync")
        self._start_sentinel(primary.port)
        wait_for(
            lambda: self.sentinel_sees(primary.port, replicas=1),
            timeout=20,
            what="Sentinel to see both nodes",
        )
        return self

    def _start_sentinel(self, primary_port: int) -> None:
        sdir = self.root / "sentinel"
        sdir.mkdir(parents=True, exist_ok=True)
        conf = sdir / "sentinel.conf"  # Sentinel rewrites its config file: it must be writable
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {sdir}\nlogfile {sdir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
            f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        )
        self.sentinel_proc = subprocess.Popen(
            [REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: self.sentinel().ping(), what=f"redis-sentinel on port {self.sentinel_port}")

    def sentinel(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_port, socket_timeout=5)

    def primary_port(self) -> int:
        return int(self.sentinel().sentinel_master(SERVICE)["port"])

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def sentinel_sees(self, primary_port: int, replicas: int) -> bool:
        state = self.sentinel().sentinel_master(SERVICE)
        healthy = [
            r
            for r in self.sentinel().sentinel_slaves(SERVICE)
            if not (r["is_sdown"] or r["is_odown"] or r["is_disconnected"])
        ]
        return int(state["port"]) == primary_port and not state["is_sdown"] and len(healthy) >= replicas

    @staticmethod
    def link_up(node: RedisServer) -> bool:
        return node.client().info("replication").get("master_link_status") == "up"

    def kill_primary(self, wait: bool = True) -> RedisServer:
        """SIGKILL the primary; returns the replica Sentinel will promote (waited for unless wait=False)."""
        old = self.node(self.primary_port())
        old.proc.kill()
        old.proc.wait()
        old.proc = None
        new = next(n for n in self.nodes if n is not old)
        if wait:
            self.wait_promoted(new)
        return new

    def wait_promoted(self, new: RedisServer) -> None:
        wait_for(lambda: self.primary_port() == new.port, timeout=30, what="Sentinel to promote the replica")
        wait_for(lambda: new.client().info("replication")["role"] == "master", what="the new primary's role")

    def restart_as_replica(self, node: RedisServer) -> None:
        """Start a killed node again; Sentinel turns it into a replica of the new primary."""
        node.start()
        wait_for(lambda: self.link_up(node), timeout=30, what="the old primary to rejoin as a replica")
        wait_for(lambda: self.sentinel_sees(self.primary_port(), replicas=1), timeout=30, what="Sentinel")

    def stop(self) -> None:
        if self.sentinel_proc is not None and self.sentinel_proc.poll() is None:
            self.sentinel_proc.terminate()
            try:
                self.sentinel_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.sentinel_proc.kill()
                self.sentinel_proc.wait()
        for node in self.nodes:
            node.stop()
