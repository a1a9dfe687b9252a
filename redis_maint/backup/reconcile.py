"""Reconcile the backup catalog with the target: `backups check` and the daily `backup-audit`.

Like restic's `check`, for our catalog. The target is listed first (a target that cannot be
listed fails the check, naming it), then every catalog entry that should be there whole
(complete, kept, or already found missing or changed) is compared with the listing:

- missing: a file the catalog recorded, or the backup's manifest.json, is not on the target;
- changed: its size differs, its ETag or VersionId differs from the ones recorded at upload
  (S3), it is a symbolic link (a local target never follows one), or, with `read_data`, its
  sha256 (every object re-read, streamed) or the manifest's file list differs;
- unknown: backup directories (or stray files) under the instance's prefix that no catalog
  entry of this target names.

The catalog follows: `missing` or `changed` with an event, and back to `complete` (event
`intact`) when every object is found as recorded again. A `missing` backup returns with any
check that finds every file back (size, and ETag/VersionId where recorded); a `changed` one only
with a check at least as strong as the one that can find it: `read_data` (every sha256 as
recorded), since without it a same-size rewrite on a local target looks intact.

Entries completed after the listing began are left for the next check (their manifest may have
been written after we listed), and a backup pruned while we looked keeps its `pruned` status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis_maint.backup.retention import LOCATION_DEPTH, group_listing
from redis_maint.backup.stored import MANIFEST, parse_manifest
from redis_maint.errors import IntegrityError, JobFailedError, StorageError
from redis_maint.history.catalog import ON_TARGET, BackupRecord, BackupStatus, Catalog
from redis_maint.progress import Progress
from redis_maint.storage import ObjectInfo, ObjectNotFound, Target, hash_object, join
from redis_maint.timeutil import isoformat, utcnow

log = logging.getLogger("redis_maint.backup.reconcile")

Checkpoint = Callable[[], None]


@dataclass
class _Found:
    """What one backup's check found."""

    missing: list[str] = field(default_factory=list)  # paths
    changed: list[dict[str, Any]] = field(default_factory=list)  # {path, why}
    bytes_read: int = 0


@dataclass
class CheckOptions:
    read_data: bool = False
    by: str = "backups check"  # who checked, for the catalog events ("backup-audit run 12")
    checkpoint: Checkpoint | None = None
    progress: Progress | None = None


def reconcile(catalog: Catalog, target: Target, instance: str, options: CheckOptions) -> dict[str, Any]:
    """Compare the catalog's backups of `instance` on `target` with what the target holds.

    Returns the result (see the module doc); StorageError when the target cannot be listed.
    """
    began = utcnow()
    listing = {o.key: o for o in _list(target, instance)}
    links = target.links(f"{instance}/")
    rows = catalog.list(instance=instance, target_root=target.uri)
    known = {r.id for r in rows}
    checked = [r for r in rows if r.status in ON_TARGET and not _completed_after(r, began)]
    result: dict[str, Any] = {
        "target": target.uri,
        "instance": instance,
        "read_data": options.read_data,
        "checked": len(checked),
        "objects": 0,
        "missing": [],
        "changed": [],
        "unknown": _unknown(listing, links, known, target),
        "marked": [],
    }
    if options.read_data:
        result["bytes_read"] = 0
    progress = options.progress or Progress()
    if options.read_data:
        progress.start(sum(_recorded_size(r) for r in checked), "reading", "bytes")
    try:
        for record in checked:
            found = _check_backup(target, record, listing, links, options, progress)
            result["objects"] += len(record.files or []) + 1
            if options.read_data:
                result["bytes_read"] += found.bytes_read
            _settle(catalog, record, found, options, result)
    finally:
        if options.read_data:
            progress.finish()
    differences = len(result["missing"]) + len(result["changed"]) + len(result["unknown"])
    result["differences"] = differences
    result["ok"] = differences == 0
    result["checked_at"] = isoformat(began)
    result["verdict"] = verdict(result)
    return result


def verdict(result: dict[str, Any]) -> str:
    """One line that says what a check found, for history, notifications and the report."""
    depth = "sha256 re-read" if result.get("read_data") else "sizes, ETag/VersionId where recorded"
    head = f"{result['checked']} backups checked on {result['target']} ({depth})"
    if result.get("ok"):
        return f"{head}: catalog and target agree"
    return f"{head}: " + ", ".join(
        f"{len(result[k])} {k}" for k in ("missing", "changed", "unknown") if result.get(k)
    )


def _list(target: Target, instance: str) -> list[ObjectInfo]:
    try:
        return list(target.list(f"{instance}/"))
    except ObjectNotFound as exc:  # a backend that says "not found" for a bucket or directory
        raise StorageError(f"cannot list the backup target {target.uri}: {exc}") from None


