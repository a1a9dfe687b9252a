"""Schedule arithmetic: previous/next fire times, in the configured timezone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from redis_maint.schedules import parse_schedule

UTCZ = ZoneInfo("UTC")


def test_previous_fire_of_a_nightly_cron():
    s = parse_schedule("0 3 * * *")
    now = datetime(2026, 3, 10, 2, 59, tzinfo=UTC)
    assert s.previous_at_or_before(now, UTCZ) == datetime(2026, 3, 9, 3, 0, tzinfo=UTC)
    assert s.previous_at_or_before(datetime(2026, 3, 10, 3, 0, tzinfo=UTC), UTCZ) == datetime(
        2026, 3, 10, 3, 0, tzinfo=UTC
    )


def test_previous_fire_of_a_weekly_cron_uses_crontab_day_numbers():
    s = parse_schedule("0 4 * * 0")  # crontab 0 = Sunday (APScheduler's own fields would say Monday)
    prev = s.previous_at_or_before(datetime(2026, 11, 25, 12, 0, tzinfo=UTC), UTCZ)
    assert prev.weekday() == 6 and prev.hour == 4


def test_next_fire_follows_the_configured_timezone():
    s = parse_schedule("0 3 * * *")
    london = ZoneInfo("Europe/London")
    nxt = s.next_after(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), london)
    assert nxt.astimezone(UTC) == datetime(2026, 7, 2, 2, 0, tzinfo=UTC)  # 03:00 BST


def test_interval_has_no_previous_fire():
    s = parse_schedule("every 30s")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert s.previous_at_or_before(now, UTCZ) is None
    assert (s.next_after(now, UTCZ) - now).total_seconds() == 30


def test_crontab_weekday_numbers_are_translated():
    from redis_maint.schedules import crontab_weekdays

    assert crontab_weekdays("0") == "sun"
    assert crontab_weekdays("7") == "sun"
    assert crontab_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_weekdays("*/2") == "sun,tue,thu,sat"
    assert crontab_weekdays("sat,sun") == "sun,sat"
    assert crontab_weekdays("*") == "*"
