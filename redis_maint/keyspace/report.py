"""The figures of a big-keys scan: the N largest keys and the memory per key prefix.

Both tables are bounded whatever the key space holds: the top keys in a heap of N entries, the
prefixes in a table of at most MAX_PREFIXES rows (the rest counted under "(other)"). So a scan of
millions of randomly named keys holds O(N + prefixes) in memory.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

MAX_PREFIXES = 1000
NO_PREFIX = "(no prefix)"  # keys without a ':'
OTHER = "(other)"  # prefixes past MAX_PREFIXES
_OTHER = None  # its key in the table (no byte string can collide with it)


def text(key: bytes) -> str:
    """A key as JSON can carry it: UTF-8, with any other byte shown as \\xNN."""
    return key.decode("utf-8", errors="backslashreplace")


@dataclass
class TopKey:
    key: str
    type: str
    bytes: int
    ttl_s: float | None  # None: the key has no TTL
    org: str | None = None  # sessions only: the organisation read from the JSON value

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "type": self.type, "bytes": self.bytes, "ttl_s": self.ttl_s, "org": self.org}


@dataclass(frozen=True)
class Candidate:
    """A key in the running top N, as the scan saw it; its type and organisation are read at the end."""

    size: int
    key: bytes
    pttl: int  # ms; -1: no TTL
    node: int  # index of the node that holds it (Cluster)


class _Later:
    """A key that sorts in reverse, so that among keys of one size the heap drops the last by name."""

    __slots__ = ("key",)

    def __init__(self, key: bytes):
        self.key = key

    def __lt__(self, other: _Later) -> bool:
        return self.key > other.key


class TopHeap:
    """The `limit` largest keys seen so far, by size and then by name (so equal sizes give the same
    list whatever order SCAN returns them in): a min-heap, so a key smaller than the smallest kept
    costs one comparison. A key SCAN returns twice is kept once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._heap: list[tuple[int, _Later, Candidate]] = []
        self._keys: set[bytes] = set()
        self.floor = -1  # a key smaller than this never gets in (the smallest kept, once full)

    def offer(self, size: int, key: bytes, pttl: int, node: int) -> None:
        if size < self.floor or key in self._keys:
            return
        full = len(self._heap) == self.limit
        if full and size == self.floor and key > self._heap[0][1].key:
            return  # as large as the smallest kept, but later by name
        entry = (size, _Later(key), Candidate(size, key, pttl, node))
        self._keys.add(key)
        if full:
            _, dropped, _ = heapq.heapreplace(self._heap, entry)
            self._keys.discard(dropped.key)
        else:
            heapq.heappush(self._heap, entry)
        if len(self._heap) == self.limit:
            self.floor = self._heap[0][0]

    def largest(self) -> list[Candidate]:
        """Largest first; equal sizes by key."""
        return [c for _, _, c in sorted(self._heap, key=lambda e: (-e[0], e[2].key))]


class PrefixTable:
    """keys, bytes and keys without a TTL per prefix: `session:` (the configured session prefix),
    other keys by their first segment and its ':' (`ratelimit:`), keys without ':' together."""

    def __init__(self, session_prefix: bytes, limit: int = MAX_PREFIXES):
        self.session_prefix, self.limit = session_prefix, limit
        self.rows: dict[bytes | None, list[int]] = {}  # prefix -> [keys, bytes, no_ttl]

    def prefix_of(self, key: bytes) -> bytes:
        if self.session_prefix and key.startswith(self.session_prefix):
            return self.session_prefix
        colon = key.find(b":")
        return key[: colon + 1] if colon >= 0 else b""

    def add(self, key: bytes, size: int, no_ttl: bool) -> None:
        prefix: bytes | None = self.prefix_of(key)
        row = self.rows.get(prefix)
        if row is None:
            if len(self.rows) >= self.limit:
                prefix = _OTHER
            row = self.rows.setdefault(prefix, [0, 0, 0])
        row[0] += 1
        row[1] += size
        row[2] += no_ttl

    def to_rows(self) -> list[PrefixRow]:
        """Largest total first; "(other)" last, whatever its size, since it is not one prefix."""
        rows = [PrefixRow(_label(p), n, size, no_ttl) for p, (n, size, no_ttl) in self.rows.items()]
        return sorted(rows, key=lambda r: (r.prefix == OTHER, -r.bytes, r.prefix))


def _label(prefix: bytes | None) -> str:
    if prefix is _OTHER:
        return OTHER
    return text(prefix) if prefix else NO_PREFIX


@dataclass
class PrefixRow:
    prefix: str
    keys: int
    bytes: int
    no_ttl: int

    @property
    def mean(self) -> int:
        return round(self.bytes / self.keys) if self.keys else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "keys": self.keys,
            "bytes": self.bytes,
            "mean": self.mean,
            "no_ttl": self.no_ttl,
        }


@dataclass
class BigKeysReport:
    scanned: int = 0  # keys SCAN returned (matching the pattern)
    top: list[TopKey] = field(default_factory=list)
    by_prefix: list[PrefixRow] = field(default_factory=list)
    duration_s: float = 0.0
    complete: bool = True  # False: the time budget ended the scan before SCAN went round
    vanished: int = 0  # gone between SCAN and MEMORY USAGE: skipped
    moved: int = 0  # Cluster: in a slot that moved mid-scan: skipped
    nodes: int = 0

    @property
    def sized(self) -> int:
        """Keys measured (in by_prefix): scanned minus the vanished and moved ones."""
        return self.scanned - self.vanished - self.moved

    def to_json(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "top": [k.to_json() for k in self.top],
            "by_prefix": [r.to_json() for r in self.by_prefix],
            "duration_s": round(self.duration_s, 3),
            "complete": self.complete,
            "vanished": self.vanished,
            "moved": self.moved,
            "nodes": self.nodes,
        }
