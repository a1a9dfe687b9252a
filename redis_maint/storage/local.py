"""A local directory as a backup target: the S3 key layout on disk, written atomically.

Each object is written to a hidden temp name in its final directory, fsynced, then renamed
into place, so a reader (or a crash) never sees half a file under the real name.

Reading, listing and deleting never follow a symbolic link below the root (storage/nofollow.py):
a backup directory linked to Redis's data dir must not have that dir's files deleted or restored.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from redis_maint.errors import StorageError
from redis_maint.storage.base import (
    CHUNK,
    Checkpoint,
    ObjectInfo,
    ObjectLock,
    ObjectNotFound,
    check_key,
    copy_hashed,
    fsync_dir,
)
from redis_maint.storage.nofollow import (
    LinkRefused,
    open_file_at,
    opened_dirs,
    remove_empty_dirs,
    scan,
    unlink_regular_at,
)

TMP_MARK = ".tmp-"


class LocalTarget:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)

    def uri_for(self, key: str) -> str:
        return str(self.root / check_key(key))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        checkpoint: Checkpoint | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        with self._writing(key) as out:
            copy_hashed(Path(path), out, sha256, checkpoint, on_bytes)

    def put_bytes(
        self, key: str, data: bytes, *, lock: ObjectLock | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        """`metadata` has no place on a local target: callers keep it elsewhere too (the history store)."""
        if lock is not None:
            self.check_object_lock()
        with self._writing(key) as out:
            out.write(data)

    def check_object_lock(self) -> None:
        raise StorageError(
            f"Object Lock needs an S3 target, and {self.root} is a local directory: set "
            'audit.object_lock_mode = "" and jobs.backup.object_lock = false, or use an s3:// target '
            "whose bucket has Object Lock enabled"
        )

    def _writing(self, key: str):
        return _AtomicWrite(self._path(key), self.uri)

    def read_chunks(self, key: str) -> Iterator[bytes]:
        """Never through a link: a backup file that is a symbolic link is refused (StorageError)."""
        parents, name = _split(key)
        try:
            with opened_dirs(self.root, parents) as fds:
                fd = open_file_at(fds[-1], name, self.root, key)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root / key} does not exist in the backup target") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.root / key}: {exc.strerror}") from None
        return _chunks(os.fdopen(fd, "rb"))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Regular files only; symbolic links are neither listed nor entered (see `links`)."""
        found = [
            ObjectInfo(e.key, e.st.st_size, datetime.fromtimestamp(e.st.st_mtime, UTC))
            for e in self._scan(prefix)
            if e.kind == "file" and not _is_tmp(e.key)
        ]
        return iter(sorted(found, key=lambda o: o.key))

    def links(self, prefix: str = "") -> list[str]:
        """Keys of symbolic links under `prefix` (or on the way to it): reported, never followed."""
        return sorted(e.key for e in self._scan(prefix) if e.kind == "link")

    def _scan(self, prefix: str):
        parts = _prefix_parts(prefix)
        try:
            yield from scan(self.root, parts)
        except OSError as exc:
            raise StorageError(f"cannot list {self.root / '/'.join(parts)}: {exc.strerror}") from None

    def delete(self, keys: Iterable[str]) -> list[str]:
        """Unlink regular files only, never through a link; return the keys left alone (links)."""
        refused = []
        for key in keys:
            try:
                if not self._delete_one(key):
                    refused.append(key)
            except LinkRefused:
                refused.append(key)
            except OSError as exc:
                raise StorageError(f"cannot delete {self.root / key}: {exc.strerror}") from None
        return refused

    def _delete_one(self, key: str) -> bool:
        parents, name = _split(key)
        try:
            with opened_dirs(self.root, parents) as fds:
                if not unlink_regular_at(fds[-1], name):
                    return False
                remove_empty_dirs(fds, parents)
        except FileNotFoundError:
            pass  # missing is not an error
        return True

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except StorageError:
            return False
        return True

    def head(self, key: str) -> ObjectInfo:
        parents, name = _split(key)
        try:
            with opened_dirs(self.root, parents) as fds:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root / key} does not exist in the backup target") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.root / key}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise LinkRefused(self.root, key)
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{self.root / key} is not a file in the backup target")
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def preflight(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create backup dir {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"backup dir {self.root} is not writable by uid {os.getuid()}")

    def check_writable(self) -> str:
        probe = f".redis-maint-probe{TMP_MARK}{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / probe).write_bytes(b"probe")
            (self.root / probe).unlink()
        except OSError as exc:
            raise StorageError(
                f"backup dir {self.root} is not writable: {exc.strerror}; "
                f"create it and let uid {os.getuid()} write there, or set REDIS_MAINT_TARGET__URI"
            ) from None
        return f"{self.root} writable"

    def clean_partial(self, prefix: str, older_than: datetime) -> int:
        """Temp files of killed writes, found without following links."""
        removed = 0
        for e in self._scan(prefix):
            if e.kind != "file" or TMP_MARK not in e.key.rsplit("/", 1)[-1]:
                continue
            if datetime.fromtimestamp(e.st.st_mtime, UTC) < older_than and self._delete_one(e.key):
                removed += 1
        return removed

    def close(self) -> None:
        pass


class _AtomicWrite:
    """`with` block writing to a temp name, renamed over `dest` only if the block succeeds."""

    def __init__(self, dest: Path, root_uri: str):
        self.dest = dest
        self.tmp = dest.with_name(f".{dest.name}{TMP_MARK}{uuid.uuid4().hex}")
        self.root_uri = root_uri

    def __enter__(self):
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self.out = open(self.tmp, "wb")
        except OSError as exc:
            raise self._error(exc) from None
        return self.out

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc is None:
                self.out.flush()
                os.fsync(self.out.fileno())
            self.out.close()
            if exc is None:
                os.replace(self.tmp, self.dest)
                fsync_dir(self.dest.parent)
        except OSError as err:
            self.tmp.unlink(missing_ok=True)
            raise self._error(err) from None
        finally:
            if exc is not None:
                self.tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise self._error(exc) from None
        return False

    def _error(self, exc: OSError) -> StorageError:
        if exc.errno == errno.ENOSPC:
            return StorageError(
                f"backup dir {self.root_uri} is full (writing {self.dest.name}); free space there"
            )
        return StorageError(f"cannot write {self.dest}: {exc.strerror or exc}")


def _split(key: str) -> tuple[list[str], str]:
    *parents, name = check_key(key).split("/")
    return parents, name


def _prefix_parts(prefix: str) -> list[str]:
    stripped = prefix.strip("/")
    return check_key(stripped).split("/") if stripped else []


def _is_tmp(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") and TMP_MARK in name  # a write in progress (or left by a crash)


def _chunks(fh) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(CHUNK):
            yield chunk
