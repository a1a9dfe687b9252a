"""Stored backups, read side: ids, layout, manifest.json, finding, verifying and restoring.

A backup lives at `<instance>/<YYYY>/<MM>/<DD>/<backup-id>/` under the target: the data
files at their paths relative to Redis's dir, and `manifest.json` written last. The
manifest alone is enough to verify and restore (no database needed).
"""

from __future__ import annotations

import errno
import json
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from redis_maint.errors import IntegrityError, StorageError, UsageError
from redis_maint.progress import Progress
from redis_maint.storage import ObjectNotFound, Target, download, hash_object, join
from redis_maint.storage.base import check_key
from redis_maint.timeutil import isoformat, utcnow

MANIFEST = "manifest.json"
FORMAT = "redis-maint-backup/1"
Checkpoint = Callable[[], None]
# Redis writes short names one or two levels deep; these limits are the filesystems' (NAME_MAX)
# and well inside S3's 1024-byte keys once the location is prefixed.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 512


def new_backup_id(now: datetime) -> str:
    """Sortable and unique: 20250131T030000Z-1a2b3c."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def location_for(instance: str, backup_id: str, created_at: datetime) -> str:
    return f"{instance}/{created_at:%Y/%m/%d}/{backup_id}"


def build_manifest(
    *,
    backup_id: str,
    created_at: datetime,
    instance: str,
    snapshot: Any,
    checks: list[dict[str, Any]] | None,
    job_run_id: int | None,
    tool_version: str,
    node: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    fence: int | None = None,
    archive: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`node`: which Redis node was backed up, its role and replication offset (jobs/backup_source.py).
    `cluster`: a Cluster shard's node id, slot ranges and cluster backup id (backup/cluster.py).
    `archive`: the AOF archive generation and incr-file offset the backup covers (jobs/backup.py)."""
    return {
        "format": FORMAT,
        "id": backup_id,
        "created_at": isoformat(created_at),
        "instance": instance,
        **snapshot.server,  # redis_version, run_id, role, master_replid, master_repl_offset, ...
        "rdb": snapshot.rdb,
        "aof_manifest": snapshot.aof_manifest,
        "files": [f.to_json() for f in snapshot.files],
        "size": snapshot.size,
        "checks": checks,
        "job_run_id": job_run_id,
        "tool": {"name": "redis-maint", "version": tool_version},
        **({"node": node} if node is not None else {}),
        **({"cluster": cluster} if cluster is not None else {}),
        # The fencing token of the run's lease (history/leases.py): a later take has a larger one.
        **({"fence": fence} if fence is not None else {}),
        **({"archive": archive} if archive is not None else {}),
    }


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest we can trust the shape of: every file a safe relative path with size and sha256."""
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        for f in files:
            check_manifest_path(f["path"])
            if not isinstance(f["size"], int) or len(f["sha256"]) != 64:
                raise ValueError(f"bad size or sha256 for {f['path']}")
        for name in ("rdb", "aof_manifest"):  # they end up in a suggested redis-server command line
            if manifest.get(name) is not None:
                check_manifest_path(manifest[name])
        if not isinstance(manifest["id"], str) or not manifest["id"]:
            raise ValueError("no backup id")
    except (ValueError, KeyError, TypeError, StorageError) as exc:
        raise IntegrityError(f"{where} is not a valid backup manifest: {exc}") from None
    return manifest


def check_manifest_path(path: Any) -> str:
    """A file path a restore can lay out on any filesystem and store as an S3 key.

    Without this, a 5000-character name or a NUL reaches open() and ends in a traceback.
    """
    if not isinstance(path, str):
        raise ValueError(f"file path {path!r} is not a string")
    shown = repr(path if len(path) <= 80 else path[:80] + "…")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"file path {shown} contains a control character (NUL, newline, …)")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise ValueError(f"file path {shown} is longer than {MAX_PATH_BYTES} bytes")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in path.split("/")):
        raise ValueError(f"file path {shown} has a name longer than {MAX_NAME_BYTES} bytes")
    return check_key(path)


def read_manifest(target: Target, location: str) -> dict[str, Any]:
    key = join(location, MANIFEST)
    data = b"".join(target.read_chunks(key))
    return parse_manifest(data, target.uri_for(key))


@dataclass(frozen=True)
class Located:
    backup_id: str
    target_root: str
    location: str
    record: Any = None  # the catalog row, when there is one


def locate(backup_id: str, catalog: Any, fallback: Target, instance: str) -> Located:
    """A backup by id: from the catalog, else by its manifest on the configured target."""
    record = catalog.get(backup_id) if catalog is not None else None
    if record is not None:
        return Located(backup_id, record.target_root, record.location, record)
    suffix = f"/{backup_id}/{MANIFEST}"
    for obj in fallback.list(f"{instance}/"):
        if obj.key.endswith(suffix):
            return Located(backup_id, fallback.uri, obj.key[: -len(MANIFEST) - 1])
    raise UsageError(
        f"no backup {backup_id!r} in the catalog, nor a {MANIFEST} for it under "
        f"{fallback.uri_for(instance)}/; see `redis-maint backups list`"
    )


def verify(
    target: Target,
    location: str,
    backup_id: str,
    *,
    catalog_files: list[dict[str, Any]] | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Re-read every object and compare size and sha256 with the manifest (and the catalog)."""
    result: dict[str, Any] = {
        "id": backup_id,
        "target": target.uri_for(location),
        "checked_at": isoformat(utcnow()),
        "manifest": "ok",
        "files": [],
        "problems": [],
    }
    try:
        manifest = read_manifest(target, location)
    except ObjectNotFound:
        return _failed(result, "missing", f"{MANIFEST} is missing: the backup is incomplete")
    except IntegrityError as exc:
        return _failed(result, "invalid", str(exc))
    if catalog_files is not None and _file_set(catalog_files) != _file_set(manifest["files"]):
        _failed(result, "differs-from-catalog", f"{MANIFEST} does not list the files the catalog recorded")
    progress = progress or Progress()
    progress.start(_total(manifest), "reading", "bytes")
    try:
        for f in manifest["files"]:
            result["files"].append(
                _verify_file(target, location, f, checkpoint, progress, result["problems"])
            )
    finally:
        progress.finish()
    result["ok"] = not result["problems"]
    return result


