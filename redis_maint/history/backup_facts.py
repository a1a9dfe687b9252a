"""The newest complete backup and the newest good verification, from the backup catalog.

Metrics (redis_maint_backup_*) and the backup-age guard read the same facts from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_maint.history.runs import HistoryStore

# Complete backups to look through for the newest good verification.
VERIFY_LOOKBACK = 100


@dataclass(frozen=True)
class BackupFacts:
    backup_id: str | None = None
    created_at: float | None = None  # epoch seconds
    bytes: int | None = None
    verified_at: float | None = None  # epoch seconds of the newest good verification


def newest(store: HistoryStore, instance: str) -> BackupFacts:
    from redis_maint.history.catalog import BackupStatus, Catalog

    complete = Catalog(store).list(instance=instance, status=BackupStatus.COMPLETE, limit=VERIFY_LOOKBACK)
    if not complete:
        return BackupFacts()
    latest = complete[0]
    verified = [
        b.verified_at for b in complete if b.verified_at and (b.verify_result or {}).get("ok") is True
    ]
    return BackupFacts(
        backup_id=latest.id,
        created_at=latest.created_at.timestamp(),
        bytes=latest.size,
        verified_at=max(verified).timestamp() if verified else None,
    )
