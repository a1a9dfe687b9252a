"""The throwaway redis-server of an online restore (archive/online.py): a local process on the
prepared dataset, bound to one address, on a free port, with a random `requirepass` written to a
0600 config file in the run's private staging dir (never on its command line)."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import BusyLoadingError

from redis_maint.errors import IntegrityError, JobTimeoutError

POLL_S = 0.1
# Extra redis.conf directives for the throwaway server (the tests slow its RDB down with one).
THROWAWAY_EXTRA: dict[str, str] = {}


class Throwaway:
    """A redis-server process on this host serving the prepared dataset to the live Redis."""

    def __init__(self, binary: str, work: Path, data: Path, host: str, files: list[str]):
        self.binary, self.work, self.data, self.host = binary, work, data, host
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.files = files
        self.proc: subprocess.Popen | None = None
        self.conf = work / "throwaway.conf"
        self.log = work / "throwaway.log"

    def start(self, deadline: float) -> None:
        for _ in range(3):  # a free port can be taken between finding it and redis-server binding it
            self.port = free_port(self.host)
            self._write_conf()
            self.proc = subprocess.Popen(
                [self.binary, str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a ^C to the CLI reaches us, and we stop it
            )
            if self._wait_loaded(deadline):
                return
            if "in use" not in self.log_tail():
                break
        raise IntegrityError(
            f"the throwaway redis-server could not load the restored dataset:\n{self.log_tail()}"
        )

    def _write_conf(self) -> None:
        directives = {
            "bind": self.host,
            "port": str(self.port),
            "requirepass": self.password,
            "dir": str(self.data),
            "save": "",
            "aof-load-truncated": "yes",
            "enable-debug-command": "yes",  # DEBUG DIGEST of what it serves; nobody else has the password
            "repl-diskless-sync-delay": "0",
            "daemonize": "no",
            "logfile": str(self.log),
            "pidfile": str(self.work / "throwaway.pid"),
            **aof_directives(self.files),
            **THROWAWAY_EXTRA,
        }
        self.conf.touch(mode=0o600)
        self.conf.write_text("".join(f"{k} {_quote(v)}\n" for k, v in directives.items()))

    def _wait_loaded(self, deadline: float) -> bool:
        while self.alive():
            try:
                with self.client() as c:
                    if c.ping():
                        return True
            except BusyLoadingError:
                pass
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            if time.monotonic() >= deadline:
                raise JobTimeoutError(
                    "the throwaway redis-server was still loading the dataset at the deadline"
                )
            time.sleep(POLL_S)
        return False

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password, socket_timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe(self) -> dict[str, Any]:
        with self.client() as c:
            return {
                "host": self.host,
                "port": self.port,
                "keys": int(c.dbsize()),
                "digest": text(c.execute_command("DEBUG", "DIGEST")),
                "loaded_from": "aof" if aof_directives(self.files).get("appendonly") == "yes" else "rdb",
            }

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def aof_directives(files: list[str]) -> dict[str, str]:
    """redis.conf lines that load the laid-out files: the AOF when there is one (Redis prefers it)."""
    rdb = next((f for f in files if f.endswith(".rdb") and "/" not in f), "dump.rdb")
    manifest = next((f for f in files if f.endswith(".manifest") and "/" in f), None)
    if manifest is None:
        return {"dbfilename": rdb, "appendonly": "no"}
    directory, name = manifest.split("/", 1)
    return {
        "dbfilename": rdb,
        "appendonly": "yes",
        "appenddirname": directory,
        "appendfilename": name.removesuffix(".manifest"),
    }


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
