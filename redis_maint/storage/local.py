"""A local directory as a backup target: the S3 key layout on disk, written atomically.

Each object is written to a hidden temp name in its final directory, fsynced, then renamed
into place, so a reader (or a crash) never sees half a file under the real name.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from redis_maint.errors import StorageError
from redis_maint.storage.base import CHUNK, Checkpoint, ObjectInfo, ObjectNotFound, check_key, copy_hashed

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

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._writing(key) as out:
            out.write(data)

    def _writing(self, key: str):
        return _AtomicWrite(self._path(key), self.uri)

    def read_chunks(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        except FileNotFoundError:
            raise ObjectNotFound(f"{path} does not exist in the backup target") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None
        return _chunks(fh)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return iter(())
        return iter(sorted(self._walk(base), key=lambda o: o.key))

    def _walk(self, base: Path) -> Iterator[ObjectInfo]:
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                if name.startswith(".") and TMP_MARK in name:
                    continue  # a write in progress (or left by a crash)
                path = Path(dirpath) / name
                st = path.stat()
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot delete {path}: {exc.strerror}") from None
            self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or gone): stop climbing
            directory = directory.parent

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"{path} does not exist in the backup target") from None
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
                f"create it and let uid {os.getuid()} write there, or set REDIS_MAINT_BACKUP_TARGET"
            ) from None
        return f"{self.root} writable"

    def clean_partial(self, prefix: str, older_than: datetime) -> int:
        base = self.root / prefix if prefix else self.root
        removed = 0
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                path = Path(dirpath) / name
                if TMP_MARK in name and datetime.fromtimestamp(path.stat().st_mtime, UTC) < older_than:
                    path.unlink(missing_ok=True)
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
                _fsync_dir(self.dest.parent)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(fh) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(CHUNK):
            yield chunk
