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


def _random_cron(rng) -> str:
    """A 5-field expression from plain crontab parts, valid or not (steps, ranges and values that
    may fall outside a field's bounds), with now and then a name or an APScheduler extension."""

    def part(lo: int, hi: int) -> str:
        roll = rng.random()
        if roll < 0.05:
            return rng.choice(["last", "1st mon", "jan", "L", "?", "", "-1", "5-"])
        if roll < 0.15:  # anywhere, out of bounds or backwards too
            a, b = rng.randint(lo - 1, hi + 1), rng.randint(lo - 1, hi + 1)
        else:
            a = rng.randint(lo, hi)
            b = rng.randint(a, hi)
        base = rng.choice(["*", str(a), str(a), f"{a}-{b}"])
        if rng.random() < 0.3:
            base += f"/{rng.choice([0, 1, 2, 3, 7, 15, rng.randint(1, hi + 2)])}"
        return base

    def field(lo: int, hi: int) -> str:
        return ",".join(part(lo, hi) for _ in range(rng.choice([1, 1, 1, 2, 3])))

    bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    return " ".join(field(lo, hi) for lo, hi in bounds)


def test_a_plainly_valid_cron_expression_is_one_apscheduler_accepts_and_fires():
    """parse_schedule skips APScheduler (its import is most of `config show`) only for expressions
    it can prove valid; each of those must build an APScheduler trigger that fires."""
    import random

    from redis_maint.schedules import cron_trigger, plainly_valid

    rng = random.Random(11)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    judged = {True: 0, False: 0}
    for _ in range(4000):
        expr = _random_cron(rng)
        plain = plainly_valid(expr)
        judged[plain] += 1
        if plain:
            assert cron_trigger(expr, UTC).get_next_fire_time(None, now) is not None, expr
    assert judged[True] > 300 and judged[False] > 300  # both sides were exercised


def test_what_apscheduler_refuses_is_still_refused_with_its_reason():
    import pytest

    from redis_maint.schedules import plainly_valid

    for expr, reason in [
        ("0 3 31 2 *", "can never fire"),
        ("*/60 * * * *", "step value"),
        ("0 24 * * *", "higher than the maximum"),
        ("0 3 10-5 * *", "must not be higher"),
        ("0 3 * * 8", "day-of-week"),
    ]:
        assert not plainly_valid(expr)
        with pytest.raises(ValueError, match=reason):
            parse_schedule(expr)
    assert plainly_valid("0 3 * * *") and plainly_valid("*/15 1-5,22 29 2 1-5")
