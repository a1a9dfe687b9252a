"""Retention arithmetic (pure): restic-style rules over 90 frozen days, keep_within and kept backups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from freezegun import freeze_time

from redis_maint.backup.retention import Candidate, Policy, StoredBackup, group_listing, incomplete, plan
from redis_maint.storage.base import ObjectInfo
from redis_maint.timeutil import utcnow

LATER = datetime(2030, 1, 1, tzinfo=UTC)  # a clock far past every backup: keep_within keeps none


def daily_backups_over(days: int, start: str, policy: Policy, *, skip: set[date] = frozenset()) -> set[date]:
    """Simulate the job: one backup a day at 03:00 UTC, retention after each success."""
    kept: list[Candidate] = []
    with freeze_time(start) as clock:
        for _ in range(days):
            clock.move_to(utcnow().replace(hour=3, minute=0, second=0, microsecond=0))
            if utcnow().date() not in skip:
                kept.append(Candidate(f"b-{utcnow():%Y%m%d}", utcnow()))
                pruned = set(plan(kept, policy, now=utcnow()).prune)
                kept = [b for b in kept if b.id not in pruned]
            clock.tick(timedelta(days=1))
    return {b.created_at.date() for b in kept}


def test_ninety_days_with_defaults_keep_exactly_the_expected_set():
    # 2025-01-01 .. 2025-03-31 (a Wednesday to a Monday).
    kept = daily_backups_over(90, "2025-01-01 00:00:00", Policy())

    daily = {date(2025, 3, 31) - timedelta(days=n) for n in range(14)}  # 18 Mar .. 31 Mar
    # Newest backup of each of the last 8 ISO weeks: Mon 31 Mar (W14), then Sundays.
    weekly = {date(2025, 3, 31), *(date(2025, 3, 30) - timedelta(weeks=n) for n in range(7))}
    monthly = {date(2025, 3, 31), date(2025, 2, 28), date(2025, 1, 31)}  # only 3 months exist
    assert kept == daily | weekly | monthly
    assert len(kept) == 14 + 5 + 2  # weekly adds 9 Feb..9 Mar, monthly adds 31 Jan and 28 Feb
    assert min(kept) == date(2025, 1, 31)


def test_ninety_days_of_keep_last_only_keeps_the_last_n():
    kept = daily_backups_over(
        90, "2025-01-01", Policy(keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0)
    )
    assert kept == {date(2025, 3, 29), date(2025, 3, 30), date(2025, 3, 31)}


def test_daily_rule_counts_days_that_have_backups_not_calendar_days():
    # No backups for a week in March: keep_daily 14 reaches further back instead.
    gap = {date(2025, 3, 20) + timedelta(days=n) for n in range(7)}  # 20..26 March
    kept = daily_backups_over(
        90, "2025-01-01", Policy(keep_daily=14, keep_weekly=0, keep_monthly=0), skip=gap
    )
    expected = {date(2025, 3, 27) + timedelta(days=n) for n in range(5)} | {
        date(2025, 3, 19) - timedelta(days=n) for n in range(9)
    }
    assert kept == expected


def test_all_rules_zero_still_keeps_the_newest():
    backups = [Candidate(f"b{n}", datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=n)) for n in range(5)]
    result = plan(backups, Policy(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0), now=LATER)
    assert list(result.keep) == ["b4"]
    assert result.keep["b4"] == ["newest"]
    assert result.prune == ["b3", "b2", "b1", "b0"]


def test_several_backups_a_day_keep_the_newest_of_the_day():
    base = datetime(2025, 5, 10, tzinfo=UTC)
    backups = [Candidate(f"h{h:02d}", base + timedelta(hours=h)) for h in (1, 9, 23)]
    result = plan(backups, Policy(keep_daily=1, keep_weekly=0, keep_monthly=0), now=LATER)
    assert result.prune == ["h09", "h01"]


def test_day_boundaries_follow_the_schedule_timezone():
    # 23:30 UTC on 10 May is 11 May in Berlin: two Berlin days, one UTC day.
    a = Candidate("a", datetime(2025, 5, 10, 20, 0, tzinfo=UTC))
    b = Candidate("b", datetime(2025, 5, 10, 23, 30, tzinfo=UTC))
    policy = Policy(keep_daily=2, keep_weekly=0, keep_monthly=0)
    assert plan([a, b], policy, now=LATER).prune == ["a"]
    assert plan([a, b], policy, ZoneInfo("Europe/Berlin"), now=LATER).prune == []


def test_weekly_uses_iso_weeks_across_a_year_end():
    # Mon 29 Dec 2025 and Sun 4 Jan 2026 are both ISO week 2026-W01.
    a = Candidate("a", datetime(2025, 12, 29, 3, tzinfo=UTC))
    b = Candidate("b", datetime(2026, 1, 4, 3, tzinfo=UTC))
    result = plan([a, b], Policy(keep_daily=0, keep_weekly=5, keep_monthly=0), now=LATER)
    assert result.keep["b"] == ["newest", "weekly 2026-W01"]
    assert result.prune == ["a"]


def listing(*entries: tuple[str, datetime]) -> list[ObjectInfo]:
    return [ObjectInfo(key, 1, when) for key, when in entries]


def test_listing_groups_objects_by_backup_directory():
    t = datetime(2025, 1, 1, tzinfo=UTC)
    stored = group_listing(
        listing(
            ("db/2025/01/01/b1/dump.rdb", t),
            ("db/2025/01/01/b1/appendonlydir/appendonly.aof.1.incr.aof", t + timedelta(minutes=5)),
            ("db/2025/01/01/b1/manifest.json", t),
            ("db/2025/01/02/b2/dump.rdb", t),
            ("db/stray-file", t),
        )
    )
    assert [(s.backup_id, s.has_manifest, len(s.keys)) for s in stored] == [("b1", True, 3), ("b2", False, 1)]
    assert stored[0].newest == t + timedelta(minutes=5)


@freeze_time("2025-06-10 12:00:00")
def test_incomplete_backups_are_removed_only_after_a_day_without_writes():
    now = utcnow()
    fresh = StoredBackup("db/2025/06/10/new", "new", ("k",), False, now - timedelta(hours=2))
    stale = StoredBackup("db/2025/06/08/old", "old", ("k",), False, now - timedelta(days=1, minutes=1))
    done = StoredBackup("db/2025/06/07/ok", "ok", ("k",), True, now - timedelta(days=3))
    damaged = StoredBackup("db/2025/06/06/dmg", "dmg", ("k",), False, now - timedelta(days=4))
    found = incomplete([fresh, stale, done, damaged], now, timedelta(days=1), protect={"dmg"})
    assert [s.backup_id for s in found] == ["old"]


# ---- keep_within and kept backups ----

ONLY_DAILY = Policy(keep_daily=1, keep_weekly=0, keep_monthly=0)


@freeze_time("2025-06-10 14:00:00")
def test_an_ad_hoc_backup_does_not_push_out_the_nightly_one_within_keep_within():
    nightly = Candidate("nightly", datetime(2025, 6, 10, 3, 0, tzinfo=UTC))
    ad_hoc = Candidate("ad-hoc", datetime(2025, 6, 10, 13, 55, tzinfo=UTC))
    result = plan([nightly, ad_hoc], Policy(), now=utcnow())
    assert result.prune == []
    assert result.keep["nightly"] == ["within 2d"]
    assert result.keep["ad-hoc"][:2] == ["newest", "within 2d"]


def test_keep_within_ends_after_its_duration_and_the_prune_says_why():
    nightly = Candidate("nightly", datetime(2025, 6, 10, 3, 0, tzinfo=UTC))
    ad_hoc = Candidate("ad-hoc", datetime(2025, 6, 10, 13, 55, tzinfo=UTC))
    with freeze_time("2025-06-12 02:59:59"):  # 47h59m59s after the nightly one
        assert plan([nightly, ad_hoc], ONLY_DAILY, now=utcnow()).prune == []
    with freeze_time("2025-06-12 03:00:00"):  # exactly 2d: no longer younger than keep_within
        result = plan([nightly, ad_hoc], ONLY_DAILY, now=utcnow())
    assert result.prune == ["nightly"]
    assert result.why_pruned["nightly"] == "older than 2d; daily 2025-06-10 keeps a newer backup"


def test_keep_within_zero_turns_it_off():
    nightly = Candidate("nightly", datetime(2025, 6, 10, 3, 0, tzinfo=UTC))
    ad_hoc = Candidate("ad-hoc", datetime(2025, 6, 10, 13, 55, tzinfo=UTC))
    off = Policy(keep_daily=1, keep_weekly=0, keep_monthly=0, keep_within=timedelta(0))
    result = plan([nightly, ad_hoc], off, now=datetime(2025, 6, 10, 14, 0, tzinfo=UTC))
    assert result.prune == ["nightly"]
    assert result.why_pruned["nightly"] == "daily 2025-06-10 keeps a newer backup"


def test_reasons_name_every_rule_that_did_not_keep_a_backup():
    backups = [Candidate(f"d{n}", datetime(2025, 1, 1, 3, tzinfo=UTC) + timedelta(days=n)) for n in range(4)]
    policy = Policy(keep_last=1, keep_daily=2, keep_weekly=0, keep_monthly=0)
    result = plan(backups, policy, now=LATER)
    assert result.prune == ["d1", "d0"]
    assert result.why_pruned["d0"] == (
        "older than 2d; not among the last 1; daily 2025-01-01: not among the last 2 days with backups"
    )


def test_a_kept_backup_is_never_pruned_and_takes_no_rule_slot():
    day = datetime(2025, 6, 10, tzinfo=UTC)
    nightly = Candidate("nightly", day.replace(hour=3))
    before_change = Candidate("before-change", day.replace(hour=14), kept=True)
    older = Candidate("older", day - timedelta(days=40), kept=True)
    result = plan([older, nightly, before_change], ONLY_DAILY, now=LATER)
    assert result.prune == []
    assert result.keep["before-change"] == ["newest", "kept (backups keep)"]
    assert result.keep["older"] == ["kept (backups keep)"]
    # The kept 14:00 backup does not count as the day's daily one: the nightly one still is.
    assert result.keep["nightly"] == ["daily 2025-06-10"]


def test_ninety_frozen_days_with_one_kept_backup_keep_it_beside_the_policy_set():
    kept_day = date(2025, 1, 5)
    backups: list[Candidate] = []
    with freeze_time("2025-01-01 03:00:00") as clock:
        for _ in range(90):
            today = utcnow().date()
            backups.append(Candidate(f"b-{today}", utcnow(), kept=today == kept_day))
            pruned = set(plan(backups, Policy(), now=utcnow()).prune)
            backups = [b for b in backups if b.id not in pruned]
            clock.tick(timedelta(days=1))
    kept = {b.created_at.date() for b in backups}
    assert kept == daily_backups_over(90, "2025-01-01 00:00:00", Policy()) | {kept_day}
