"""BGSAVE and wait for it, judged from INFO persistence.

BGSAVE answers "Background saving started", "already in progress", or (during an AOF rewrite)
"Another child process is active"; success means rdb_last_bgsave_status:ok afterwards.

redis-py turns both success replies into True, so we send a plain BGSAVE first to learn
whether a save started, was already running, or must be scheduled behind an AOF rewrite,
then poll `rdb_saves` (a counter of started saves, failed ones included) and
`rdb_bgsave_in_progress` until the save we asked for has ended. Each poll also feeds the wait's
progress: Redis 7 reports current_save_keys_processed / current_save_keys_total while a save runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import redis

from redis_maint.errors import JobTimeoutError, SnapshotError
from redis_maint.progress import Meter, Progress
from redis_maint.redis_conn import call

log = logging.getLogger("redis_maint.snapshot.bgsave")

T = TypeVar("T")
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0


def client_label(client: redis.Redis) -> str:
    """redis://host:port/db of a client, never with its password (for messages)."""
    kw = client.connection_pool.connection_kwargs
    if kw.get("path"):
        return f"unix://{kw['path']}"
    return f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


def redis_call(client: redis.Redis, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One command, with connection and auth failures turned into RedisUnavailableError."""
    return call(client_label(client), fn, *args, **kwargs)


def persistence(client: redis.Redis) -> dict[str, Any]:
    return redis_call(client, client.info, "persistence")


def server_time(client: redis.Redis) -> float:
    seconds, micros = redis_call(client, client.time)
    return seconds + micros / 1e6


def bgsave_and_wait(
    client: redis.Redis,
    *,
    checkpoint: Callable[[], None],
    timeout: timedelta,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ask for a BGSAVE (or join one in progress) and wait until it ends; fail unless it succeeded.

    Returns {mode: started|existing|scheduled, requested_at: server time, seconds, rdb_last_save_time}.
    """
    before = persistence(client)
    requested_at = server_time(client)
    mode = _request(client)
    target = int(before.get("rdb_saves", 0)) + (
        0 if mode == "existing" and before.get("rdb_bgsave_in_progress") else 1
    )
    log.info("waiting for BGSAVE", extra={"mode": mode, "redis": client_label(client)})
    t0 = time.monotonic()
    meter = Meter(progress, "BGSAVE", "keys")
    try:
        info = _wait(client, target, requested_at, checkpoint, t0 + timeout.total_seconds(), timeout, meter)
    finally:
        meter.finish()
    status = info.get("rdb_last_bgsave_status")
    if status != "ok":
        raise SnapshotError(
            f"BGSAVE failed on {client_label(client)}: rdb_last_bgsave_status is {status!r}. "
            "Look in the Redis log for the cause (disk full, permissions on its dir, a failed fork); "
            "with stop-writes-on-bgsave-error yes Redis now refuses writes with MISCONF until a save succeeds"
        )
    return {
        "mode": mode,
        "requested_at": requested_at,
        "seconds": round(time.monotonic() - t0, 3),
        "rdb_last_save_time": info.get("rdb_last_save_time"),
    }


def _request(client: redis.Redis) -> str:
    try:
        redis_call(client, client.bgsave, schedule=False)
        return "started"
    except redis.ResponseError as exc:
        text = str(exc)
        if "already in progress" in text:
            return "existing"
        if "SCHEDULE" in text:  # an AOF rewrite child is running
            redis_call(client, client.bgsave, schedule=True)
            return "scheduled"
        raise SnapshotError(f"BGSAVE refused by {client_label(client)}: {text}") from None


def _wait(
    client, target: int, requested_at: float, checkpoint, deadline: float, timeout, meter: Meter
) -> dict[str, Any]:
    pause = POLL_MIN_S
    while True:
        checkpoint()
        info = persistence(client)
        if _done(info, target, requested_at):
            return info
        meter.reading(*save_progress(info))
        if time.monotonic() >= deadline:
            raise JobTimeoutError(
                f"BGSAVE on {client_label(client)} did not finish within {timeout} "
                f"(rdb_current_bgsave_time_sec={info.get('rdb_current_bgsave_time_sec')}, "
                f"aof_rewrite_in_progress={info.get('aof_rewrite_in_progress')}); "
                "the save may still be running: raise the BGSAVE timeout if the dataset is large"
            )
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_S)


def save_progress(info: dict[str, Any]) -> tuple[int | None, int | None]:
    """(keys saved, keys to save) of the running save; (None, None) when Redis does not say (before
    7.0, or while the save waits behind an AOF rewrite): the wait then shows its elapsed time."""
    if not info.get("rdb_bgsave_in_progress") or "current_save_keys_total" not in info:
        return None, None
    return int(info.get("current_save_keys_processed", 0)), int(info["current_save_keys_total"])


def _done(info: dict[str, Any], target: int, requested_at: float) -> bool:
    if info.get("rdb_bgsave_in_progress"):
        return False
    if "rdb_saves" in info:
        return int(info["rdb_saves"]) >= target
    # Redis < 7 has no rdb_saves: a success sets LASTSAVE to the end time, a failure flags the status.
    return info.get("rdb_last_bgsave_status") != "ok" or int(info.get("rdb_last_save_time", 0)) >= int(
        requested_at
    )
