"""Figures for people: sizes, durations, relative and absolute times (always UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redis_maint.timeutil import parse_iso, utcnow

# Binary units, like the progress bars and `upload_mib_s`.
_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]


def size(n: int | float | None) -> str:
    """`485656` -> `474.3 KiB`; `12` -> `12 bytes`; never `1020.5 KiB` (that is `1.0 MiB`)."""
    if n is None:
        return ""
    n = int(n)
    if n < 1000:
        return f"{n} byte" if n == 1 else f"{n} bytes"
    value = float(n)
    for suffix in _UNITS[1:]:
        value /= 1024
        if value < 1000 or suffix == _UNITS[-1]:
            return f"{value:.1f} {suffix}"
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """`0.131` -> `131 ms`, `1.225` -> `1.2 s`, `65` -> `1 min 5 s`, `3725` -> `1 h 2 min`."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 0.001:
        return "<1 ms" if s > 0 else "0 s"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    return _coarse(round(s))


def _coarse(total: int) -> str:
    """The two largest units: `1 min 5 s`, `3 h 10 min`, `2 d 4 h`."""
    for big, size_, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if total >= size_:
            n, rest = divmod(total, size_)
            m = rest // small_size
            return f"{n} {big} {m} {small}" if m else f"{n} {big}"
    return f"{total} s"


def ago(when: datetime | str | None, now: datetime | None = None) -> str:
    """`3 h ago`, `just now`, `in 5 min` (for times in the future, e.g. a next run)."""
    moment = parse_time(when)
    if moment is None:
        return ""
    delta = ((now or utcnow()) - moment).total_seconds()
    if abs(delta) < 1:
        return "just now"
    text = _coarse_one(abs(delta))
    return f"{text} ago" if delta > 0 else f"in {text}"


def _coarse_one(seconds: float) -> str:
    for unit, size_ in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size_:
            return f"{int(seconds // size_)} {unit}"
    return f"{int(seconds)} s"


def when(value: datetime | str | None) -> str:
    """An absolute UTC time that reads well and sorts: `2026-12-01 22:59:08`."""
    moment = parse_time(value)
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def parse_time(value: datetime | str | None) -> datetime | None:
    return parse_iso(value)


def took(row: dict[str, Any]) -> float | None:
    """A run row's duration in seconds, from its start and finish (None while it runs)."""
    start, end = parse_time(row.get("started_at")), parse_time(row.get("finished_at"))
    return None if start is None or end is None else (end - start).total_seconds()


def count(n: int | None) -> str:
    """`138248` -> `138,248`."""
    return "" if n is None else f"{n:,}"
