"""Click parameter types shared by the subcommands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click

from redis_maint.errors import UsageError


class DurationType(click.ParamType):
    """`12h`, `7d`, `1h30m`: a unit is required, and the value must be longer than 0s."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        from redis_maint.durations import parse_duration

        if isinstance(value, timedelta):
            return value
        flag = param.opts[0] if param is not None and param.opts else "duration"
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        if parsed <= timedelta(0):
            raise UsageError(f'{flag}: must be longer than 0s (got "{value}"); e.g. 12h')
        return parsed


DURATION = DurationType()


@dataclass(frozen=True)
class Moment:
    """A point in time as `--since`/`--until` took it: `at` is timezone-aware UTC."""

    given: str
    at: datetime
    kind: str  # "date", "datetime" or "duration" (ago)
    zone_given: bool  # False: a date or time without a zone, read as UTC

    def start(self) -> datetime:
        """As a lower bound (inclusive): a date is its first instant."""
        return self.at

    def end(self) -> datetime:
        """As an upper bound, exclusive: a date takes in its whole day, a time the instant itself."""
        return self.at + (timedelta(days=1) if self.kind == "date" else timedelta(microseconds=1))


MOMENT_EXAMPLES = "e.g. 2026-11-30, 2026-11-30T21:00 (UTC unless a zone is given, as in 21:00+01:00) or 7d"


class MomentType(click.ParamType):
    """An ISO date (`2026-11-30`), an ISO date and time with or without a zone (`2026-11-30T21:00`,
    `2026-11-30T21:00:00+01:00`, `...Z`; none given = UTC), or a duration ago (`7d`, `12h`)."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Moment:
        if isinstance(value, Moment):
            return value
        flag = param.opts[0] if param is not None and param.opts else "time"
        text = str(value).strip()
        moment = parse_moment(text)
        if moment is not None:
            return moment
        if text in ("0s", "0m", "0h", "0d", "0w"):
            raise UsageError(f'{flag}: must be longer than 0s (got "{text}"); {MOMENT_EXAMPLES}')
        if text.replace(".", "", 1).isdigit():  # `--since 2`: the duration's own hint
            raise UsageError(
                f'{flag}: "{text}" has no unit; did you mean {text}h or {text}d? ({MOMENT_EXAMPLES})'
            )
        raise UsageError(f'{flag}: "{text}" is not a date, a time or a duration; {MOMENT_EXAMPLES}')


def parse_moment(text: str, now: datetime | None = None) -> Moment | None:
    """`text` as a Moment, or None when it is none of a date, a date and time, or a duration."""
    from datetime import UTC, date

    from redis_maint.durations import parse_duration
    from redis_maint.timeutil import utcnow

    if len(text) == 10 and text[4:5] == "-":
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return Moment(text, datetime(day.year, day.month, day.day, tzinfo=UTC), "date", zone_given=False)
    if len(text) > 10 and text[4:5] == "-":
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            return None
        zoned = at.tzinfo is not None
        return Moment(text, at.astimezone(UTC) if zoned else at.replace(tzinfo=UTC), "datetime", zoned)
    try:
        ago = parse_duration(text)
    except ValueError:
        return None
    if ago <= timedelta(0):
        return None
    return Moment(text, (now or utcnow()) - ago, "duration", zone_given=True)


MOMENT = MomentType()
