"""A real redis-server held in LOADING: restarted on an RDB it loads slowly (Redis 7's hidden
`key-load-delay`, microseconds per key), answering clients between keys (LOADING to most commands,
INFO with how far it is)."""

from __future__ import annotations

import subprocess

from tests.support.common import wait_for
from tests.support.services.redis import RedisServer


def restart_loading_slowly(server: RedisServer, *, keys: int = 20_000, delay_us: int = 1000) -> None:
    """Fill `server` with `keys` keys, SAVE, and restart it loading them at `delay_us` per key (the
    default lasts ~20 s); returns once INFO says it is loading. Kill `server.proc` when done rather
    than waiting for the load: its data dir must hold dump.rdb only (start it with appendonly no)."""
    client = server.client()
    client.execute_command("DEBUG", "POPULATE", keys, "session")
    client.save()
    server.stop()
    server.args.update({"key-load-delay": str(delay_us), "loading-process-events-interval-bytes": "1024"})
    server.proc = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: server.client(socket_timeout=1).info("persistence")["loading"] == 1, what="LOADING")


def kill(server: RedisServer) -> None:
    """SIGKILL a server (one still loading would take its time to stop on SIGTERM)."""
    if server.proc is not None:
        server.proc.kill()
        server.proc.wait()
        server.proc = None
