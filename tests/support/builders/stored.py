"""Helpers for the retention tests: stored backups with catalog rows, as the job leaves them."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from redis_maint.backup.stored import location_for, new_backup_id
from redis_maint.history.catalog import BackupRecord, Catalog

DUMP = b"REDIS0010"


def fake_backup(target, catalog: Catalog, created_at: datetime, *, complete: bool = True) -> str:
    """A small stored backup (dump.rdb + a manifest naming it) with its catalog row."""
    backup_id = new_backup_id(created_at)
    location = location_for("default", backup_id, created_at)
    files = [{"path": "dump.rdb", "size": len(DUMP), "sha256": hashlib.sha256(DUMP).hexdigest()}]
    target.put_bytes(f"{location}/dump.rdb", DUMP)
    if complete:
        target.put_bytes(f"{location}/manifest.json", json.dumps({"id": backup_id, "files": files}).encode())
    catalog.add(
        BackupRecord(
            id=backup_id,
            run_id=None,
            instance="default",
            target=target.uri_for(location),
            target_root=target.uri,
            location=location,
            created_at=created_at,
            status="pending",
        )
    )
    if complete:
        catalog.mark_complete(backup_id, size=len(DUMP), files=files)
    return backup_id


def tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under `root` (links not followed) -> sha256 of its bytes ('link' for a link)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "link"
        elif path.is_file() and path.name not in skip:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
