"""A real redis-server on a free port, and waiting on what it does in the background.

Nothing here fakes a service: the helper starts the real program and waits for it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.common import free_port, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """A redis-server with its own data dir; `args` are extra config directives."""

    dir: Path
    port: int = field(default_factory=free_port)
    args: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        config = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.dir),
            "appendonly": "yes",
            "save": "",
            "maxmemory": "256mb",
            "maxmemory-policy": "allkeys-lru",
            "enable-debug-command": "yes",
            "daemonize": "no",
            "logfile": str(self.dir / "redis.log"),
            **self.args,
        }
        if self.password:
            config["requirepass"] = self.password
        cmd = [REDIS_SERVER]
        for key, value in config.items():
            cmd += [f"--{key}", value]
        return cmd

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), what=f"redis-server on port {self.port}")
        return self

    def client(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def wait_aof_rewrite(client: redis.Redis, timeout: float = 10.0) -> None:
    """Until no AOF rewrite runs or waits to run (BGREWRITEAOF returns before it is done)."""

    def idle() -> bool:
        info = client.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    wait_for(idle, timeout=timeout, what="the AOF rewrite to finish")