def _completed_after(record: BackupRecord, began) -> bool:
    return record.completed_at is not None and record.completed_at >= began


def _recorded_size(record: BackupRecord) -> int:
    return sum(int(f.get("size") or 0) for f in record.files or [])


# ---- one backup -------------------------------------------------------------------------


def _check_backup(
    target: Target,
    record: BackupRecord,
    listing: dict[str, ObjectInfo],
    links: list[str],
    options: CheckOptions,
    progress: Progress,
) -> _Found:
    found = _Found()
    for entry in record.files or []:
        if options.checkpoint:
            options.checkpoint()
        key = join(record.location, entry["path"])
        link = _link_at(key, links)
        if link:
            found.changed.append(
                {"path": entry["path"], "why": f"{link} is a symbolic link (never followed)"}
            )
            continue
        obj = listing.get(key)
        if obj is None:
            found.missing.append(entry["path"])
            continue
        why = _differs(target, entry, obj, options, progress, found)
        if why == "missing":
            found.missing.append(entry["path"])
        elif why:
            found.changed.append({"path": entry["path"], "why": why})
    _check_manifest(target, record, listing, links, options, found)
    return found


def _differs(
    target: Target, entry: dict[str, Any], obj: ObjectInfo, options: CheckOptions, progress, found: _Found
) -> str | None:
    """Why a stored object is not the one recorded, or None; "missing" if it went meanwhile."""
    if obj.size != entry.get("size"):
        return f"size {obj.size} bytes, recorded {entry.get('size')}"
    if entry.get("etag") and obj.etag and obj.etag != entry["etag"]:
        return f"ETag {obj.etag}, recorded {entry['etag']} at upload"
    try:
        if entry.get("version_id"):
            current = target.head(obj.key).version_id
            if current != entry["version_id"]:
                return f"VersionId {current or 'none'}, recorded {entry['version_id']} at upload"
        if options.read_data:
            size, digest = hash_object(target, obj.key, options.checkpoint, progress.advance)
            found.bytes_read += size
            if (size, digest) != (entry.get("size"), entry.get("sha256")):
                return f"sha256 {digest[:12]}…, recorded {str(entry.get('sha256'))[:12]}…"
    except ObjectNotFound:
        return "missing"
    return None


def _check_manifest(
    target: Target,
    record: BackupRecord,
    listing: dict[str, ObjectInfo],
    links: list[str],
    options: CheckOptions,
    found: _Found,
) -> None:
    key = join(record.location, MANIFEST)
    link = _link_at(key, links)
    if link:
        found.changed.append({"path": MANIFEST, "why": f"{link} is a symbolic link (never followed)"})
        return
    if key not in listing:
        found.missing.append(MANIFEST)
        return
    if not options.read_data:
        return
    try:
        data = b"".join(target.read_chunks(key))
        found.bytes_read += len(data)
        manifest = parse_manifest(data, target.uri_for(key))
    except ObjectNotFound:
        found.missing.append(MANIFEST)
        return
    except IntegrityError as exc:
        found.changed.append({"path": MANIFEST, "why": str(exc)})
        return
    if manifest.get("id") != record.id or _file_set(manifest["files"]) != _file_set(record.files or []):
        found.changed.append(
            {"path": MANIFEST, "why": "it lists other files (or another backup) than the catalog"}
        )


def _file_set(files: list[dict[str, Any]]) -> set[tuple[str, int, str]]:
    return {(f["path"], int(f["size"]), f["sha256"]) for f in files}


def _link_at(key: str, links: list[str]) -> str | None:
    """The link that is `key` or one of its parent directories."""
    return next((k for k in links if key == k or key.startswith(k + "/")), None)


# ---- the catalog follows ------------------------------------------------------------------


def _settle(
    catalog: Catalog, record: BackupRecord, found: _Found, options: CheckOptions, result: dict[str, Any]
) -> None:
    """Move the catalog entry to what was found, and report it; a backup that retention pruned
    (or that otherwise left the checked statuses) while we looked is not reported."""
    status = _status_for(record, found, options)
    if status != record.status:
        if not catalog.mark_on_target(record.id, status, _detail(status, found, options)):
            now = catalog.get(record.id)
            if now is None or now.status not in ON_TARGET:
                return
            status = BackupStatus(now.status)
        else:
            result["marked"].append({"id": record.id, "from": str(record.status), "to": str(status)})
            log.warning(
                "backup status changed by backups check",
                extra={"backup_id": record.id, "from": str(record.status), "to": str(status)},
            )
    if found.missing:
        result["missing"].append({"id": record.id, "files": found.missing})
    for change in found.changed:
        result["changed"].append({"id": record.id, **change})
    if status == BackupStatus.CHANGED and not found.changed and not found.missing:
        result["changed"].append(
            {
                "id": record.id,
                "path": None,
                "why": "found changed by an earlier check (see `backups show ID`); only a check with "
                "--read-data that finds every object as recorded clears it",
            }
        )


