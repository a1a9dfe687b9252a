"""Pause automatic AOF rewrites while the AOF files are copied (redis.io persistence docs).

Remember `auto-aof-rewrite-percentage`, set it to 0, wait until no rewrite runs or is
scheduled, and restore the old value in `finally` (failures and SIGTERM included: the job
turns SIGTERM into a checkpoint error). Three things make it survive more than one user:
- in one process, nested or concurrent guards on the same Redis share one saved value
  and only the last one out restores it;
- a note file (redis_maint.snapshot.aof_note) keeps the original value and every guard that holds
  the pause (job, run, host, pid, since), so guards in several processes share it too and
  the last live one restores it;
- a run killed with SIGKILL (no `finally`) leaves the note behind: the next guard, or the
  daemon (`restore_if_orphaned`, on start and then periodically), restores the operator's
  value once no owner is alive, instead of remembering 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from redis_maint.errors import JobTimeoutError, SnapshotError
from redis_maint.snapshot.aof_note import Note, Owner, live_owners, locked, owner_alive, read_note, write_note
from redis_maint.snapshot.bgsave import client_label, persistence, redis_call
from redis_maint.timeutil import isoformat

if TYPE_CHECKING:
    from redis_maint.history.runs import HistoryStore

log = logging.getLogger("redis_maint.snapshot.aof_guard")

PARAM = "auto-aof-rewrite-percentage"
_lock = threading.Lock()
_holders: dict[str, tuple[int, str]] = {}  # client label -> (how many guards, original value)
_mine: list[Owner] = []  # this process's guards that are inside their block (and in the note)


@contextmanager
def aof_rewrite_paused(
    client: redis.Redis,
    *,
    checkpoint: Callable[[], None],
    timeout: timedelta,
    note: Path | None = None,
) -> Iterator[None]:
    """Inside the block no AOF rewrite runs unless someone runs BGREWRITEAOF by hand."""
    owner = Owner.here()
    _enter(client, note, owner)
    try:
        wait_for_no_rewrite(client, checkpoint=checkpoint, timeout=timeout)
        yield
    finally:
        _leave(client, note, owner)


def active_guards() -> list[Owner]:
    """This process's guards that hold the pause right now."""
    with _lock:
        return list(_mine)


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


def _note_lock(note: Path | None):
    return locked(note) if note is not None else nullcontext()


def _enter(client: redis.Redis, note: Path | None, owner: Owner) -> None:
    key = client_label(client)
    with _lock, _note_lock(note):
        first = key not in _holders
        if first:
            original = _original_value(client, note)
            _holders[key] = (1, original)
        else:
            count, original = _holders[key]
            _holders[key] = (count + 1, original)
        if note is not None:
            # Written before rewrites are paused: a crash right after SET still leaves the note.
            write_note(note, Note(original, [*_others_alive(note, owner), owner]))
        _mine.append(owner)
        if first:
            try:
                _set(client, "0")
            except Exception:
                _undo_enter(key, note, owner, original)
                raise
    if first:
        log.info("AOF auto-rewrite paused", extra={"redis": key, "restore_to": original})


def _undo_enter(key: str, note: Path | None, owner: Owner, original: str) -> None:
    del _holders[key]
    _mine.remove(owner)
    if note is not None:
        others = _others_alive(note, owner)
        if others:
            write_note(note, Note(original, others))
        else:
            note.unlink(missing_ok=True)


def _others_alive(note: Path, me: Owner) -> list[Owner]:
    """The note's other owners that may still hold the pause (this host's dead pids dropped)."""
    found = read_note(note)
    if found is None or found.owners is None:
        return []
    return [o for o in found.owners if o != me and owner_alive(o, None, _mine)]


def _leave(client: redis.Redis, note: Path | None, owner: Owner) -> None:
    key = client_label(client)
    with _lock, _note_lock(note):
        _mine.remove(owner)
        count, original = _holders[key]
        others = _others_alive(note, owner) if note is not None else []
        if count > 1:
            _holders[key] = (count - 1, original)
            if note is not None:
                write_note(note, Note(original, others))
            return
        del _holders[key]
        if others:
            # Another process is still copying: the last one out restores the value.
            write_note(note, Note(original, others))
            log.info(
                "AOF auto-rewrite stays paused for another run",
                extra={"redis": key, "owners": [o.describe() for o in others]},
            )
            return
        try:
            _set(client, original)
        except Exception as exc:
            log.error(
                "could not restore auto-aof-rewrite-percentage: set it by hand",
                extra={"redis": key, "value": original, "error": str(exc)},
            )
            if note is not None:  # the note stays, so the next guard or the daemon restores it
                write_note(note, Note(original, []))
            return
        if note is not None:
            note.unlink(missing_ok=True)
    log.info("AOF auto-rewrite restored", extra={"redis": key, "value": original})


def _original_value(client: redis.Redis, note: Path | None) -> str:
    found = read_note(note) if note is not None else None
    if found is not None and found.original.isdigit():
        sharing = bool(found.owners) and any(owner_alive(o, None, _mine) for o in found.owners)
        log.log(
            logging.INFO if sharing else logging.WARNING,
            "AOF rewrites are already paused by another run"
            if sharing
            else "a previous run was killed while AOF rewrites were paused; its saved value wins",
            extra={"note": str(note), "value": found.original, "paused_by": found.describe_owners()},
        )
        return found.original
    return current_value(client)


def current_value(client: redis.Redis) -> str:
    """Redis's auto-aof-rewrite-percentage, as text."""
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


# -- repair: a pause left behind by a run that died --------------------------------------------


@dataclass(frozen=True)
class Repair:
    """What `restore_if_orphaned` did, for the log and the history row."""

    restored_to: str
    note: Note

    def summary(self) -> dict[str, Any]:
        owners = self.note.owners or []
        first = min(owners, key=lambda o: o.since) if owners else None
        return {
            "restored_to": self.restored_to,
            "paused_by_run": first.run_id if first else None,
            "paused_by_job": first.job if first else None,
            "paused_since": isoformat(first.since) if first else None,
            "paused_by": self.note.describe_owners(),
        }


def restore_if_orphaned(client: redis.Redis, note: Path, store: HistoryStore | None) -> Repair | None:
    """Restore the note's saved value when no run that paused rewrites is alive.

    Returns what was restored, or None when there was nothing to do (no note, an owner is
    still alive, or someone already set a value by hand: then only the stale note goes).
    """
    with _lock, locked(note):
        found = read_note(note)
        if found is None:
            if note.exists():
                log.error(
                    "the AOF-rewrite guard's note is unreadable; check auto-aof-rewrite-percentage by hand "
                    "and delete the note",
                    extra={"note": str(note)},
                )
            return None
        alive = live_owners(found, store, _mine)
        if alive:
            log.info("AOF auto-rewrite stays paused: its owner is still running", extra={"owners": alive})
            return None
        now = current_value(client)
        if now != "0":
            log.info(
                "AOF auto-rewrite was already set again; removing the stale note",
                extra={"value": now, "paused_by": found.describe_owners()},
            )
            note.unlink(missing_ok=True)
            return None
        _set(client, found.original)
        note.unlink(missing_ok=True)
    return Repair(restored_to=found.original, note=found)
