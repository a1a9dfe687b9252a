"""The Redis 7 AOF manifest (`appendonlydir/appendonly.aof.manifest`).

Lines look like `file appendonly.aof.2.base.rdb seq 2 type b`: key/value pairs split the
way Redis's sdssplitargs does (a name may be "quoted" with C escapes). Types: b (base),
i (incr), h (history, to be deleted). Lines starting with # are comments.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_maint.errors import SnapshotError

TYPES = {"b": "base", "i": "incr", "h": "history"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a", "\\": "\\", '"': '"'}


@dataclass(frozen=True)
class AofEntry:
    name: str
    seq: int
    type: str  # b, i or h


def parse_aof_manifest(text: str, source: str = "AOF manifest") -> list[AofEntry]:
    """Entries in manifest order; raises SnapshotError naming the line for anything malformed."""
    entries: list[AofEntry] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            entries.append(_entry(line))
        except ValueError as exc:
            raise SnapshotError(f"{source} line {lineno} is malformed ({exc}): {line[:200]!r}") from None
    if sum(e.type == "b" for e in entries) > 1:
        raise SnapshotError(f"{source} names more than one base file")
    if not any(e.type in ("b", "i") for e in entries):
        raise SnapshotError(f"{source} names no base or incr file")
    return entries


def live_files(entries: list[AofEntry]) -> list[AofEntry]:
    """The files a restore needs: the base and every incr, in manifest order."""
    return [e for e in entries if e.type in ("b", "i")]


def _entry(line: str) -> AofEntry:
    tokens = split_args(line)
    if len(tokens) % 2:
        raise ValueError("odd number of fields")
    fields = dict(zip(tokens[::2], tokens[1::2], strict=True))
    missing = [k for k in ("file", "seq", "type") if k not in fields]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    name = fields["file"]
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"unsafe file name {name!r}")
    if fields["type"] not in TYPES:
        raise ValueError(f"unknown type {fields['type']!r}")
    return AofEntry(name=name, seq=int(fields["seq"]), type=fields["type"])


def split_args(line: str) -> list[str]:
    """Split like Redis's sdssplitargs: spaces separate, "double" quotes take C escapes, 'single' none."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] in "\"'":
            token, i = _quoted(line, i)
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            token, i = line[i:j], j
        out.append(token)
    return out


def _quoted(line: str, i: int) -> tuple[str, int]:
    quote, buf, i = line[i], [], i + 1
    while i < len(line):
        ch = line[i]
        if ch == quote:
            if i + 1 < len(line) and not line[i + 1].isspace():
                raise ValueError("closing quote must be followed by a space")
            return "".join(buf), i + 1
        if ch == "\\" and quote == '"' and i + 1 < len(line):
            nxt = line[i + 1]
            if nxt == "x" and i + 3 < len(line):
                buf.append(chr(int(line[i + 2 : i + 4], 16)))
                i += 4
                continue
            buf.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if ch == "\\" and quote == "'" and line[i + 1 : i + 2] == "'":
            buf.append("'")
            i += 2
            continue
        buf.append(ch)
        i += 1
    raise ValueError("unbalanced quotes")
