"""The AOF archive read from the backup target alone, for a restore when the history store has no
archive rows for the instance: a history database lost with its host and started afresh, or a
restore on another machine pointed at the same bucket.

Everything a restore needs is on the target: each generation's `generation.json` (its base, the
base's sha256 and time, why it started) and its segments. A segment's facts (length, first and last
`#TS`) are read from its bytes with the scan the archiver used when it cut the segment, so they equal
what it recorded; its sha256 is the one stored with the object where the target keeps metadata (S3),
else the bytes'. Segments are taken in chain order per incr file (each starts where the previous
ended), at each offset the one uploaded under the newest lease (keys carry the fencing token); one
that does not continue the chain is left out. A generation whose `generation.json` is missing (it is
written after the base) or unreadable is skipped. Planning reads every segment once, and the restore
then downloads the ones it needs: slower than with the history store, which is why it is the fallback.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis_maint.archive import layout
from redis_maint.archive.follower import RespScanner
from redis_maint.archive.layout import GenerationManifest, SegmentMeta
from redis_maint.archive.state import ArchiveState, Generation
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import Target
from redis_maint.storage.base import ObjectInfo

log = logging.getLogger("redis_maint.archive.from_target")


@dataclass
class _Listed:
    manifest: ObjectInfo | None
    segments: list[tuple[layout.SegmentRef, ObjectInfo]]


class TargetArchive:
    """The read side of ArchiveState (`instance`, `generations()`, `segments()`) from the target."""

    def __init__(self, target: Target, instance: str, checkpoint: Callable[[], None] | None = None):
        self.target = target
        self.instance = instance
        self.checkpoint = checkpoint
        self._listed: dict[str, _Listed] | None = None
        self._segments: dict[str, list[SegmentMeta]] = {}

    def generations(self) -> list[Generation]:
        """Oldest first, as the history store orders them."""
        found = []
        for gen_id, listed in self._listing().items():
            if listed.manifest is None:
                log.warning(
                    "archive generation without generation.json skipped", extra={"generation": gen_id}
                )
                continue
            try:
                found.append(self._generation(gen_id, listed))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not a generation.json
                log.warning(
                    "archive generation with an unreadable generation.json skipped",
                    extra={"generation": gen_id, "error": str(exc)},
                )
        return sorted(found, key=lambda g: (g.created_at, g.generation))

    def segments(self, generation: str) -> list[SegmentMeta]:
        """The generation's segments in archive order: incr files in Redis's order, each a chain of
        offsets from its first one."""
        if generation not in self._segments:
            listed = self._listing().get(generation)
            refs = listed.segments if listed is not None else []
            self._segments[generation] = self._chained(refs)
        return self._segments[generation]

    # -- reading ------------------------------------------------------------------------------
    def _listing(self) -> dict[str, _Listed]:
        if self._listed is None:
            listed: dict[str, _Listed] = {}
            prefix = layout.instance_prefix(self.instance)
            for info in self.target.list(prefix):
                parts = info.key.split("/")
                gen_id = parts[-2] if info.key.endswith(layout.GENERATION_MANIFEST) else None
                ref = layout.parse_segment_key(info.key)
                if ref is not None and ref.instance == self.instance:
                    listed.setdefault(ref.generation, _Listed(None, [])).segments.append((ref, info))
                elif gen_id is not None and layout.is_generation_id(gen_id):
                    listed.setdefault(gen_id, _Listed(None, [])).manifest = info
            self._listed = listed
        return self._listed

    def _generation(self, gen_id: str, listed: _Listed) -> Generation:
        key = layout.manifest_key(self.instance, gen_id)
        m = GenerationManifest.loads(b"".join(self.target.read_chunks(key)))
        if m.generation != gen_id or m.instance != self.instance:
            raise ValueError(f"it describes {m.instance}/{m.generation}, not {self.instance}/{gen_id}")
        last = max((info.modified for _, info in listed.segments), default=None)
        return Generation(
            instance=self.instance,
            generation=gen_id,
            status="closed",
            reason=m.reason,
            created_at=m.created_at,
            backup_id=m.backup_id,
            base_name=m.base_name,
            base_sha256=m.base_sha256,
            base_time=m.base_mtime,
            incr_file=None,
            incr_inode=None,
            offset=0,
            safe_until=None,  # unknown here: the window ends at the last archived annotation
            last_segment_at=last,
            segments=len(listed.segments),
            bytes=sum(info.size for _, info in listed.segments),
            updated_at=last or m.created_at,
            closed_at=None,
        )

    def _chained(self, refs: list[tuple[layout.SegmentRef, ObjectInfo]]) -> list[SegmentMeta]:
        # At one offset, the newest lease's upload: an older holder's can only be a late one.
        by_file: dict[str, dict[int, tuple[layout.SegmentRef, ObjectInfo]]] = {}
        for ref, info in sorted(refs, key=lambda r: -1 if r[0].fence is None else r[0].fence):
            by_file.setdefault(ref.incr_file, {})[ref.offset] = (ref, info)
        chained: list[SegmentMeta] = []
        for incr_file in sorted(by_file, key=lambda name: (layout.incr_seq(name), name)):
            at_offset = by_file[incr_file]
            offset = min(at_offset)
            while offset in at_offset:
                seg = self._read(*at_offset.pop(offset))
                chained.append(seg)
                if seg.length == 0:
                    break
                offset = seg.end
            if at_offset:
                log.warning(
                    "archive segments off the chain left out (a late upload of an archiver that lost its lease)",
                    extra={"incr_file": incr_file, "offsets": sorted(at_offset)[:10]},
                )
        return chained

    def _read(self, ref: layout.SegmentRef, info: ObjectInfo) -> SegmentMeta:
        if self.checkpoint is not None:
            self.checkpoint()
        data = b"".join(self.target.read_chunks(info.key))
        first_ts, last_ts = annotations(data, ref.offset)
        # The sha256 the archiver stored with the object (S3 metadata), so the restore's check of each
        # download still refuses a changed segment; a local target keeps none, and then only the
        # truncation tool and the proof load check what the bytes say.
        recorded = self.target.head(info.key).sha256
        return SegmentMeta(
            generation=ref.generation,
            incr_file=ref.incr_file,
            offset=ref.offset,
            length=len(data),
            sha256=recorded or hashlib.sha256(data).hexdigest(),
            first_ts=first_ts,
            last_ts=last_ts,
            uploaded_at=info.modified,
            fence=ref.fence,
        )


def annotations(data: bytes, offset: int) -> tuple[int | None, int | None]:
    """The first and last `#TS` of a segment that starts at `offset`, as the archiver found them."""
    scanner = RespScanner(offset)
    scanner.feed(data)
    return scanner.first_ts, scanner.last_ts


def archive_source(
    store: HistoryStore, target: Target, instance: str, checkpoint: Callable[[], None] | None = None
) -> ArchiveState | TargetArchive:
    """The history store's archive state; when it has no generation of `instance`, the archive as
    the target holds it."""
    state = ArchiveState(store, instance)
    if state.generations():
        return state
    log.warning(
        "the history store has no archive rows for this instance: reading the archive from the target",
        extra={"instance": instance, "target": target.uri},
    )
    return TargetArchive(target, instance, checkpoint)
