"""The archiver's position in the history store (tables archive_state and archive_segments).

One row per (instance, generation); the one with status `current` is where the archiver resumes: its
incr file, that file's inode and the offset up to which every byte is on the target. A row changes
only after the upload it describes succeeded, and each change checks that the row still says what the
writer last read (the offset a segment starts at): two writers can never both advance it. These rows
are operational state, not evidence: they are not part of the evidence chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from redis_maint.archive.layout import SegmentMeta
from redis_maint.errors import LeaseLostError, MaintenanceError
from redis_maint.history import db
from redis_maint.history.db_errors import history_error
from redis_maint.history.runs import HistoryStore
from redis_maint.timeutil import utcnow

CURRENT, CLOSED, PRUNED = "current", "closed", "pruned"
# In the writer's transaction: False when it no longer holds the archiver's lease (fencing).
Guard = Callable[[Connection], bool]


class StateConflictError(MaintenanceError):
    """The archive's state moved under this writer (another archiver wrote it): nothing was recorded."""


@dataclass(frozen=True)
class Generation:
    instance: str
    generation: str
    status: str
    reason: str | None
    created_at: datetime
    backup_id: str | None
    base_name: str | None
    base_sha256: str | None
    base_time: datetime | None
    incr_file: str | None
    incr_inode: int | None
    offset: int
    safe_until: datetime | None
    last_segment_at: datetime | None
    segments: int
    bytes: int
    updated_at: datetime
    closed_at: datetime | None

    @classmethod
    def from_row(cls, row) -> Generation:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class ArchiveState:
    def __init__(
        self, store: HistoryStore, instance: str, guard: Guard | None = None, fence: int | None = None
    ):
        self.store = store
        self.instance = instance
        self.guard = guard
        self.fence = fence

    # -- reads --------------------------------------------------------------------------
    def current(self) -> Generation | None:
        rows = self._select(db.archive_state.c.status == CURRENT)
        return rows[-1] if rows else None

    def generations(self, *, include_pruned: bool = False) -> list[Generation]:
        """Oldest first."""
        where = [] if include_pruned else [db.archive_state.c.status != PRUNED]
        return self._select(*where)

    def _select(self, *where) -> list[Generation]:
        t = db.archive_state
        query = (
            select(t).where(t.c.instance == self.instance, *where).order_by(t.c.created_at, t.c.generation)
        )
        with self._reading("read the archive's state") as conn:
            return [Generation.from_row(r) for r in conn.execute(query).mappings()]

    def segments(self, generation: str) -> list[SegmentMeta]:
        """In archive order: incr files in the order they were followed, then offsets."""
        t = db.archive_segments
        query = (
            select(t)
            .where(t.c.instance == self.instance, t.c.generation == generation)
            .order_by(t.c.uploaded_at, t.c.offset)
        )
        with self._reading("read the archive's segments") as conn:
            rows = conn.execute(query).mappings().all()
        segs = [
            SegmentMeta(
                r["generation"],
                r["incr_file"],
                r["offset"],
                r["length"],
                r["sha256"],
                r["first_ts"],
                r["last_ts"],
                r["uploaded_at"],
                r["fence"],
            )
            for r in rows
        ]
        order: dict[str, int] = {}
        for s in segs:
            order.setdefault(s.incr_file, len(order))
        return sorted(segs, key=lambda s: (order[s.incr_file], s.offset))

    # -- writes -------------------------------------------------------------------------
    def start(self, gen: Generation) -> None:
        """The new current generation; the previous current one is closed in the same transaction."""
        now = utcnow()
        t = db.archive_state
        with self._writing("start an archive generation") as conn:
            conn.execute(
                update(t)
                .where(t.c.instance == self.instance, t.c.status == CURRENT)
                .values(status=CLOSED, closed_at=now, updated_at=now)
            )
            values = {name: getattr(gen, name) for name in Generation.__dataclass_fields__}
            conn.execute(t.insert().values(**values, fence=self.fence))

    def record_segment(self, seg: SegmentMeta, incr_inode: int, safe_until: datetime | None) -> None:
        """After the segment's upload succeeded: the position moves to its end (only from its start)."""
        t, s = db.archive_state, db.archive_segments
        key = and_(
            s.c.instance == self.instance,
            s.c.generation == seg.generation,
            s.c.incr_file == seg.incr_file,
            s.c.offset == seg.offset,
        )
        with self._writing("record an archived segment") as conn:
            moved = conn.execute(
                update(t)
                .where(*self._at(seg.generation, seg.incr_file, seg.offset))
                .values(
                    offset=seg.end,
                    incr_inode=incr_inode,
                    segments=t.c.segments + 1,
                    bytes=t.c.bytes + seg.length,
                    last_segment_at=seg.uploaded_at,
                    updated_at=utcnow(),
                    fence=self.fence,
                    **({"safe_until": safe_until} if safe_until is not None else {}),
                )
            )
            if moved.rowcount != 1:
                raise StateConflictError(
                    f"archive state of {self.instance} generation {seg.generation} is no longer at "
                    f"{seg.incr_file} offset {seg.offset}: another archiver wrote it; this one stops"
                )
            conn.execute(delete(s).where(key))  # a segment written again after a crash: same key
            conn.execute(
                s.insert().values(
                    instance=self.instance,
                    generation=seg.generation,
                    incr_file=seg.incr_file,
                    offset=seg.offset,
                    length=seg.length,
                    sha256=seg.sha256,
                    first_ts=seg.first_ts,
                    last_ts=seg.last_ts,
                    uploaded_at=seg.uploaded_at,
                    fence=seg.fence,
                )
            )

    def follow(self, generation: str, from_file: str, from_offset: int, incr_file: str, inode: int) -> None:
        """The generation's previous incr file is archived to its end: follow the next one from 0."""
        self._update(
            "follow the next incr file",
            self._at(generation, from_file, from_offset),
            incr_file=incr_file,
            incr_inode=inode,
            offset=0,
        )

    def mark_safe(self, generation: str, incr_file: str, offset: int, safe_until: datetime) -> None:
        """Everything acknowledged before `safe_until` is archived (the position did not need to move)."""
        self._update(
            "record the archive's progress", self._at(generation, incr_file, offset), safe_until=safe_until
        )

    def mark_pruned(self, generations: list[str]) -> None:
        if not generations:
            return
        t, s = db.archive_state, db.archive_segments
        now = utcnow()
        with self._writing("record pruned archive generations") as conn:
            conn.execute(
                update(t)
                .where(t.c.instance == self.instance, t.c.generation.in_(generations), t.c.status != CURRENT)
                .values(status=PRUNED, updated_at=now)
            )
            conn.execute(delete(s).where(s.c.instance == self.instance, s.c.generation.in_(generations)))

    def check_held(self, what: str) -> None:
        """LeaseLostError unless this writer still holds the archiver's lease (nothing to check
        without fencing): called before an upload, so an archiver paused past its lease writes nothing."""
        if self.guard is None:
            return
        with self._writing(what):
            pass

    def _at(self, generation: str, incr_file: str, offset: int):
        t = db.archive_state
        return (
            t.c.instance == self.instance,
            t.c.generation == generation,
            t.c.status == CURRENT,
            t.c.incr_file == incr_file,
            t.c.offset == offset,
        )

    def _update(self, what: str, where, **values) -> None:
        t = db.archive_state
        with self._writing(what) as conn:
            moved = conn.execute(
                update(t).where(*where).values(**values, updated_at=utcnow(), fence=self.fence)
            )
            if moved.rowcount != 1:
                raise StateConflictError(
                    f"archive state of {self.instance} moved while this archiver was to {what}: "
                    "another archiver wrote it; this one stops"
                )

    # -- plumbing -----------------------------------------------------------------------
    def _reading(self, what: str):
        return _tx(self.store, what, write=False, guard=None)

    def _writing(self, what: str):
        return _tx(self.store, what, write=True, guard=self.guard)


@contextmanager
def _tx(store: HistoryStore, what: str, *, write: bool, guard: Guard | None) -> Iterator[Connection]:
    """A transaction whose SQL errors become a HistoryError naming the store; writes check the guard."""
    try:
        with store.engine.begin() if write else store.engine.connect() as conn:
            if guard is not None and not guard(conn):
                raise LeaseLostError(
                    "the archiver's lease was taken over by another sidecar; "
                    f"this one stopped before it could {what}"
                )
            yield conn
    except SQLAlchemyError as exc:
        raise history_error(exc, store.url, what) from None
