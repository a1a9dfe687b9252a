"""Job schedules: a 5-field cron expression, `every <duration>`, or `off`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from redis_maint.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger


@dataclass(frozen=True)
class Schedule:
    kind: str  # "cron", "every" or "off"
    cron: str | None = None
    interval: timedelta | None = None

    def __str__(self) -> str:
        if self.kind == "cron":
            return str(self.cron)
        if self.kind == "every":
            return f"every {format_duration(self.interval)}"
        return "off"

    def trigger(self, tz: tzinfo) -> BaseTrigger | None:
        """The APScheduler trigger, or None when the job is off."""
        if self.kind == "cron":
            return cron_trigger(self.cron, tz)
        if self.kind == "every":
            from apscheduler.triggers.interval import IntervalTrigger

            return IntervalTrigger(seconds=self.interval.total_seconds(), timezone=tz)
        return None

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The first fire time strictly after `moment`."""
        if self.kind == "off":
            return None
        if self.kind == "every":
            return moment + self.interval
        trig = self.trigger(tz)
        return trig.get_next_fire_time(None, moment + timedelta(microseconds=1))

    def previous_at_or_before(self, now: datetime, tz: tzinfo) -> datetime | None:
        """The last fire time at or before `now` (cron only; None otherwise)."""
        if self.kind != "cron":
            return None
        window = timedelta(minutes=1)
        # Widen the look-back until it contains a fire time, then walk forward to the last one.
        while window < timedelta(days=800):
            fire = self.next_after(now - window, tz)
            if fire is not None and fire <= now:
                while True:
                    following = self.next_after(fire, tz)
                    if following is None or following > now:
                        return fire
                    fire = following
            window *= 2
        return None


def parse_schedule(value: object) -> Schedule:
    if isinstance(value, Schedule):
        return value
    text = " ".join(str(value).split())
    lowered = text.lower()
    if lowered in ("off", "", "none", "disabled"):
        return Schedule("off")
    if lowered.startswith("every "):
        interval = parse_duration(lowered[len("every ") :])
        if interval.total_seconds() < 1:
            raise ValueError(f"an interval must be at least 1s (got {value!r})")
        return Schedule("every", interval=interval)
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"not a schedule: {value!r} (use a 5-field cron expression such as '0 3 * * *', "
            "'every 30s', or 'off')"
        )
    if plainly_valid(text):  # APScheduler (~30 ms to import) judges only what this cannot
        return Schedule("cron", cron=text)
    try:
        trigger = cron_trigger(text, UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression: {value!r} ({exc})") from None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError(
            f"the cron expression {value!r} can never fire (no such date, e.g. 31 February); "
            "check the day and month fields"
        )
    return Schedule("cron", cron=text)


# Plain crontab parts: `*` or N or N-M, each with an optional /STEP.
_PLAIN_PART = re.compile(r"(?:\*|(\d+)(?:-(\d+))?)(?:/(\d+))?")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12))  # minute, hour, day, month
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def plainly_valid(expr: str) -> bool:
    """True when a 5-field expression is plain numeric crontab that APScheduler accepts and that
    names a real date (so it fires). False when unsure: names, `last`, `1st mon`, a step wider than
    its range, or an error; APScheduler then judges it and words the error."""
    fields = expr.split(" ")
    try:
        crontab_weekdays(fields[4])  # any weekday set meets any real date within 28 years
    except ValueError:
        return False
    values = [_plain_values(text, lo, hi) for text, (lo, hi) in zip(fields[:4], _BOUNDS, strict=True)]
    if any(v is None for v in values):
        return False
    days, months = values[2], values[3]
    return any(day <= _LONGEST_MONTH[month - 1] for day in days for month in months)


def _plain_values(text: str, lo: int, hi: int) -> set[int] | None:
    values: set[int] = set()
    for part in text.split(","):
        match = _PLAIN_PART.fullmatch(part)
        if match is None:
            return None
        first, last, step = (None if g is None else int(g) for g in match.groups())
        start = lo if first is None else first
        end = (
            hi if first is None or (last is None and step is not None) else (first if last is None else last)
        )
        if not lo <= start <= end <= hi or (step is not None and not 1 <= step <= end - start):
            return None
        values.update(range(start, end + 1, step or 1))
    return values


DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(expr: str, tz: tzinfo | None):
    """A CronTrigger with standard crontab semantics.

    APScheduler 3.x's `from_crontab` numbers weekdays from Monday=0 (its docstring admits the
    mismatch), so `0 3 * * 0` would fire on Mondays. We expand the day-of-week field with
    crontab numbering (0 and 7 are Sunday) and pass day names instead.
    """
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, dow = expr.split()
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=crontab_weekdays(dow), timezone=tz
    )


def crontab_weekdays(field: str) -> str:
    """Crontab day-of-week field -> APScheduler day names ('*' when every day)."""
    days: set[int] = set()
    for part in field.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in day-of-week {field!r}")
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            lo_text, hi_text = base.split("-", 1)
            lo, hi = _weekday(lo_text, field), _weekday(hi_text, field)
        else:
            lo = hi = _weekday(base, field)
            if step_text:
                hi = 6
        if hi < lo:
            raise ValueError(f"day-of-week range goes backwards in {field!r}")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _weekday(token: str, field: str) -> int:
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"bad day-of-week {token!r} in {field!r} (use 0-7 or sun-sat)")
