"""Which backups to keep: keep_within, keep_last / keep_daily / keep_weekly / keep_monthly, restic-style.

Each period rule walks the backups newest first and keeps the newest backup of each of the
last N periods (days, ISO weeks, months) that have any backup; a backup is kept if any rule
keeps it. On top of the rules: the newest backup is always kept, nothing younger than
keep_within is pruned (so an ad hoc backup never pushes out the nightly one of the same day),
and a backup kept with `backups keep` is never pruned and takes no rule's place. Periods are
taken in the schedule's timezone. Pure functions: the caller supplies the backups and the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from redis_maint.durations import format_duration
from redis_maint.storage.base import ObjectInfo

MANIFEST = "manifest.json"
# <instance>/<YYYY>/<MM>/<DD>/<backup-id>/...: the first five key parts name a backup.
LOCATION_DEPTH = 5


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_daily: int = 14
    keep_weekly: int = 8
    keep_monthly: int = 6
    keep_within: timedelta = timedelta(days=2)  # 0 turns it off

    def to_json(self) -> dict[str, int | str]:
        return {**vars(self), "keep_within": format_duration(self.keep_within)}

    def line(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_json().items())


@dataclass(frozen=True)
class Candidate:
    id: str
    created_at: datetime
    kept: bool = False  # `backups keep`: never pruned


@dataclass
class RetentionPlan:
    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> why
    prune: list[str] = field(default_factory=list)  # ids, newest first
    why_pruned: dict[str, str] = field(default_factory=dict)  # id -> why no rule kept it


_RULES: tuple[tuple[str, str, str, Callable[[datetime], str]], ...] = (
    ("keep_daily", "daily", "days", lambda t: t.strftime("%Y-%m-%d")),
    ("keep_weekly", "weekly", "ISO weeks", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("keep_monthly", "monthly", "months", lambda t: t.strftime("%Y-%m")),
)


def plan(backups: Iterable[Candidate], policy: Policy, tz: tzinfo = UTC, *, now: datetime) -> RetentionPlan:
    ordered = sorted(backups, key=lambda b: (b.created_at, b.id), reverse=True)
    reasons: dict[str, list[str]] = {b.id: [] for b in ordered}
    misses: dict[str, list[str]] = {b.id: [] for b in ordered}
    if ordered:
        reasons[ordered[0].id].append("newest")
    within = format_duration(policy.keep_within)
    for b in ordered:
        if b.kept:
            reasons[b.id].append("kept (backups keep)")
        if policy.keep_within:
            young = now - b.created_at < policy.keep_within
            (reasons if young else misses)[b.id].append(
                f"within {within}" if young else f"older than {within}"
            )
    # Kept backups sit outside the schedule: they take no rule's slot.
    ruled = [b for b in ordered if not b.kept]
    for i, b in enumerate(ruled):
        if i < policy.keep_last:
            reasons[b.id].append("last")
        elif policy.keep_last:
            misses[b.id].append(f"not among the last {policy.keep_last}")
    for attr, label, unit, period in _RULES:
        _apply_period_rule(ruled, getattr(policy, attr), label, unit, period, tz, reasons, misses)
    return RetentionPlan(
        keep={k: v for k, v in reasons.items() if v},
        prune=[b.id for b in ordered if not reasons[b.id]],
        why_pruned={
            b.id: "; ".join(misses[b.id]) or "no rule keeps it" for b in ordered if not reasons[b.id]
        },
    )


def _apply_period_rule(ruled, limit, label, unit, period, tz, reasons, misses) -> None:
    """Keep the newest backup of each of the last `limit` periods that have one."""
    if not limit:
        return
    chosen: set[str] = set()
    for b in ruled:
        bucket = period(b.created_at.astimezone(tz))
        if bucket in chosen:
            misses[b.id].append(f"{label} {bucket} keeps a newer backup")
        elif len(chosen) >= limit:
            units = unit if limit > 1 else unit.removesuffix("s")
            misses[b.id].append(f"{label} {bucket}: not among the last {limit} {units} with backups")
        else:
            chosen.add(bucket)
            reasons[b.id].append(f"{label} {bucket}")


@dataclass(frozen=True)
class StoredBackup:
    """A backup's directory as found on the target."""

    location: str  # <instance>/<YYYY>/<MM>/<DD>/<backup-id>
    backup_id: str
    keys: tuple[str, ...]
    has_manifest: bool
    newest: datetime  # most recent write: an upload in progress looks fresh


def group_listing(objects: Iterable[ObjectInfo]) -> list[StoredBackup]:
    """Group a target listing (keys relative to the target root) by backup directory."""
    groups: dict[str, list[ObjectInfo]] = {}
    for obj in objects:
        parts = obj.key.split("/")
        if len(parts) <= LOCATION_DEPTH:
            continue  # not inside a backup directory
        groups.setdefault("/".join(parts[:LOCATION_DEPTH]), []).append(obj)
    out = []
    for location, objs in sorted(groups.items()):
        keys = tuple(sorted(o.key for o in objs))
        out.append(
            StoredBackup(
                location=location,
                backup_id=location.rsplit("/", 1)[-1],
                keys=keys,
                has_manifest=f"{location}/{MANIFEST}" in keys,
                newest=max(o.modified for o in objs),
            )
        )
    return out


def incomplete(
    stored: Iterable[StoredBackup], now: datetime, min_age: timedelta, protect: set[str]
) -> list[StoredBackup]:
    """Backups without a manifest whose last write is older than `min_age`.

    `protect` holds ids the catalog calls complete: a complete backup that lost its
    manifest is damage to report, never something to delete.
    """
    return [
        s for s in stored if not s.has_manifest and s.backup_id not in protect and now - s.newest > min_age
    ]