def _verify_file(target, location, f, checkpoint, progress: Progress, problems: list[str]) -> dict[str, Any]:
    entry = {"path": f["path"], "size": f["size"], "sha256": f["sha256"]}
    try:
        size, digest = hash_object(target, join(location, f["path"]), checkpoint, progress.advance)
    except ObjectNotFound:
        problems.append(f"{f['path']}: missing")
        return {**entry, "verdict": "missing"}
    entry.update(actual_size=size, actual_sha256=digest)
    if (size, digest) != (f["size"], f["sha256"]):
        problems.append(f"{f['path']}: sha256 mismatch (expected {f['sha256'][:12]}…, got {digest[:12]}…)")
        return {**entry, "verdict": "mismatch"}
    return {**entry, "verdict": "ok"}


def _failed(result: dict[str, Any], manifest_state: str, problem: str) -> dict[str, Any]:
    result["manifest"] = manifest_state
    result["problems"].append(problem)
    result["ok"] = False
    return result


def _total(manifest: dict[str, Any]) -> int:
    return sum(int(f["size"]) for f in manifest["files"])


def _file_set(files: list[dict[str, Any]]) -> set[tuple[str, int, str]]:
    return {(f["path"], int(f["size"]), f["sha256"]) for f in files}


def download_verified(
    target: Target,
    location: str,
    dest: Path,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Download every file of a backup into `dest` (created, must not exist), checking each sha256.

    Raises IntegrityError (and removes `dest`) on a missing object or a mismatch. Returns the manifest.
    """
    manifest = read_manifest(target, location)
    download_files(target, location, manifest, dest, checkpoint, progress)
    return manifest


def download_files(
    target: Target,
    location: str,
    manifest: dict[str, Any],
    dest: Path,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> None:
    """The files `manifest` lists, into `dest` (created, must not exist); nothing of it stays on failure.

    IntegrityError for a missing or corrupt object, StorageError when the local side cannot
    write (no space, a name the filesystem refuses).
    """
    try:
        dest.mkdir(parents=True)
    except OSError as exc:
        raise local_write_error(exc, dest) from None
    progress = progress or Progress()
    progress.start(_total(manifest), "downloading", "bytes")
    try:
        for f in manifest["files"]:
            _download_file(target, location, f, dest, checkpoint, progress.advance)
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise local_write_error(exc, dest) from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        progress.finish()


def _download_file(
    target: Target, location: str, f: dict[str, Any], dest: Path, checkpoint, on_bytes: Callable[[int], None]
) -> None:
    where = target.uri_for(join(location, f["path"]))
    try:
        size, digest = download(target, join(location, f["path"]), dest / f["path"], checkpoint, on_bytes)
    except ObjectNotFound:
        raise IntegrityError(f"{where} is missing: the backup is damaged") from None
    if (size, digest) != (f["size"], f["sha256"]):
        raise IntegrityError(
            f"{where} does not match the manifest (size {size} vs {f['size']}, "
            f"sha256 {digest[:12]}… vs {f['sha256'][:12]}…): the stored object is corrupt"
        )


def local_write_error(exc: OSError, under: Path) -> StorageError:
    """An OSError while laying files out locally, said plainly (never a traceback)."""
    name = exc.filename if exc.filename is not None else under
    shown = str(name) if len(str(name)) <= 200 else str(name)[:200] + "…"
    if exc.errno == errno.ENAMETOOLONG:
        return StorageError(
            f"cannot write {shown}: the file name is too long for this filesystem; "
            "restore into a directory with a shorter path, or check the backup's manifest.json"
        )
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left to write {shown}; free space under {under} and try again")
    return StorageError(f"cannot write {shown}: {exc.strerror or exc}")
