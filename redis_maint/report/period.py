"""The range of a report: `--from` and `--to` as ISO dates or datetimes, in UTC.

A date names a whole UTC day: `--from 2026-11-01 --to 2026-11-30` covers November, the 30th
included. A datetime is an instant: `--to` is then the end, not included. A value without a
timezone is taken as UTC, and the report says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from redis_maint.timeutil import isoformat

# A report covers at most this many days: a calendar of ten years is already 3,650 cells.
MAX_DAYS = 3660
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Bound:
    at: datetime  # aware UTC
    date_only: bool
    zone_assumed: bool  # no timezone was given: read as UTC


@dataclass(frozen=True)
class Period:
    start: datetime  # included
    end: datetime  # not included
    zone_assumed: bool

    def days(self) -> list[date]:
        """Every UTC day the range touches, in order."""
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def describe(self) -> str:
        return f"{isoformat(self.start)} to {isoformat(self.end)} (end not included)"


def parse_bound(text: str, *, end: bool) -> Bound:
    """`2026-11-01`, `2026-11-01T12:00`, `2026-11-01T12:00:00+01:00`, `...Z`; ValueError otherwise."""
    raw = text.strip()
    if _DATE_ONLY.fullmatch(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None
        at = datetime.combine(day, time(0), tzinfo=UTC)
        # --to 2026-11-30 means the whole of the 30th.
        return Bound(at + timedelta(days=1) if end else at, date_only=True, zone_assumed=True)
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or datetime; e.g. 2026-11-01, 2026-11-01T09:30 or "
            "2026-11-01T09:30:00+01:00 (no timezone: UTC)"
        ) from None
    if parsed.tzinfo is None:
        return Bound(parsed.replace(tzinfo=UTC), date_only=False, zone_assumed=True)
    return Bound(parsed.astimezone(UTC), date_only=False, zone_assumed=False)


def period(start_text: str, end_text: str) -> Period:
    """The range from two bounds; ValueError when it is empty, reversed or too long."""
    start = parse_bound(start_text, end=False)
    end = parse_bound(end_text, end=True)
    if end.at <= start.at:
        raise ValueError(
            f"--to ({end_text}) must be after --from ({start_text}); a date as --to includes that whole day"
        )
    if end.at - start.at > timedelta(days=MAX_DAYS):
        raise ValueError(
            f"the range {start_text} to {end_text} is longer than {MAX_DAYS} days; split it into several reports"
        )
    return Period(start.at, end.at, zone_assumed=start.zone_assumed or end.zone_assumed)
