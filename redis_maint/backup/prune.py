"""Apply retention to one instance's backups on one target (after a successful backup).

Complete backups come from the catalog and go through retention.plan. A pruned backup is
claimed in the catalog first (so a racing `backups keep` either wins or is refused), then its
manifest is deleted, so a prune that stops halfway leaves an incomplete backup (swept later),
never one that looks complete with files missing; one claimed but not yet deleted when a run
stopped is finished by the next (`prune_finished`). Only the regular files the manifest names
are deleted, inside the backup's own directory, then that directory if it is empty.

A symbolic link is never followed (it could point at Redis's data dir): a backup whose
directory is a link is left alone, a link inside one stays, and both are reported in
`symlinks_skipped`. Directories without a manifest that nobody wrote to for a day are
removed the same way, and stale multipart uploads aborted.

A complete backup whose manifest is gone from the target (deleted by hand, say) is marked
`missing` in the catalog (`marked_missing`; `missing_on_target` lists it too) and takes no
retention slot; its leftovers, like those of a backup `backups check` found changed, stay for an
operator to look at.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import datetime, timedelta, tzinfo
from typing import Any

from redis_maint.backup.cluster import retention_plan
from redis_maint.backup.retention import Policy, group_listing, incomplete
from redis_maint.backup.stored import MANIFEST, read_manifest
from redis_maint.errors import IntegrityError
from redis_maint.history.catalog import BackupRecord, BackupStatus, Catalog
from redis_maint.storage import ObjectNotFound, Target, join
from redis_maint.storage.nofollow import LinkRefused

log = logging.getLogger("redis_maint.backup.prune")


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
    links = _report_links(target, instance)
    stored = group_listing(target.list(f"{instance}/"))
    on_target = {s.backup_id for s in stored if s.has_manifest}
    # A complete backup without its manifest on the target is gone: marked `missing` below, and
    # it holds no retention slot (the newest backup kept is then one that is really there).
    gone = sorted(r.id for r in complete if r.id not in on_target and not _link_above(r.location, links))
    complete = [r for r in complete if r.id not in gone]
    decided = retention_plan(complete, policy, tz, now)  # a Redis Cluster backup's shards go as one
    by_id = {r.id: r for r in complete}
    # Leftovers of a backup found missing or changed are evidence for an operator, never "incomplete".
    stale = incomplete(
        stored, now, incomplete_age, protect=set(by_id) | set(gone) | _damaged(catalog, instance)
    )
    linked = {i: _link_above(by_id[i].location, links) for i in decided.prune}
    refused = [
        {"id": i, "why": f"{link} is a symbolic link; left alone"} for i, link in linked.items() if link
    ]
    summary: dict[str, Any] = {
        "policy": policy.to_json(),
        "kept": [{"id": i, "why": why} for i, why in decided.keep.items()],
        "pruned": [i for i in decided.prune if not linked[i]],
        "pruned_why": [{"id": i, "why": decided.why_pruned[i]} for i in decided.prune if not linked[i]],
        "prune_refused": refused,
        "incomplete_removed": [s.location for s in stale],
        "missing_on_target": sorted(set(gone) | (set(by_id) - on_target)),
        "symlinks_skipped": links,
    }
    unfinished = _unfinished(catalog, target, instance, on_target, links)
    summary["prune_finished"] = [r.id for r in unfinished]
    if dry_run:
        summary["dry_run"] = True
        return summary
    summary["marked_missing"] = _mark_missing(catalog, gone, target)
    _prune_planned(catalog, target, summary, by_id, policy)
    for record in unfinished:
        _note_left(summary, _delete_backup(target, record))
    for s in stale:  # found by a listing that never enters a link
        _note_left(summary, target.delete(sorted(s.keys)))
        _fail_pending(catalog, s.backup_id)
    summary["multipart_aborted"] = target.clean_partial(instance, now - incomplete_age)
    log.info(
        "retention applied",
        extra={
            "instance": instance,
            "kept": len(decided.keep),
            "pruned": len(summary["pruned"]),
            "incomplete": len(stale),
            "symlinks_skipped": len(summary["symlinks_skipped"]),
        },
    )
    return summary


def _prune_planned(catalog, target, summary: dict[str, Any], by_id: dict[str, BackupRecord], policy) -> None:
    done, why = [], {p["id"]: p["why"] for p in summary["pruned_why"]}
    for backup_id in summary["pruned"]:
        if not catalog.mark_pruned(backup_id, f"retention ({policy.line()}): {why[backup_id]}"):
            summary["prune_refused"].append({"id": backup_id, "why": "kept or changed while retention ran"})
            continue
        _note_left(summary, _delete_backup(target, by_id[backup_id]))
        done.append(backup_id)
        log.info("backup pruned", extra={"backup_id": backup_id, "why": why[backup_id]})
    summary["pruned"] = done
    summary["pruned_why"] = [p for p in summary["pruned_why"] if p["id"] in done]


def _unfinished(catalog, target, instance: str, on_target: set[str], links: list[str]) -> list[BackupRecord]:
    """Backups claimed as pruned whose manifest is still there: a run stopped before deleting them."""
    pruned = catalog.list(instance=instance, target_root=target.uri, status=BackupStatus.PRUNED)
    return [r for r in pruned if r.id in on_target and not _link_above(r.location, links)]


def _delete_backup(target: Target, record: BackupRecord) -> list[str]:
    """Delete the manifest, then the files it (or the catalog's copy of it) names; return keys left."""
    names = {f["path"] for f in record.files or []}
    # A missing, invalid or linked manifest: the catalog's copy of its file list still names the files.
    with suppress(ObjectNotFound, IntegrityError, LinkRefused):
        names |= {f["path"] for f in read_manifest(target, record.location)["files"]}
    left = target.delete([join(record.location, MANIFEST)])
    return left + target.delete(sorted(join(record.location, n) for n in names))


def _report_links(target: Target, instance: str) -> list[str]:
    links = target.links(f"{instance}/")
    for key in links:
        log.warning(
            "a symbolic link in the backup target was left alone (retention never follows links)",
            extra={"key": key, "target": target.uri},
        )
    return links


def _link_above(location: str, links: list[str]) -> str | None:
    """The link that is `location` or one of its parent directories (keys from our own walk)."""
    return next((k for k in links if location == k or location.startswith(k + "/")), None)


def _note_left(summary: dict[str, Any], left: list[str]) -> None:
    for key in left:
        if key not in summary["symlinks_skipped"]:
            log.warning("a symbolic link in a backup was left alone", extra={"key": key})
            summary["symlinks_skipped"].append(key)


def _mark_missing(catalog: Catalog, ids: list[str], target: Target) -> list[str]:
    """Complete backups whose manifest is gone from the target become `missing` in the catalog."""
    marked = []
    for backup_id in ids:
        detail = f"no {MANIFEST} on {target.uri} (found by retention after a backup)"
        if catalog.mark_on_target(backup_id, BackupStatus.MISSING, detail):
            log.warning("backup missing on the target: marked missing", extra={"backup_id": backup_id})
            marked.append(backup_id)
    return marked


def _damaged(catalog: Catalog, instance: str) -> set[str]:
    return {
        r.id
        for status in (BackupStatus.MISSING, BackupStatus.CHANGED)
        for r in catalog.list(instance=instance, status=status)
    }


def _fail_pending(catalog: Catalog, backup_id: str) -> None:
    record = catalog.get(backup_id)
    if record is not None and record.status == BackupStatus.PENDING:
        catalog.mark_failed(backup_id, "incomplete backup (no manifest) removed by retention")
