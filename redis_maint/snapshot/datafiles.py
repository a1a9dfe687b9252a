"""Redis's data files: where they are (CONFIG GET), and a consistent, hashed copy of them.

Consistency comes from pinning: the AOF manifest is read and every file it names is opened
at once, so a later rewrite or BGSAVE that renames or deletes files cannot change what we
copy (an open file keeps its inode). Immutable files (RDB, AOF base, manifest) must not
change while copied; append-only files (incr, legacy AOF) are copied up to the size seen
when pinned. Anything else is a change: the copy is retried, then failed.
On the same filesystem, immutable files are hard-linked into staging instead of copied.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from redis_maint.errors import IntegrityError, SnapshotError
from redis_maint.snapshot.aof_manifest import live_files, parse_aof_manifest
from redis_maint.snapshot.bgsave import redis_call
from redis_maint.snapshot.pinning import FileChanged, hash_fd, link_if_same, open_pinned

log = logging.getLogger("redis_maint.snapshot.datafiles")

COPY_ATTEMPTS = 3


@dataclass(frozen=True)
class SnapshotFile:
    path: str  # relative, POSIX: "dump.rdb", "appendonlydir/appendonly.aof.1.base.rdb"
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class DataLayout:
    """Where Redis keeps its files, from CONFIG GET, relative to the data dir."""

    rdb: str
    aof_enabled: bool
    aof_dir: str | None  # Redis 7 appenddirname; None before 7.0
    aof_file: str  # appendfilename: the manifest's prefix in 7.0, the file itself before


@dataclass
class _Pinned:
    rel: str
    path: Path
    fd: int
    st: os.stat_result
    appendable: bool  # Redis appends to it: copy the pinned prefix
    data: bytes | None = None  # small files read whole at pin time (the manifest)


def discover_layout(client: redis.Redis) -> DataLayout:
    values: dict[str, str] = {}
    for name in ("dbfilename", "appendonly", "appenddirname", "appendfilename"):
        try:
            values.update(decode(redis_call(client, client.config_get, name)))
        except redis.ResponseError as exc:
            raise SnapshotError(
                f"CONFIG GET {name} failed ({exc}); the backup needs CONFIG GET/SET "
                "(check that CONFIG is not renamed and that the ACL user may run it)"
            ) from None
    return DataLayout(
        rdb=values.get("dbfilename") or "dump.rdb",
        aof_enabled=values.get("appendonly", "no") == "yes",
        aof_dir=values.get("appenddirname") or None,
        aof_file=values.get("appendfilename") or "appendonly.aof",
    )


def copy_consistent(
    client: redis.Redis,
    data_dir: Path,
    staging_dir: Path,
    layout: DataLayout,
    *,
    include_rdb: bool,
    include_aof: bool,
    checkpoint: Callable[[], None],
) -> tuple[list[SnapshotFile], str | None]:
    """Copy the RDB and/or AOF set into `staging_dir`; return the files and the AOF manifest's path."""
    return _copy_with_retries(client, data_dir, staging_dir, layout, include_rdb, include_aof, checkpoint)


def check_data_dir(data_dir: Path) -> None:
    try:
        os.listdir(data_dir)
    except OSError as exc:
        raise SnapshotError(
            f"cannot read Redis's data dir {data_dir}: {exc.strerror}; check REDIS_MAINT_DATA_DIR "
            f"and that uid {os.getuid()} may read it (the volume must be mounted into this container)"
        ) from None


def _copy_with_retries(client, data_dir, staging_dir, layout, include_rdb, want_aof, checkpoint):
    last: FileChanged | None = None
    for attempt in range(1, COPY_ATTEMPTS + 1):
        checkpoint()
        _empty_dir(staging_dir)
        try:
            return _copy_once(client, data_dir, staging_dir, layout, include_rdb, want_aof, checkpoint)
        except FileChanged as exc:
            last = exc
            log.warning("file changed while copied; retrying", extra={"attempt": attempt, "reason": str(exc)})
    raise IntegrityError(
        f"the data files kept changing while being copied ({COPY_ATTEMPTS} attempts; last: {last}); "
        "something other than Redis may be writing to the data dir, or AOF rewrites keep running"
    )


def _copy_once(client, data_dir, staging_dir, layout, include_rdb, want_aof, checkpoint):
    rewrites = _aof_rewrites(client) if want_aof else None
    with ExitStack() as stack:
        pinned, manifest = _pin_all(stack, data_dir, layout, include_rdb, want_aof)
        if want_aof and _aof_rewrites(client) != rewrites:
            raise FileChanged("an AOF rewrite finished while the files were being opened")
        _check_space(staging_dir, pinned, data_dir)
        files = [_stage(p, staging_dir, checkpoint) for p in pinned]
    return files, manifest


