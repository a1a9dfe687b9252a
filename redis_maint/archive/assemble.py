"""A restorable appendonlydir/ from an archived generation, and the RESP walk over an incr file.

The directory Redis loads is the generation's base, ONE incr file made of the archived segments
in order (every incr file of the generation, concatenated: each starts with its own SELECT), and a
manifest naming the two:

    appendonlydir/appendonly.aof.1.base.rdb   (or .base.aof: the base's own format)
    appendonlydir/appendonly.aof.1.incr.aof
    appendonlydir/appendonly.aof.manifest

Segments are streamed from the target into the incr file, each checked against its recorded
length and sha256 on the way (bounded memory: one chunk at a time); a segment that does not match
raises CorruptSegment, which names it.

`walk` reads an incr file command by command without holding a command in memory (bulk strings
are skipped by seeking): where the last complete command ends (outside an open MULTI), the last
`#TS` annotation before that point, and the offset of the first annotation after a given time. A
power cut can leave half a command at the end of the file; everything after the last complete
command is cut off, as `redis-check-aof --fix` would do. Bad bytes anywhere else are not a cut
tail: IntegrityError.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from redis_maint.errors import IntegrityError
from redis_maint.storage import Target
from redis_maint.storage.base import copy_object

AOF_DIRNAME = "appendonlydir"
AOF_FILENAME = "appendonly.aof"
MANIFEST = f"{AOF_FILENAME}.manifest"
INCR = f"{AOF_FILENAME}.1.incr.aof"
MAX_LINE = 64 * 1024  # a RESP header or annotation line; longer is not an AOF
_MULTI, _EXEC = b"multi", b"exec"


class CorruptSegment(IntegrityError):
    """An archived segment whose bytes do not match what the archiver recorded."""

    def __init__(self, key: str, problem: str):
        self.key = key
        super().__init__(f"segment {key} is corrupt: {problem}")


def base_filename(base_name: str) -> str:
    """The base keeps its format (RDB preamble or plain AOF), under the standard name."""
    kind = "rdb" if base_name.endswith(".rdb") else "aof"
    return f"{AOF_FILENAME}.1.base.{kind}"


def manifest_text(base_name: str) -> str:
    return f"file {base_filename(base_name)} seq 1 type b\nfile {INCR} seq 1 type i\n"


def write_manifest(aof_dir: Path, base_name: str) -> None:
    (aof_dir / MANIFEST).write_text(manifest_text(base_name))


def append_segment(
    target: Target,
    key: str,
    out: BinaryIO,
    *,
    length: int,
    sha256: str,
    checkpoint: Callable[[], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Stream one segment onto the end of `out`; CorruptSegment unless its length and sha256 match."""
    size, got = copy_object(target, key, out, checkpoint, on_bytes)
    if size != length:
        raise CorruptSegment(key, f"{size} bytes stored, {length} archived")
    if got != sha256:
        raise CorruptSegment(key, f"sha256 {got[:12]}… is not the archived {sha256[:12]}…")


@dataclass(frozen=True)
class Walk:
    """What an incr file holds, command by command."""

    size: int
    complete_up_to: int  # the end of the last complete command (outside an open MULTI)
    commands: int  # complete commands before complete_up_to
    last_ts: int | None  # the last #TS annotation before complete_up_to
    first_ts: int | None  # the first #TS annotation in the file
    first_after: int | None  # offset of the first #TS annotation later than `after` (walk's argument)
    tail: str | None  # why the bytes after complete_up_to are not a command (None: there are none)

    @property
    def dropped(self) -> int:
        return self.size - self.complete_up_to


class _Cut(Exception):
    """The file ends inside a command."""


def walk(path: Path, after: int | None = None) -> Walk:
    """Walk the incr file at `path`; `after`: also find the first annotation later than that time."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        state = _WalkState(size, after)
        try:
            while state.pos < size:
                state.step(f)
        except _Cut as cut:
            state.tail = str(cut)
    if state.tail is None and state.multi_at is not None:
        state.tail = "a MULTI block without its EXEC"
    return Walk(
        size,
        state.good,
        state.commands,
        state.good_ts,
        state.first_ts,
        state.first_after,
        state.tail if state.good < size else None,
    )


class _WalkState:
    def __init__(self, size: int, after: int | None) -> None:
        self.size, self.after = size, after
        self.pos = self.good = self.commands = 0
        self.ts: int | None = None
        self.good_ts: int | None = None
        self.first_ts: int | None = None
        self.first_after: int | None = None
        self.multi_at: int | None = None
        self.pending = 0  # commands inside the open MULTI
        self.tail: str | None = None

    def step(self, f: BinaryIO) -> None:
        line = self._line(f, "a command")
        if line[:1] == b"#":
            self._annotation(line)
            self.pos += len(line)
            if self.multi_at is None:
                self.good, self.good_ts = self.pos, self.ts
            return
        if line[:1] != b"*":
            raise IntegrityError(f"not an AOF command at offset {self.pos}: {line[:40]!r}")
        end, name = self._command(f, self.pos + len(line), self._int(line, self.pos))
        self._done(end, name)

    def _done(self, end: int, name: bytes) -> None:
        start, self.pos = self.pos, end
        if name == _MULTI:
            self.multi_at, self.pending = start, 1
        elif self.multi_at is not None:
            self.pending += 1
            if name == _EXEC:
                self.multi_at = None
                self.commands += self.pending
                self.good, self.good_ts = end, self.ts
        else:
            self.commands += 1
            self.good, self.good_ts = end, self.ts

    def _annotation(self, line: bytes) -> None:
        if not line.startswith(b"#TS:"):
            return
        ts = self._int(line[3:], self.pos)
        self.ts = ts
        if self.first_ts is None:
            self.first_ts = ts
        if self.after is not None and self.first_after is None and ts > self.after:
            self.first_after = self.pos

    def _command(self, f: BinaryIO, at: int, argc: int) -> tuple[int, bytes]:
        name = b""
        for i in range(argc):
            header = self._line(f, "an argument")
            if header[:1] != b"$":
                raise IntegrityError(f"not a RESP bulk string at offset {at}: {header[:40]!r}")
            length = self._int(header, at)
            at += len(header)
            if at + length + 2 > self.size:
                raise _Cut(f"the file ends inside an argument of {length} bytes at offset {at}")
            if i == 0 and length <= 16:
                name = f.read(length).lower()
            else:
                f.seek(length, os.SEEK_CUR)
            if f.read(2) != b"\r\n":
                raise IntegrityError(f"a bulk string at offset {at} does not end with CRLF")
            at += length + 2
        return at, name

    def _line(self, f: BinaryIO, what: str) -> bytes:
        line = f.readline(MAX_LINE)
        if line.endswith(b"\r\n"):
            return line
        if f.tell() >= self.size:
            raise _Cut(f"the file ends inside {what} ({len(line)} bytes of it are there)")
        raise IntegrityError(f"a line of more than {MAX_LINE} bytes near offset {f.tell()}: not an AOF")

    @staticmethod
    def _int(line: bytes, pos: int) -> int:
        try:
            return int(line[1:].strip())
        except ValueError:
            raise IntegrityError(f"a bad number at offset {pos}: {line[:40]!r}") from None


def cut(path: Path, size: int) -> None:
    """Truncate the file to `size` bytes, durably."""
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
