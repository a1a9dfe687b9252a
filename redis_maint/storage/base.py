"""The backup-target interface every backend implements, and what they share.

Keys are POSIX paths relative to the target's root (`default/2025/01/31/<id>/dump.rdb`);
the backend adds its bucket/prefix or directory. A backend is correct when it passes
tests/test_storage_contract.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from redis_maint.errors import IntegrityError, StorageError

CHUNK = 1 << 20
Checkpoint = Callable[[], None]


class ObjectNotFound(StorageError):
    """The key does not exist on the target."""


@dataclass(frozen=True)
class ObjectLock:
    """S3 Object Lock retention for one object: until `retain_until` (aware UTC), no credential can
    delete or overwrite that version (COMPLIANCE), or only one allowed to bypass governance (GOVERNANCE)."""

    mode: str  # GOVERNANCE or COMPLIANCE
    retain_until: datetime


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime
    sha256: str | None = None  # our whole-file sha256, where the backend keeps metadata
    etag: str | None = None  # S3's ETag, quotes removed (listings, head, writes); None on a local target
    version_id: str | None = None  # S3's VersionId when the bucket keeps versions (head, writes)


class Target(Protocol):
    uri: str  # s3://bucket/prefix or the directory; never holds credentials

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        checkpoint: Checkpoint | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> ObjectInfo | None:
        """Store a file under `key`, streaming; the object appears whole or not at all.

        `checkpoint` is called often and may raise to cancel; `on_bytes` gets bytes sent.
        Returns what the store recorded for the new object (S3: its ETag and VersionId), or
        None where size and sha256 are the whole record (a local target).
        """

    def put_bytes(
        self, key: str, data: bytes, *, lock: ObjectLock | None = None, metadata: dict[str, str] | None = None
    ) -> ObjectInfo | None:
        """Store a small object whole. With `lock`, write it under S3 Object Lock retention (a target
        that cannot raises StorageError saying what to change, and writes nothing). `metadata`: short
        ASCII pairs kept with the object where the backend has object metadata (S3 x-amz-meta-*)."""

    def check_object_lock(self) -> None:
        """StorageError naming the bucket and what to do unless objects can be written with Object Lock here."""

    def read_chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes, streamed; ObjectNotFound if it is missing."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (a directory-like prefix ending in /, or '').

        Only real objects: a local target neither lists nor enters symbolic links.
        """

    def links(self, prefix: str = "") -> list[str]:
        """Keys under `prefix` that are symbolic links (local targets; S3 has none), never followed."""

    def delete(self, keys: Iterable[str]) -> list[str]:
        """Delete keys; missing ones are not an error. Returns the keys left alone (links)."""

    def exists(self, key: str) -> bool: ...

    def head(self, key: str) -> ObjectInfo:
        """The object's size and times (S3: also its ETag and current VersionId); ObjectNotFound if missing."""

    def preflight(self) -> None:
        """Cheap and read-only: the target is there and reachable (before a backup spends time)."""

    def check_writable(self) -> str:
        """Reach the target and write and delete a probe; return a line for `doctor`."""

    def clean_partial(self, prefix: str, older_than: datetime) -> int:
        """Remove leftovers of interrupted writes (temp files, multipart uploads); return how many."""

    def uri_for(self, key: str) -> str: ...

    def close(self) -> None: ...


def check_key(key: str) -> str:
    """Keys are relative POSIX paths without `..`: a manifest can never point outside the target."""
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object key {key!r}: must be a relative path without '..'")
    return key


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable: the directory entry, not only the file, reaches the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def download(
    target: Target,
    key: str,
    dest: Path,
    checkpoint: Checkpoint | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Stream `key` into `dest` (written whole or removed); return (size, sha256) of what was read.
    `on_bytes` gets the bytes of each chunk written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with open(tmp, "wb") as out:
            size, sha256 = copy_object(target, key, out, checkpoint, on_bytes)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return size, sha256


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


def copy_object(
    target: Target,
    key: str,
    out: Writable,
    checkpoint: Checkpoint | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Stream `key` onto the end of the open file `out`; return (size, sha256) of what was read."""
    digest, size = hashlib.sha256(), 0
    for chunk in target.read_chunks(key):
        if checkpoint:
            checkpoint()
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
        if on_bytes:
            on_bytes(len(chunk))
    return size, digest.hexdigest()


def hash_object(
    target: Target,
    key: str,
    checkpoint: Checkpoint | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """(size, sha256) of a stored object, streamed: nothing is written locally."""
    return copy_object(target, key, _Nowhere(), checkpoint, on_bytes)


class _Nowhere:
    """A sink that keeps nothing: hash_object reads an object without storing it."""

    def write(self, data: bytes) -> int:
        return len(data)


def copy_hashed(
    src: Path,
    out,
    expected_sha256: str,
    checkpoint: Checkpoint | None,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Copy `src` into the open file `out`, failing if its sha256 is not the expected one."""
    digest, size = hashlib.sha256(), 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            if checkpoint:
                checkpoint()
            digest.update(view[:n])
            out.write(view[:n])
            size += n
            if on_bytes:
                on_bytes(n)
    if digest.hexdigest() != expected_sha256:
        raise IntegrityError(
            f"{src} no longer matches its sha256 ({expected_sha256[:12]}…) while being stored: "
            "the staged file changed; the backup is not stored"
        )
    return size
