"""Pause automatic AOF rewrites while the AOF files are copied (redis.io persistence docs).

Remember `auto-aof-rewrite-percentage`, set it to 0, wait until no rewrite runs or is
scheduled, and restore the old value in `finally` (failures and SIGTERM included: the job
turns SIGTERM into a checkpoint error). Two things make it survive more than one user:
- in one process, nested or concurrent guards on the same Redis share one saved value
  and only the last one out restores it;
- an optional note file keeps the original value, so a run killed with SIGKILL (no
  `finally`) lets the next run restore the operator's value instead of remembering 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import redis

from redis_maint.bgsave import client_label, persistence, redis_call
from redis_maint.errors import JobTimeoutError, SnapshotError

log = logging.getLogger("redis_maint.aof_guard")

PARAM = "auto-aof-rewrite-percentage"
_lock = threading.Lock()
_holders: dict[str, tuple[int, str]] = {}  # client label -> (how many guards, original value)


@contextmanager
def aof_rewrite_paused(
    client: redis.Redis,
    *,
    checkpoint: Callable[[], None],
    timeout: timedelta,
    note: Path | None = None,
) -> Iterator[None]:
    """Inside the block no AOF rewrite runs unless someone runs BGREWRITEAOF by hand."""
    _enter(client, note)
    try:
        wait_for_no_rewrite(client, checkpoint=checkpoint, timeout=timeout)
        yield
    finally:
        _leave(client, note)


def wait_for_no_rewrite(client: redis.Redis, *, checkpoint: Callable[[], None], timeout: timedelta) -> None:
    deadline = time.monotonic() + timeout.total_seconds()
    pause = 0.05
    while True:
        checkpoint()
        info = persistence(client)
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        if time.monotonic() >= deadline:
            raise JobTimeoutError(
                f"an AOF rewrite on {client_label(client)} was still running or scheduled after {timeout} "
                f"(aof_current_rewrite_time_sec={info.get('aof_current_rewrite_time_sec')}); "
                "raise the rewrite timeout if rewrites of this dataset take that long"
            )
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)


def _enter(client: redis.Redis, note: Path | None) -> None:
    key = client_label(client)
    with _lock:
        if key in _holders:
            count, original = _holders[key]
            _holders[key] = (count + 1, original)
            return
        original = _original_value(client, note)
        if note is not None:
            _write_note(note, original)
        _set(client, "0")
        _holders[key] = (1, original)
    log.info("AOF auto-rewrite paused", extra={"redis": key, "restore_to": original})


def _leave(client: redis.Redis, note: Path | None) -> None:
    key = client_label(client)
    with _lock:
        count, original = _holders[key]
        if count > 1:
            _holders[key] = (count - 1, original)
            return
        del _holders[key]
        try:
            _set(client, original)
        except Exception as exc:
            log.error(
                "could not restore auto-aof-rewrite-percentage: set it by hand",
                extra={"redis": key, "value": original, "error": str(exc)},
            )
            return  # the note stays, so the next guard restores the right value
        if note is not None:
            note.unlink(missing_ok=True)
    log.info("AOF auto-rewrite restored", extra={"redis": key, "value": original})


def _original_value(client: redis.Redis, note: Path | None) -> str:
    if note is not None and note.exists():
        left = note.read_text().strip()
        if left.isdigit():
            log.warning(
                "a previous run was killed while AOF rewrites were paused; its saved value wins",
                extra={"note": str(note), "value": left},
            )
            return left
    try:
        reply = redis_call(client, client.config_get, PARAM)
    except redis.ResponseError as exc:
        raise SnapshotError(f"CONFIG GET {PARAM} failed ({exc}); the AOF copy needs CONFIG GET/SET") from None
    value = next(iter(reply.values()), None)
    if value is None:
        raise SnapshotError(f"CONFIG GET {PARAM} returned nothing; is this Redis 7?")
    return value.decode() if isinstance(value, bytes) else str(value)


def _set(client: redis.Redis, value: str) -> None:
    try:
        redis_call(client, client.config_set, PARAM, value)
    except redis.ResponseError as exc:
        raise SnapshotError(
            f"CONFIG SET {PARAM} {value} failed ({exc}); the AOF copy needs CONFIG SET"
        ) from None


def _write_note(note: Path, value: str) -> None:
    note.parent.mkdir(parents=True, exist_ok=True)
    tmp = note.with_name(note.name + ".tmp")
    tmp.write_text(value + "\n")
    tmp.replace(note)
