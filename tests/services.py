"""Real services for tests: redis-server processes and a moto S3 server, on free ports.

Nothing here fakes a service: each helper starts the real program and waits for it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what} (last error: {last})")


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


@dataclass
class MotoServer:
    """moto in server mode: a real HTTP S3 endpoint in its own process."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        exe = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1), what="moto_server")
        return self

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=5)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def env(self) -> dict[str, str]:
        """Standard AWS variables that point boto3 at this server with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key-do-not-log",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
