"""Writing a backup to a target: data files first, manifest.json last.

What the store records of each object at upload (S3: its ETag, and its VersionId when the
bucket keeps versions) goes into that file's manifest entry, so the manifest and the catalog
(which takes the manifest's `files`) hold it; `backups check` compares the bucket against it.

A backup without a manifest is incomplete by definition, so whatever stops an upload
(an error, SIGTERM, the deadline) leaves nothing that looks complete. We also delete what
was written, best effort; retention removes what that misses once it is a day old.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis_maint.backup.stored import MANIFEST, encode_manifest
from redis_maint.redact import redact
from redis_maint.storage import ObjectInfo, ObjectLock, Target, join

log = logging.getLogger("redis_maint.backup.upload")


def upload_backup(
    target: Target,
    location: str,
    snapshot: Any,
    manifest: dict[str, Any],
    *,
    checkpoint: Callable[[], None],
    on_bytes: Callable[[int], None] | None = None,
    manifest_lock: ObjectLock | None = None,
    before_manifest: Callable[[], None] | None = None,
) -> None:
    """Upload the files, then the manifest; `manifest["files"]` entries gain `etag`/`version_id`
    where the target records them (S3), so pass the same list on to the catalog."""
    written: list[str] = []
    entries = {entry["path"]: entry for entry in manifest["files"]}
    try:
        for f in snapshot.files:
            key = join(location, f.path)
            written.append(key)  # before the call: a failed upload may have left a part
            stored = target.put_file(
                key, snapshot.root / f.path, sha256=f.sha256, checkpoint=checkpoint, on_bytes=on_bytes
            )
            record_object(entries.get(f.path), stored)
        checkpoint()
        if before_manifest is not None:  # the commit point: a manifest makes the backup complete
            before_manifest()
        target.put_bytes(join(location, MANIFEST), encode_manifest(manifest), lock=manifest_lock)
    except BaseException:
        discard(target, location, written)
        raise


def record_object(entry: dict[str, Any] | None, stored: ObjectInfo | None) -> None:
    """Add the store's own record of an object (ETag, VersionId) to its manifest entry; a local
    target records nothing (size and sha256 are the whole record), so the keys stay absent."""
    if entry is None or stored is None:
        return
    if stored.etag:
        entry["etag"] = stored.etag
    if stored.version_id:
        entry["version_id"] = stored.version_id


def discard(target: Target, location: str, keys: list[str]) -> None:
    """Delete a failed backup's objects; never raises (the upload's own error is the one to report)."""
    try:
        found = [o.key for o in target.list(location + "/")]
        target.delete(sorted(set(found) | set(keys)))
        log.info("removed the objects of a failed backup", extra={"location": target.uri_for(location)})
    except Exception as exc:
        log.warning(
            "could not remove the objects of a failed backup; retention removes them after a day",
            extra={"location": target.uri_for(location), "error": redact(str(exc))},
        )
