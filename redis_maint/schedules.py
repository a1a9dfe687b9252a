"""Job schedules: a 5-field cron expression, `every <duration>`, or `off`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
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
            from apscheduler.triggers.cron import CronTrigger

            return CronTrigger.from_crontab(self.cron, timezone=tz)
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
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression: {value!r} ({exc})") from None
    return Schedule("cron", cron=text)
