"""The one tolerant reader of stored or printed times (redis_maint/timeutil.parse_iso)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from redis_maint.timeutil import parse_iso

AT = datetime(2026, 12, 1, 21, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01T21:30:05Z",
        "2026-12-01T21:30:05+00:00",
        "2026-12-01T22:30:05+01:00",
        "2026-12-01T21:30:05",  # no zone: UTC, as the history store keeps it
        "2026-12-01 21:30:05",
        datetime(2026, 12, 1, 21, 30, 5),
        datetime(2026, 12, 1, 16, 30, 5, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_parse_iso_reads_every_stored_form_as_aware_utc(value):
    parsed = parse_iso(value)
    assert parsed == AT
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, "", "yesterday", "2026-13-01T00:00:00Z"])
def test_parse_iso_gives_none_for_what_is_not_a_time(value):
    assert parse_iso(value) is None
