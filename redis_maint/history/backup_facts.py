"""The newest complete backup and its newest good verifications, from the backup catalog.

Metrics (redis_maint_backup_*) and the backup-age guard read the same facts from here. A
verification counts as a restore drill only when a server loaded the backup (the `depth` of its
`verified` event, or for rows from before depths were recorded, a `deep` result with a server);
checksum-only checks are counted apart, so they never stand in for a drill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis_maint.history.runs import HistoryStore

# Complete backups to look through for the newest good verification.
VERIFY_LOOKBACK = 100


@dataclass(frozen=True)
class BackupFacts:
    backup_id: str | None = None
    created_at: float | None = None  # epoch seconds
    bytes: int | None = None
    verified_at: float | None = None  # epoch seconds of the newest good restore drill
    checksummed_at: float | None = None  # epoch seconds of the newest good checksum-only check


def newest(store: HistoryStore, instance: str) -> BackupFacts:
    from redis_maint.history.catalog import DEPTH_CHECKSUMS, DEPTH_DRILL, BackupStatus, Catalog

    complete = Catalog(store).list(instance=instance, status=BackupStatus.COMPLETE, limit=VERIFY_LOOKBACK)
    if not complete:
        return BackupFacts()
    latest = complete[0]
    good = [v for b in complete for v in _good_verifications(b)]
    return BackupFacts(
        backup_id=latest.id,
        created_at=latest.created_at.timestamp(),
        bytes=latest.size,
        verified_at=_newest(good, DEPTH_DRILL),
        checksummed_at=_newest(good, DEPTH_CHECKSUMS),
    )


def _good_verifications(record: Any) -> list[tuple[datetime, str]]:
    """(when, depth) of each verification of this backup that passed."""
    from redis_maint.history.catalog import verify_depth

    found = [
        (datetime.fromisoformat(e["at"].replace("Z", "+00:00")), e["depth"])
        for e in record.events or []
        if e.get("event") == "verified" and e.get("depth") and e.get("ok") is True
    ]
    result = record.verify_result or {}
    if record.verified_at and result.get("ok") is True:  # the latest one, also in rows from before depths
        found.append((record.verified_at, verify_depth(result)))
    return found


def _newest(found: list[tuple[datetime, str]], depth: str) -> float | None:
    times = [at for at, d in found if d == depth]
    return max(times).timestamp() if times else None