def _pin_all(stack: ExitStack, data_dir: Path, layout: DataLayout, include_rdb: bool, want_aof: bool):
    pinned: list[_Pinned] = []
    if include_rdb:
        pinned.append(_pin(stack, data_dir, layout.rdb, appendable=False, may_vanish=False))
    manifest = None
    if want_aof:
        aof_pinned, manifest = _pin_aof(stack, data_dir, layout)
        pinned.extend(aof_pinned)
    return pinned, manifest


def _pin_aof(stack: ExitStack, data_dir: Path, layout: DataLayout) -> tuple[list[_Pinned], str]:
    manifest_rel = f"{layout.aof_dir}/{layout.aof_file}.manifest" if layout.aof_dir else None
    if manifest_rel is None or not (data_dir / manifest_rel).exists():
        if (data_dir / layout.aof_file).exists():  # Redis < 7: one appendonly.aof
            return [
                _pin(stack, data_dir, layout.aof_file, appendable=True, may_vanish=False)
            ], layout.aof_file
        raise SnapshotError(
            f"appendonly is yes but neither {data_dir / (manifest_rel or '?')} nor "
            f"{data_dir / layout.aof_file} exists; check REDIS_MAINT_DATA_DIR"
        )
    manifest = _pin(stack, data_dir, manifest_rel, appendable=False, may_vanish=True)
    manifest.data = _read_all(manifest)
    entries = parse_aof_manifest(manifest.data.decode(), source=str(manifest.path))
    pinned = [manifest]
    for entry in live_files(entries):
        rel = f"{layout.aof_dir}/{entry.name}"
        pinned.append(_pin(stack, data_dir, rel, appendable=entry.type == "i", may_vanish=True))
    if (data_dir / manifest_rel).read_bytes() != manifest.data:
        raise FileChanged("the AOF manifest was rewritten while its files were being opened")
    return pinned, manifest_rel


def _pin(stack: ExitStack, data_dir: Path, rel: str, *, appendable: bool, may_vanish: bool) -> _Pinned:
    """Open one file; `may_vanish` files (the AOF set) can be deleted by a rewrite: retry then."""
    path = data_dir / rel
    fd = open_pinned(path, may_vanish=may_vanish)
    stack.callback(os.close, fd)
    return _Pinned(rel=rel, path=path, fd=fd, st=os.fstat(fd), appendable=appendable)


def _read_all(p: _Pinned) -> bytes:
    return os.pread(p.fd, p.st.st_size + 1, 0)[: p.st.st_size]


def _aof_rewrites(client: redis.Redis) -> int:
    return int(redis_call(client, client.info, "persistence").get("aof_rewrites", 0))


def _check_space(staging_dir: Path, pinned: list[_Pinned], data_dir: Path) -> None:
    same_fs = os.stat(staging_dir).st_dev == os.stat(data_dir).st_dev
    needed = sum(p.st.st_size for p in pinned if p.appendable or not same_fs)
    free = shutil.disk_usage(staging_dir).free
    if needed > free:
        raise SnapshotError(
            f"staging dir {staging_dir} has {free} bytes free but the copy needs {needed}; "
            "free space there or point jobs.backup.staging_dir at a larger volume"
        )


def _stage(p: _Pinned, staging_dir: Path, checkpoint: Callable[[], None]) -> SnapshotFile:
    dest = staging_dir / p.rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = p.st.st_size
    try:
        if p.data is not None:
            dest.write_bytes(p.data)
            digest = hashlib.sha256(p.data).hexdigest()
        elif not p.appendable and link_if_same(p.path, dest, p.st):  # hard-linked: no copy
            digest = hash_fd(p.fd, size, None, checkpoint)
        else:
            with open(dest, "wb") as out:
                digest = hash_fd(p.fd, size, out, checkpoint)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise SnapshotError(
                f"staging dir {staging_dir} ran out of space while copying {p.rel}; "
                "free space there or point jobs.backup.staging_dir at a larger volume"
            ) from None
        raise SnapshotError(f"copying {p.path} to {dest} failed: {exc.strerror or exc}") from None
    _check_unchanged(p)
    return SnapshotFile(path=p.rel, size=size, sha256=digest)


def _check_unchanged(p: _Pinned) -> None:
    st = os.fstat(p.fd)
    if p.appendable:
        if st.st_size < p.st.st_size:
            raise FileChanged(f"{p.rel} was truncated from {p.st.st_size} to {st.st_size} bytes while copied")
    elif (st.st_size, st.st_mtime_ns) != (p.st.st_size, p.st.st_mtime_ns):
        raise FileChanged(f"{p.rel} was modified in place while copied (size/mtime changed)")


def _empty_dir(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def decode(mapping: dict) -> dict[str, str]:
    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return {text(k): text(v) for k, v in mapping.items()}
