"""Where the AOF archive lives on the backup target, and what its small JSON documents say.

Keys are relative to the target's root (its bucket/prefix or directory), beside the backups:

    <instance>/aof/<generation>/generation.json                       the generation's manifest
    <instance>/aof/<generation>/base/<base file>                      the AOF base it starts from
    <instance>/aof/<generation>/<incr file>/<offset, 16 hex>-<fence>.seg
                                                                      bytes [offset, offset+length)
                                                                      of that incr file, uploaded
                                                                      under that lease fencing token

A generation is one base plus the incr files that follow it, in the AOF manifest's order
(`appendonly.aof.N.incr.aof`, N ascending). Segments of one incr file concatenated in offset order
equal that file's bytes from its first archived offset (0 for every generation this archiver starts).
A segment written again by the same lease holder has the same key (its offset and fencing token), so it
replaces itself; an upload still in flight when its archiver lost the lease lands under the old token,
beside the new holder's segment, never over it (the history store names the one recorded). Archives
written before the token was in the key have `<offset>.seg`.

Each segment's facts (sha256, length, first/last `#TS`, uploaded_at, fence) are in the object's metadata
where the target keeps metadata (S3: x-amz-meta-*) and in the history store (table archive_segments).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from redis_maint.timeutil import as_utc, isoformat, utcnow

AOF_DIR = "aof"
BASE_DIR = "base"
GENERATION_MANIFEST = "generation.json"
SEGMENT_SUFFIX = ".seg"
OFFSET_DIGITS = 16
FORMAT = 1

_GENERATION = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_SEGMENT = re.compile(r"^([0-9a-f]{16})(?:-(\d+))?\.seg$")
_INCR_SEQ = re.compile(r"\.(\d+)\.incr\.aof$")

# Why a generation started (GenerationManifest.reason starts with one of these words).
REASON_FIRST = "first-start"  # no archive state for this instance
REASON_REWRITE = "rewrite"  # the AOF manifest names a new base
REASON_REPLACED = "replaced"  # the incr file's inode changed (Redis restarted on other files, a restore)
REASON_TRUNCATED = "truncated"  # the incr file is shorter than the archived offset
REASON_BACKUP = "backup"  # a backup asked for a generation of its own
REASON_LOST = "lost"  # the followed incr file vanished before it was archived to its end


def new_generation_id(now: datetime | None = None) -> str:
    """Sortable by time: `20261201T213005Z-1a2b3c`."""
    return f"{as_utc(now or utcnow()):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def is_generation_id(value: str) -> bool:
    return bool(_GENERATION.match(value))


def instance_prefix(instance: str) -> str:
    return f"{instance}/{AOF_DIR}"


def generation_prefix(instance: str, generation: str) -> str:
    return f"{instance}/{AOF_DIR}/{generation}"


def manifest_key(instance: str, generation: str) -> str:
    return f"{generation_prefix(instance, generation)}/{GENERATION_MANIFEST}"


def base_key(instance: str, generation: str, base_name: str) -> str:
    return f"{generation_prefix(instance, generation)}/{BASE_DIR}/{base_name}"


def segment_key(instance: str, generation: str, incr_file: str, offset: int, fence: int | None = None) -> str:
    if offset < 0:
        raise ValueError(f"negative offset {offset}")
    name = f"{offset:0{OFFSET_DIGITS}x}" + ("" if fence is None else f"-{fence}")
    return f"{generation_prefix(instance, generation)}/{incr_file}/{name}{SEGMENT_SUFFIX}"


@dataclass(frozen=True)
class SegmentRef:
    """What a segment's key says."""

    instance: str
    generation: str
    incr_file: str
    offset: int
    fence: int | None = None  # the archiver's lease fencing token (None: written before it was in keys)


def parse_segment_key(key: str) -> SegmentRef | None:
    """The parts of a segment key, or None for any other key (base, manifest, stray files)."""
    parts = key.split("/")
    name = _SEGMENT.match(parts[-1])
    if len(parts) < 5 or parts[-4] != AOF_DIR or name is None:
        return None
    if not is_generation_id(parts[-3]) or parts[-2] == BASE_DIR:
        return None
    instance = "/".join(parts[:-4])
    fence = None if name[2] is None else int(name[2])
    return SegmentRef(instance, parts[-3], parts[-2], int(name[1], 16), fence)


def incr_seq(name: str) -> int:
    """N of `appendonly.aof.N.incr.aof` (the order of incr files in a generation); -1 if absent."""
    m = _INCR_SEQ.search(name)
    return int(m.group(1)) if m else -1


@dataclass(frozen=True)
class SegmentMeta:
    """One uploaded segment: bytes [offset, offset+length) of `incr_file` in `generation`."""

    generation: str
    incr_file: str
    offset: int
    length: int
    sha256: str
    first_ts: int | None  # first `#TS:<unix>` annotation inside the segment, None if it has none
    last_ts: int | None
    uploaded_at: datetime
    fence: int | None = None  # the uploader's lease fencing token, part of the key

    @property
    def end(self) -> int:
        return self.offset + self.length

    def key(self, instance: str) -> str:
        return segment_key(instance, self.generation, self.incr_file, self.offset, self.fence)

    def to_metadata(self) -> dict[str, str]:
        """For the object's metadata (S3 x-amz-meta-*: short ASCII names and values)."""
        return {
            "sha256": self.sha256,
            "length": str(self.length),
            "offset": str(self.offset),
            "generation": self.generation,
            "first-ts": "" if self.first_ts is None else str(self.first_ts),
            "last-ts": "" if self.last_ts is None else str(self.last_ts),
            "uploaded-at": isoformat(self.uploaded_at) or "",
            "fence": "" if self.fence is None else str(self.fence),
        }

    @classmethod
    def from_metadata(cls, ref: SegmentRef, meta: dict[str, str]) -> SegmentMeta:
        def ts(name: str) -> int | None:
            value = meta.get(name) or ""
            return int(value) if value else None

        return cls(
            generation=ref.generation,
            incr_file=ref.incr_file,
            offset=ref.offset,
            length=int(meta["length"]),
            sha256=meta["sha256"],
            first_ts=ts("first-ts"),
            last_ts=ts("last-ts"),
            uploaded_at=as_utc(datetime.fromisoformat(meta["uploaded-at"].replace("Z", "+00:00"))),
            fence=ref.fence,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["uploaded_at"] = isoformat(self.uploaded_at)
        return data


@dataclass(frozen=True)
class GenerationManifest:
    """`generation.json`: written once, after the base is stored and before the first segment."""

    instance: str
    generation: str
    created_at: datetime
    reason: str  # one of the REASON_* words, then ": " and the detail
    aof_manifest: str  # Redis's AOF manifest text when the generation started
    base_name: str
    base_sha256: str
    base_size: int
    base_mtime: datetime | None  # the base file's mtime: when Redis finished writing it
    incr_files: list[str] = field(default_factory=list)  # incr files known at the start, in order
    backup_id: str | None = None  # the backup this generation is tied to, if any
    format: int = FORMAT

    def base_key(self) -> str:
        return base_key(self.instance, self.generation, self.base_name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = isoformat(self.created_at)
        data["base_mtime"] = isoformat(self.base_mtime)
        data["base_key"] = self.base_key()
        return data

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes | str) -> GenerationManifest:
        raw = json.loads(data)
        raw.pop("base_key", None)
        for name in ("created_at", "base_mtime"):
            if raw.get(name):
                raw[name] = as_utc(datetime.fromisoformat(raw[name].replace("Z", "+00:00")))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})
