"""Finding one stored backup by id, for the commands that name one (show, verify, restore)."""

from __future__ import annotations

from collections.abc import Callable

from redis_maint.backup.stored import Located, locate
from redis_maint.errors import UsageError
from redis_maint.history.catalog import BackupStatus, Catalog
from redis_maint.storage import Target

# Opens the configured target (None) or the one at a given root: settings.target.open.
OpenTarget = Callable[[str | None], Target]


def open_backup(
    backup_id: str, catalog: Catalog, open_at: OpenTarget, instance: str, *, refuse_pruned: bool = False
) -> tuple[Located, Target]:
    """The backup (from the catalog, else by its manifest on the configured target) and its target,
    opened where it lives; the caller closes the target. UsageError for an unknown id, and, with
    `refuse_pruned`, for a backup retention has pruned (its files are gone)."""
    configured = open_at(None)
    try:
        located = locate(backup_id, catalog, configured, instance)
    finally:
        configured.close()
    record = located.record
    if refuse_pruned and record is not None and record.status == BackupStatus.PRUNED:
        raise UsageError(
            f"backup {backup_id} was pruned by retention at {record.pruned_at}; its files are gone"
        )
    return located, open_at(located.target_root)
