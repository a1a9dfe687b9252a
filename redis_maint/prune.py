"""Apply retention to one instance's backups on one target (after a successful backup).

Complete backups come from the catalog and go through retention.plan; a pruned backup's
manifest is deleted first, so a prune that stops halfway leaves an incomplete backup (swept
later), never one that looks complete with files missing. Directories without a manifest
that nobody wrote to for a day are removed, and stale multipart uploads aborted.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, tzinfo
from typing import Any

from redis_maint.backups import MANIFEST
from redis_maint.catalog import BackupStatus, Catalog
from redis_maint.retention import Candidate, Policy, group_listing, incomplete, plan
from redis_maint.storage import Target, join

log = logging.getLogger("redis_maint.prune")


def prune(
    catalog: Catalog,
    target: Target,
    *,
    instance: str,
    policy: Policy,
    tz: tzinfo,
    now: datetime,
    incomplete_age: timedelta,
    dry_run: bool,
) -> dict[str, Any]:
    complete = catalog.list(instance=instance, target_root=target.uri, status=BackupStatus.COMPLETE)
    decided = plan([Candidate(r.id, r.created_at) for r in complete], policy, tz)
    by_id = {r.id: r for r in complete}
    stored = group_listing(target.list(f"{instance}/"))
    stale = incomplete(stored, now, incomplete_age, protect=set(by_id))
    on_target = {s.backup_id for s in stored if s.has_manifest}
    summary: dict[str, Any] = {
        "policy": vars(policy),
        "kept": [{"id": i, "why": why} for i, why in decided.keep.items()],
        "pruned": decided.prune,
        "incomplete_removed": [s.location for s in stale],
        "missing_on_target": sorted(set(by_id) - on_target),
    }
    if dry_run:
        summary["dry_run"] = True
        return summary
    for backup_id in decided.prune:
        _delete_backup(target, by_id[backup_id].location)
        catalog.mark_pruned(backup_id, f"retention ({_policy_line(policy)})")
    for s in stale:
        target.delete(sorted(s.keys))
        _fail_pending(catalog, s.backup_id)
    summary["multipart_aborted"] = target.clean_partial(instance, now - incomplete_age)
    log.info(
        "retention applied",
        extra={
            "instance": instance,
            "kept": len(decided.keep),
            "pruned": len(decided.prune),
            "incomplete": len(stale),
        },
    )
    return summary


def _delete_backup(target: Target, location: str) -> None:
    target.delete([join(location, MANIFEST)])
    target.delete(sorted(o.key for o in target.list(location + "/")))


def _fail_pending(catalog: Catalog, backup_id: str) -> None:
    record = catalog.get(backup_id)
    if record is not None and record.status == BackupStatus.PENDING:
        catalog.mark_failed(backup_id, "incomplete backup (no manifest) removed by retention")


def _policy_line(policy: Policy) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(policy).items())
