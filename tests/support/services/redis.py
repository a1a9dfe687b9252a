"""A real redis-server on a free port, and waiting on what it does in the background.

Nothing here fakes a service: the helper starts the real program and waits for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.common import free_port, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """A redis-server with its own data dir; `args` are extra config directives."""

    dir: Path
    port: int = 0  # 0: a free port, picked again if another process takes it before redis-server binds it
    args: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    proc: subprocess.Popen | None = None
    start_timeout: float = 60.0  # generous: a loaded machine (parallel tests) starts processes slowly
    _picked: bool = field(default=False, repr=False)
    _started: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port, self._picked = free_port(), True

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
        # A first start on a picked port may move to another; a restart keeps its port (and URL).
        attempts = 3 if self._picked and not self._started else 1
        for attempt in range(attempts):
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._answers():
                self._started = True
                return self
            # It exited: its port was taken (a free port is only free until someone binds it).
            log = self.dir / "redis.log"
            tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            if attempt == attempts - 1:
                raise RuntimeError(f"redis-server on port {self.port} exited {self.proc.returncode}: {tail}")
            self.port = free_port()
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        """Until this process answers PING, its dataset loaded (True), or exits (False). The server
        that answers must be this process: another one on the port would otherwise pass for it."""
        deadline = time.monotonic() + self.start_timeout
        while self.proc.poll() is None:
            try:
                with contextlib.closing(self.client(socket_timeout=2)) as c:
                    if c.ping():
                        try:
                            if c.info("server")["process_id"] == self.proc.pid:
                                return True
                        except redis.ResponseError:  # INFO refused (an ACL): PING is all it may say
                            return True
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"redis-server on port {self.port} did not answer in {self.start_timeout:.0f}s"
                )
            time.sleep(0.05)
        self.proc.wait()
        return False

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


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[RedisServer]:
    """The server stopped (SIGSTOP) for the block: it accepts connections and answers nothing until
    the block ends, however long the test needs (unlike DEBUG SLEEP, whose length is fixed in advance)."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield server
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def wait_aof_rewrite(client: redis.Redis, timeout: float = 10.0) -> None:
    """Until no AOF rewrite runs or waits to run (BGREWRITEAOF returns before it is done)."""

    def idle() -> bool:
        info = client.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    wait_for(idle, timeout=timeout, what="the AOF rewrite to finish")