def _status_for(record: BackupRecord, found: _Found, options: CheckOptions) -> BackupStatus:
    if found.missing:
        return BackupStatus.MISSING
    if found.changed:
        return BackupStatus.CHANGED
    if record.status == BackupStatus.CHANGED and not options.read_data:
        return BackupStatus.CHANGED  # without re-reading, a same-size rewrite looks intact
    return BackupStatus.COMPLETE


def _detail(status: BackupStatus, found: _Found, options: CheckOptions) -> str:
    if status == BackupStatus.MISSING:
        return f"not on the target: {', '.join(found.missing)} ({options.by})"
    if status == BackupStatus.CHANGED:
        return "; ".join(f"{c['path']}: {c['why']}" for c in found.changed) + f" ({options.by})"
    how = "every sha256 re-read" if options.read_data else "sizes, ETag/VersionId where recorded"
    return f"every object found as recorded again ({how}; {options.by})"


# ---- what the catalog does not know -----------------------------------------------------


def _unknown(
    listing: dict[str, ObjectInfo], links: list[str], known: set[str], target: Target
) -> list[dict[str, Any]]:
    out = []
    for stored in group_listing(listing.values()):
        if stored.backup_id in known:
            continue
        out.append(
            {
                "location": target.uri_for(stored.location),
                "id": stored.backup_id,
                "manifest": stored.has_manifest,
                "files": len(stored.keys),
                "bytes": sum(listing[k].size for k in stored.keys),
            }
        )
    for key in sorted(listing):
        if len(key.split("/")) <= LOCATION_DEPTH:  # a stray file, not inside a backup directory
            out.append(
                {
                    "location": target.uri_for(key),
                    "id": None,
                    "manifest": False,
                    "files": 1,
                    "bytes": listing[key].size,
                }
            )
    for link in links:
        location = "/".join(link.split("/")[:LOCATION_DEPTH])
        if location.rsplit("/", 1)[-1] not in known:
            out.append(
                {
                    "location": target.uri_for(link),
                    "id": None,
                    "manifest": False,
                    "files": 0,
                    "bytes": 0,
                    "link": True,
                }
            )
    return out


# ---- for the jobs (backup-reconcile, backup-audit) ---------------------------------------


def run_check(
    catalog: Catalog, open_target: Callable[[], Target], instance: str, options: CheckOptions
) -> dict[str, Any]:
    """Open the configured target, reconcile, close it. A target that cannot be listed is a
    StorageError that names it."""
    target = open_target()
    try:
        return reconcile(catalog, target, instance, options)
    except StorageError as exc:
        raise StorageError(f"backups check could not read the backup target {target.uri}: {exc}") from None
    finally:
        target.close()


def checked_run(
    catalog: Catalog, open_target: Callable[[], Target], instance: str, options: CheckOptions, *, dry: bool
) -> dict[str, Any]:
    """The check as a job's run (backup-audit, backup-reconcile): a dry run says what it would cover;
    any difference fails the run with a JobFailedError that carries the result."""
    if dry:
        return dry_run(catalog, open_target, instance, options.read_data)
    result = run_check(catalog, open_target, instance, options)
    if not result["ok"]:
        raise JobFailedError(problem_line(result), result)
    return result


def problem_line(result: dict[str, Any]) -> str:
    """The failed run's error: what differs, per backup, and where to look."""
    parts = [f"{m['id']} missing {', '.join(m['files'])}" for m in result["missing"]]
    parts += [
        f"{c['id']} changed {c['path'] or ''}: {c['why']}".replace(" :", ":") for c in result["changed"]
    ]
    parts += [f"unknown {u['location']}" for u in result["unknown"]]
    shown = "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")
    return (
        f"the catalog and {result['target']} differ: {shown}. `redis-maint backups show ID` has each "
        "backup's events; one found intact again returns to complete"
    )


def dry_run(
    catalog: Catalog, open_target: Callable[[], Target], instance: str, read_data: bool
) -> dict[str, Any]:
    """What a check would cover; reads only the catalog."""
    target = open_target()
    target_uri = target.uri
    target.close()
    rows = catalog.list(instance=instance, target_root=target_uri)
    return {
        "would_check": len([r for r in rows if r.status in ON_TARGET]),
        "target": target_uri,
        "instance": instance,
        "read_data": read_data,
    }
