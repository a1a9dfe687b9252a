"""What `archive status` and the lag metric show: the generation, the lag and the restorable window.

- `window_end`: the newest instant known safe in the archive (every write Redis acknowledged before it
  is on the target), by Redis's clock;
- `window_start`: the oldest instant a restore can reach, the base of the oldest generation kept;
- `lag_s`: Redis's clock now minus `window_end`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from redis_maint.archive.state import ArchiveState, Generation
from redis_maint.timeutil import isoformat, utcnow


def window(gens: list[Generation]) -> tuple[datetime | None, datetime | None]:
    """(start, end) of what can be restored, from the generations kept (oldest first)."""
    starts = [g.base_time or g.created_at for g in gens if g.base_time or g.created_at]
    ends = [g.safe_until for g in gens if g.safe_until is not None]
    if not ends:
        return None, None
    end = max(ends)
    return (min(starts) if starts else None), end


def lag_seconds(gens: list[Generation], now: datetime) -> float | None:
    _, end = window(gens)
    return None if end is None else max((now - end).total_seconds(), 0.0)


def archive_status(state: ArchiveState, now: datetime, clock: str) -> dict[str, Any]:
    """The JSON of `archive status`: generation, lag_s, last_segment_at, window_start, window_end (+ more).
    `now` is Redis's clock when `clock` is "redis", this host's when Redis could not be asked."""
    gens = state.generations()
    cur = state.current()
    start, end = window(gens)
    last = [g.last_segment_at for g in gens if g.last_segment_at is not None]
    lag = lag_seconds(gens, now)
    return {
        "instance": state.instance,
        "generation": cur.generation if cur else None,
        "lag_s": None if lag is None else round(lag, 3),
        "last_segment_at": isoformat(max(last)) if last else None,
        "window_start": isoformat(start),
        "window_end": isoformat(end),
        "clock": clock,
        "now": isoformat(now),
        "incr_file": cur.incr_file if cur else None,
        "offset": cur.offset if cur else None,
        "reason": cur.reason if cur else None,
        "segments": sum(g.segments for g in gens),
        "bytes": sum(g.bytes for g in gens),
        "generations": [
            {
                "generation": g.generation,
                "status": g.status,
                "reason": g.reason,
                "created_at": isoformat(g.created_at),
                "base_time": isoformat(g.base_time),
                "safe_until": isoformat(g.safe_until),
                "backup_id": g.backup_id,
                "segments": g.segments,
                "bytes": g.bytes,
            }
            for g in gens
        ],
    }


# -- the archiver's last failure (for `archive status`) -------------------------------------------
# The archiver's ticks leave no history rows, so a tick that keeps failing (the staging disk full, the
# target unreachable) is written here by the archiver's loop, beside its staging dir, and cleared by
# the next tick that succeeds. `archive status` shows it as `problem` (null when there is none).


def problem_path(state_dir: Path, instance: str) -> Path:
    return Path(state_dir) / f"archive-{instance}-problem.json"


def write_problem(path: Path, error: str, failures: int, position: dict[str, Any]) -> None:
    """Record (atomically) that ticks fail: the error, how many in a row, since when, and the kept position."""
    previous = read_problem(path) or {}
    now = isoformat(utcnow())
    body = {
        "error": error,
        "failures": failures,
        "since": previous.get("since") if failures > 1 and previous.get("since") else now,
        "at": now,
        "position": position,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(body) + "\n")
    os.replace(tmp, path)


def clear_problem(path: Path) -> None:
    path.unlink(missing_ok=True)


def read_problem(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
