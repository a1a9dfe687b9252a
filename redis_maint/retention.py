"""Which backups to keep: keep_last / keep_daily / keep_weekly / keep_monthly, restic-style.

Each rule walks the backups newest first and keeps the newest backup of each of the last N
periods (days, ISO weeks, months) that have any backup; a backup is kept if any rule keeps
it. The newest backup is always kept. Periods are taken in the schedule's timezone.
Pure functions: the caller supplies the backups and the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

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


@dataclass(frozen=True)
class Candidate:
    id: str
    created_at: datetime


@dataclass
class Plan:
    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> why
    prune: list[str] = field(default_factory=list)  # ids, newest first


_RULES: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("keep_daily", "daily", lambda t: t.strftime("%Y-%m-%d")),
    ("keep_weekly", "weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("keep_monthly", "monthly", lambda t: t.strftime("%Y-%m")),
)


def plan(backups: Iterable[Candidate], policy: Policy, tz: tzinfo = UTC) -> Plan:
    ordered = sorted(backups, key=lambda b: (b.created_at, b.id), reverse=True)
    reasons: dict[str, list[str]] = {b.id: [] for b in ordered}
    if ordered:
        reasons[ordered[0].id].append("newest")
    for b in ordered[: policy.keep_last]:
        reasons[b.id].append("last")
    for attr, label, period in _RULES:
        limit = getattr(policy, attr)
        seen: set[str] = set()
        for b in ordered:
            if len(seen) >= limit:
                break
            bucket = period(b.created_at.astimezone(tz))
            if bucket not in seen:
                seen.add(bucket)
                reasons[b.id].append(f"{label} {bucket}")
    return Plan(
        keep={k: v for k, v in reasons.items() if v},
        prune=[b.id for b in ordered if not reasons[b.id]],
    )


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
