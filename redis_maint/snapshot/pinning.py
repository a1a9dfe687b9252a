"""Reading files Redis may rename, delete or append to while they are read.

A file is opened once and then read through that descriptor: a rewrite that renames or deletes the
path cannot change which inode is read. An immutable file is hard-linked rather than copied when its
path still names the pinned inode; otherwise one read both hashes and copies it. The backup's
consistent copy (datafiles.py) and the archiver's AOF bases share these.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from redis_maint.errors import SnapshotError

CHUNK = 1 << 20


class FileChanged(Exception):
    """A file changed or vanished while it was read: the copy (or the archiver's tick) is retried."""


def open_pinned(path: Path, *, may_vanish: bool) -> int:
    """A read-only descriptor of the regular file at `path`. A missing `may_vanish` file (one of the AOF
    set, which a rewrite deletes) raises FileChanged; any other problem, SnapshotError."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if may_vanish:
            raise FileChanged(f"{path.name} disappeared (an AOF rewrite replaced it)") from None
        raise SnapshotError(
            f"{path} does not exist; check REDIS_MAINT_DATA_DIR (is RDB saving disabled?)"
        ) from None
    except OSError as exc:
        raise SnapshotError(
            f"cannot open {path}: {exc.strerror}; check permissions of the data dir"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SnapshotError(f"{path} is not a regular file")
    return fd


def link_if_same(src: Path, dest: Path, pinned: os.stat_result) -> bool:
    """Hard-link `src` to `dest` when `src` still names the pinned inode; False (nothing left at `dest`)
    when it cannot: another filesystem, protected_hardlinks, or a path that now names another file."""
    try:
        os.link(src, dest)
    except OSError:
        return False
    st = os.stat(dest)
    if (st.st_dev, st.st_ino) != (pinned.st_dev, pinned.st_ino):
        dest.unlink()
        return False
    return True


def hash_fd(
    fd: int, size: int, out: BinaryIO | None = None, checkpoint: Callable[[], None] | None = None
) -> str:
    """The sha256 of the first `size` bytes of `fd`, read once from the start, written to `out` if given.
    FileChanged if the file is shorter than `size`."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while offset < size:
        if checkpoint is not None:
            checkpoint()
        n = os.preadv(fd, [view[: min(CHUNK, size - offset)]], offset)
        if n == 0:
            raise FileChanged(f"file shrank below {size} bytes while being copied")
        digest.update(view[:n])
        if out is not None:
            out.write(view[:n])
        offset += n
    return digest.hexdigest()
