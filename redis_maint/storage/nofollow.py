"""Walking a local backup target without ever following a symbolic link below its root.

Every path component is opened relative to its parent's descriptor with O_NOFOLLOW, so a
link anywhere below the root (a backup directory pointing at Redis's data dir) is refused
instead of followed, including one swapped in between a check and a use. The root itself
is configuration (backup_target) and is trusted, links included.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from redis_maint.errors import StorageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs us


class LinkRefused(StorageError):
    """A symbolic link where a directory or file of the target should be: left alone."""

    def __init__(self, root: Path, key: str):
        self.key = key
        super().__init__(
            f"{root / key} is a symbolic link; redis-maint never follows links in a backup target "
            "(one could point at live data). Left it alone: remove the link, or put the real "
            "backup files there"
        )


@dataclass(frozen=True)
class Entry:
    key: str  # relative to the root
    kind: str  # "file" (regular), "link", or "other" (FIFO, socket, device)
    st: os.stat_result | None


@contextmanager
def opened_dirs(root: Path, parts: Sequence[str]) -> Iterator[list[int]]:
    """Descriptors of root, root/parts[0], ..., root/parts[0]/.../parts[-1], none followed through a link.

    LinkRefused names the first component that is a link; FileNotFoundError when one is missing
    or is not a directory.
    """
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for i, name in enumerate(parts):
            fds.append(_open_dir_at(fds[-1], name, root, "/".join(parts[: i + 1])))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _open_dir_at(dir_fd: int, name: str, root: Path, key: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        if is_link_at(dir_fd, name):
            raise LinkRefused(root, key) from None
        raise FileNotFoundError(errno.ENOENT, f"{root / key} is not a directory") from None


def is_link_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def open_file_at(dir_fd: int, name: str, root: Path, key: str) -> int:
    """A regular file opened for reading without following a link (FileNotFoundError if missing)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkRefused(root, key) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{root / key} is not a regular file; it was left alone")
    return fd


def scan(root: Path, parts: Sequence[str]) -> Iterator[Entry]:
    """Everything below root/parts, depth first. Links are reported as entries, never entered."""
    try:
        with opened_dirs(root, parts) as fds:
            yield from _walk(fds[-1], "/".join(parts))
    except LinkRefused as exc:
        yield Entry(exc.key, "link", None)
    except FileNotFoundError:
        return


def _walk(dir_fd: int, rel: str) -> Iterator[Entry]:
    found: list[tuple[str, os.stat_result]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            try:
                found.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed while we looked
    for name, st in sorted(found, key=lambda item: item[0]):
        key = f"{rel}/{name}" if rel else name
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_subdir(dir_fd, name, key)
        elif stat.S_ISLNK(st.st_mode):
            yield Entry(key, "link", st)
        else:
            yield Entry(key, "file" if stat.S_ISREG(st.st_mode) else "other", st)


def _walk_subdir(dir_fd: int, name: str, key: str) -> Iterator[Entry]:
    try:
        sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            if is_link_at(dir_fd, name):
                yield Entry(key, "link", None)  # swapped for a link after we looked
        elif exc.errno != errno.ENOENT:
            raise
        return
    try:
        yield from _walk(sub, key)
    finally:
        os.close(sub)


def unlink_regular_at(dir_fd: int, name: str) -> bool:
    """Remove `name` if it is a regular file (missing is fine); False for a link or anything else."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    # unlink never follows a final link, so a swap after the check removes the link, never its target.
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    return True


def remove_empty_dirs(fds: Sequence[int], parts: Sequence[str]) -> None:
    """rmdir parts[-1], then its parents while they are empty; never the root (fds[0])."""
    for i in range(len(parts) - 1, -1, -1):
        try:
            os.rmdir(parts[i], dir_fd=fds[i])
        except OSError:
            return  # not empty (or gone): stop climbing
