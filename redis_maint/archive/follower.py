"""Reading what Redis appended to an incr file since an offset: bounded chunks, cut at a command boundary.

An AOF incr file is RESP commands (`*N\\r\\n` then N bulk strings `$len\\r\\n<bytes>\\r\\n`) and, with
`aof-timestamp-enabled yes`, annotation lines `#TS:<unix seconds>\\r\\n` between them. A segment ends
where a command (or annotation) ends, so a restore's truncation works on whole commands; the bytes of
a command not yet complete stay in the file and start the next segment. The file is never read
whole: at most `max_bytes` per segment, in CHUNK reads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

CHUNK = 1 << 20
MAX_SEGMENT_BYTES = 8 << 20  # bounds the archiver's memory: one segment is held while it uploads
_TS = b"#TS:"


class RespScanner:
    """Incremental: feed bytes in order; `boundary` is the stream offset after the last whole
    command or annotation, `first_ts`/`last_ts` the `#TS` values of annotations completed so far."""

    __slots__ = ("_args", "_base", "_buf", "_pos", "boundary", "broken", "first_ts", "last_ts")

    def __init__(self, start: int = 0):
        self._buf = b""  # unparsed bytes; _base is the stream offset of _buf[0]
        self._pos = 0
        self._base = start
        self._args = 0  # bulk strings still expected in the current command
        self.boundary = start
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.broken = False  # not RESP: no boundary can be trusted after the last one found

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._feed(data)
        except ValueError:
            self.broken = True

    def _feed(self, data: bytes) -> None:
        buf = self._buf[self._pos :] + data if self._pos < len(self._buf) else data
        self._base += self._pos
        pos, n = 0, len(buf)
        args = self._args
        find = buf.find
        boundary = None
        while pos < n:
            if args == 0:
                lead = buf[pos]
                eol = find(b"\r\n", pos)
                if eol < 0:
                    break
                if lead == 0x2A:  # '*'
                    args = int(buf[pos + 1 : eol])
                    pos = eol + 2
                    if args <= 0:
                        boundary = pos
                        args = 0
                    continue
                if lead == 0x23 and buf.startswith(_TS, pos):  # '#TS:'
                    ts = int(buf[pos + 4 : eol])
                    if self.first_ts is None:
                        self.first_ts = ts
                    self.last_ts = ts
                pos = eol + 2  # any annotation (or unknown line) is skipped whole, as Redis does
                boundary = pos
                continue
            # a bulk string: $len\r\n<len bytes>\r\n
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            end = eol + 2 + int(buf[pos + 1 : eol]) + 2
            if end > n:
                break
            pos = end
            args -= 1
            if args == 0:
                boundary = pos
        self._buf, self._pos, self._args = buf, pos, args
        if boundary is not None:
            self.boundary = self._base + boundary
        self._compact()

    def _compact(self) -> None:
        # Keep only the unparsed tail (a partial line or bulk string), not what was parsed.
        if self._pos:
            self._base += self._pos
            self._buf = self._buf[self._pos :]
            self._pos = 0

    @property
    def pending(self) -> int:
        """Bytes fed after the last boundary (an incomplete command)."""
        return self._base + len(self._buf) - self.boundary


@dataclass(frozen=True)
class Chunk:
    """Bytes [offset, offset+len(data)) of the file, ending at a command boundary when `whole`."""

    offset: int
    data: bytes
    sha256: str
    first_ts: int | None
    last_ts: int | None
    whole: bool  # ends at a command boundary (False: cut inside a command, see read_segment)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def read_segment(
    fd: int, offset: int, size: int, *, final: bool, max_bytes: int = MAX_SEGMENT_BYTES
) -> Chunk | None:
    """The next segment of `fd` from `offset`, reading no further than `size` (what stat saw).

    It ends at the last command boundary found; a trailing incomplete command is left for the next
    segment, unless `final` (the file will not grow any more: its tail is shipped as is) or no
    boundary exists within `max_bytes` (one command larger than that: cut inside it, concatenation
    stays exact). None when there is nothing (complete) to ship.
    """
    limit = min(size, offset + max_bytes)
    if limit <= offset:
        return None
    scanner = RespScanner(offset)
    parts: list[bytes] = []
    at = offset
    while at < limit:
        data = os.pread(fd, min(CHUNK, limit - at), at)
        if not data:
            break  # shrank under us: the caller sees the truncation on its next stat
        scanner.feed(data)
        parts.append(data)
        at += len(data)
    blob = parts[0] if len(parts) == 1 else b"".join(parts)
    del parts
    end, whole = scanner.boundary, True
    if at == size and final:
        end, whole = at, scanner.pending == 0
    elif end == offset and (at - offset >= max_bytes or scanner.broken):
        end, whole = at, False
    if end <= offset:
        return None
    data = blob if end - offset == len(blob) else blob[: end - offset]
    # Every complete `#TS` line ends at a boundary: the annotations seen are all inside `data`.
    return Chunk(offset, data, hashlib.sha256(data).hexdigest(), scanner.first_ts, scanner.last_ts, whole)
