"""The archiver: every interval, the bytes Redis appended to its incr file go to the target as a segment.

One tick:
1. Only on a primary (INFO replication role:master): a replica's files are not the source of truth.
2. Redis's clock (TIME) is read first: once every byte the file held after that instant is archived,
   every write acknowledged before it is safe (`safe_until`; lag = Redis's clock - safe_until).
3. The AOF manifest says which base and incr files are live. A new base (a rewrite finished) starts a
   new generation; so does an incr file replaced (other inode) or truncated (shorter than the archived
   offset), with the reason. A new generation ships its base first (pinned: opened with the incr file
   under one manifest read, then hard-linked or copied into staging), then generation.json, and only
   then becomes the current one in the history store: base + increments never have a gap.
4. Segments are cut at command boundaries (follower.py); each is uploaded, and only after the upload
   succeeded does the position move (state.py). A crash between the two uploads the same bytes again
   under the same key (its offset): never a second, different segment, and never a skipped byte.

The followed incr file stays open between ticks, so a rewrite that deletes it cannot lose its tail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from redis_maint.archive import layout
from redis_maint.archive.follower import MAX_SEGMENT_BYTES, read_segment
from redis_maint.archive.state import ArchiveState, Generation
from redis_maint.errors import MaintenanceError, SnapshotError
from redis_maint.snapshot.aof_manifest import AofEntry, parse_aof_manifest
from redis_maint.snapshot.bgsave import redis_call, server_time
from redis_maint.snapshot.datafiles import DataLayout, discover_layout
from redis_maint.snapshot.pinning import FileChanged, hash_fd, link_if_same, open_pinned
from redis_maint.storage import Target
from redis_maint.timeutil import isoformat, utcnow

log = logging.getLogger("redis_maint.archive.archiver")

PIN_ATTEMPTS = 3
BACKOFF_MAX_S = 60.0


class NotArchivable(MaintenanceError):
    """Redis's files cannot be archived as they are (no multi-part AOF): says what to change."""


class StagingError(SnapshotError):
    """The base of a new generation could not be staged (the staging disk is full, unwritable)."""


@dataclass(frozen=True)
class ArchiverOptions:
    instance: str
    data_dir: Path
    staging_dir: Path
    interval_s: float = 5.0
    max_segment_bytes: int = MAX_SEGMENT_BYTES
    backoff_max_s: float = BACKOFF_MAX_S
    problem_file: Path | None = None  # where the loop records failing ticks for `archive status`


@dataclass
class TickReport:
    generation: str | None = None
    skipped: str | None = None  # why nothing was archived (a replica)
    started: list[str] = field(default_factory=list)  # reasons of generations started in this tick
    segments: int = 0
    bytes: int = 0
    offset: int | None = None
    safe_until: datetime | None = None

    def to_json(self) -> dict:
        return {
            "generation": self.generation,
            "skipped": self.skipped,
            "started": self.started,
            "segments": self.segments,
            "bytes": self.bytes,
            "offset": self.offset,
            "safe_until": isoformat(self.safe_until),
        }


@dataclass
class _Followed:
    generation: str
    name: str
    fd: int
    inode: int


@dataclass
class _Live:
    """What the AOF manifest says now."""

    text: str
    base: AofEntry
    incrs: list[AofEntry]

    def names(self) -> list[str]:
        return [e.name for e in self.incrs]


class Archiver:
    def __init__(
        self,
        options: ArchiverOptions,
        client: redis.Redis,
        target: Target,
        state: ArchiveState,
        *,
        backup_id: Callable[[], str | None] | None = None,
    ):
        self.o = options
        self.client = client
        self.target = target
        self.state = state
        self.layout: DataLayout | None = None
        self._followed: _Followed | None = None
        self.skew_s = 0.0  # Redis's clock minus ours, from the last TIME
        self._backup_id = backup_id or (lambda: None)
        # The long-lived loop ships a rewrite's new base in the background while the old generation
        # keeps following the live incr file (safe_until keeps moving); a lone tick does it all inline.
        self.background_bases = False
        self._pending: _Pending | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- one tick -----------------------------------------------------------------------
    def tick(self) -> TickReport:
        report = TickReport()
        role = _role(self.client)
        if role != "master":
            self.close()
            report.skipped = f"this node is a {role}: only the primary's sidecar archives"
            return report
        t0 = self._redis_now()
        live = self._live()
        cur = self.state.current()
        if self._pending is not None and self._pending.future.done():
            cur = self._adopt(cur, live, t0, report)
        why = self._why_new_generation(cur, live, report)
        if why is not None:
            cur = self._start(why, report)
            live = self._live()
        elif self._pending is not None:  # the old generation may have moved on to the rewrite's incr file
            cur = self.state.current() or cur
        cur = self._ship(cur, live, t0, report)
        report.generation, report.offset = cur.generation, cur.offset
        return report

    def _ship(self, cur: Generation, live: _Live, t0: datetime, report: TickReport) -> Generation:
        """Archive the followed incr file up to what stat sees, then the next ones of the manifest."""
        while True:
            f = self._follow(cur)
            names = live.names()
            final = cur.incr_file not in names or cur.incr_file != names[-1]
            size = os.fstat(f.fd).st_size
            offset = cur.offset
            while True:
                chunk = read_segment(f.fd, offset, size, final=final, max_bytes=self.o.max_segment_bytes)
                if chunk is None:
                    break
                at_end = chunk.end == size and not final
                seg = layout.SegmentMeta(
                    cur.generation, cur.incr_file, chunk.offset, len(chunk.data), chunk.sha256,
                    chunk.first_ts, chunk.last_ts, utcnow(), self.state.fence,
                )  # fmt: skip
                self._put_segment(seg, chunk.data)
                self.state.record_segment(seg, f.inode, t0 if at_end else None)
                report.segments += 1
                report.bytes += seg.length
                offset = seg.end
                if at_end:
                    report.safe_until = t0
            if not final:
                if offset == size and report.safe_until is None:
                    self.state.mark_safe(cur.generation, cur.incr_file, offset, t0)
                    report.safe_until = t0
                return self.state.current() or cur
            nxt = _next_incr(names, cur.incr_file)
            if nxt is None:  # the file left the manifest and nothing follows it: a rewrite, next tick
                return self.state.current() or cur
            fd, inode = self._open_incr(nxt)
            self.state.follow(cur.generation, cur.incr_file, offset, nxt, inode)
            self._replace_followed(_Followed(cur.generation, nxt, fd, inode))
            cur = self.state.current() or cur

    def _put_segment(self, seg: layout.SegmentMeta, data: bytes) -> None:
        """Upload one segment, only while this archiver still holds its lease: one that was paused and
        taken over stops here instead of writing a key the new holder owns (state.check_held)."""
        self.state.check_held(f"upload segment {seg.key(self.o.instance)}")
        self.target.put_bytes(seg.key(self.o.instance), data, metadata=seg.to_metadata())

    def _holds(self, cur: Generation) -> bool:
        """Whether the open file is the very incr file the state archived (same inode)."""
        f = self._followed
        return (
            f is not None
            and (f.generation, f.name) == (cur.generation, cur.incr_file)
            and f.inode == cur.incr_inode
        )

    def _why_new_generation(self, cur: Generation | None, live: _Live, report: TickReport) -> str | None:
        if cur is None:
            return f"{layout.REASON_FIRST}: no archive state for {self.o.instance}"
        if cur.base_name != live.base.name:
            why = (
                f"{layout.REASON_REWRITE}: the AOF manifest names a new base {live.base.name} "
                f"(was {cur.base_name})"
            )
            if self._pending is not None or (
                self.background_bases and self._continue_past_rewrite(cur, live, why, report)
            ):
                return None  # the new base ships in the background; the old generation keeps following
            self._finish_followed(cur, report)
            return why
        why = self._broken_continuity(cur)
        if why is not None and why.startswith(layout.REASON_REPLACED) and self._holds(cur):
            # Redis stopped and came back on other files (a restore): the file it wrote until then is
            # still open here, so its last bytes close the old generation instead of being lost.
            self._finish_followed(cur, report)
        return why

    def _finish_followed(self, cur: Generation, report: TickReport) -> None:
        """A rewrite replaced the base: the incr file followed so far (still open) is shipped to its end."""
        try:
            f = self._follow(cur)
        except _Gone:
            log.warning(
                "the incr file followed was deleted before its end was archived",
                extra={"generation": cur.generation, "incr_file": cur.incr_file, "offset": cur.offset},
            )
            return
        size, offset = os.fstat(f.fd).st_size, cur.offset
        while (
            chunk := read_segment(f.fd, offset, size, final=True, max_bytes=self.o.max_segment_bytes)
        ) is not None:
            seg = layout.SegmentMeta(
                cur.generation, cur.incr_file, chunk.offset, len(chunk.data), chunk.sha256,
                chunk.first_ts, chunk.last_ts, utcnow(), self.state.fence,
            )  # fmt: skip
            self._put_segment(seg, chunk.data)
            self.state.record_segment(seg, f.inode, None)
            report.segments += 1
            report.bytes += seg.length
            offset = seg.end

    def _broken_continuity(self, cur: Generation) -> str | None:
        """Why the archive cannot continue from the state's position, or None."""
        try:
            f = self._follow(cur)
        except _Gone:
            return f"{layout.REASON_LOST}: {cur.incr_file} is gone from the data dir at offset {cur.offset}"
        st = os.stat(self._aof_path(cur.incr_file)) if self._exists(cur.incr_file) else None
        if st is not None and st.st_ino != f.inode:
            return (
                f"{layout.REASON_REPLACED}: {cur.incr_file} is another file now (inode {st.st_ino}, was "
                f"{f.inode}): Redis restarted on other files or was restored"
            )
        size = os.fstat(f.fd).st_size
        if size < cur.offset:
            return (
                f"{layout.REASON_TRUNCATED}: {cur.incr_file} was truncated from {cur.offset} to {size} bytes"
            )
        return None

    # -- generations --------------------------------------------------------------------
    def _start(self, reason: str, report: TickReport) -> Generation:
        """Ship the base (pinned with the first incr file) and generation.json, then make it current."""
        for attempt in range(1, PIN_ATTEMPTS + 1):
            try:
                return self._start_once(reason, report)
            except FileChanged as exc:
                log.info(
                    "AOF files changed while a generation started; retrying",
                    extra={"attempt": attempt, "why": str(exc)},
                )
        raise SnapshotError(
            f"the AOF manifest kept changing while the archive started a generation ({PIN_ATTEMPTS} attempts); "
            "AOF rewrites may be running back to back: the archiver retries on its next tick"
        )

    def _start_once(self, reason: str, report: TickReport) -> Generation:
        text = self._manifest_text()
        live = _parse_live(text, self._manifest_path())
        first = live.incrs[0]
        with contextlib.ExitStack() as stack:
            base_fd = open_pinned(self._aof_path(live.base.name), may_vanish=True)
            stack.callback(os.close, base_fd)
            incr_fd = open_pinned(self._aof_path(first.name), may_vanish=True)
            if self._manifest_text() != text:
                os.close(incr_fd)
                raise FileChanged("the AOF manifest was rewritten while its files were being opened")
            try:
                base_st = os.fstat(base_fd)
                created = utcnow()
                gen_id = layout.new_generation_id(created)
                sha = self._ship_base(base_fd, live.base.name, gen_id)
                incr_st = os.fstat(incr_fd)
                gen_manifest = layout.GenerationManifest(
                    instance=self.o.instance,
                    generation=gen_id,
                    created_at=created,
                    reason=reason,
                    aof_manifest=text,
                    base_name=live.base.name,
                    base_sha256=sha,
                    base_size=base_st.st_size,
                    base_mtime=datetime.fromtimestamp(base_st.st_mtime, UTC),
                    incr_files=live.names(),
                    backup_id=self._backup_id(),
                )
                self.target.put_bytes(layout.manifest_key(self.o.instance, gen_id), gen_manifest.dumps())
                gen = Generation(
                    instance=self.o.instance,
                    generation=gen_id,
                    status="current",
                    reason=reason,
                    created_at=created,
                    backup_id=gen_manifest.backup_id,
                    base_name=live.base.name,
                    base_sha256=sha,
                    base_time=gen_manifest.base_mtime,
                    incr_file=first.name,
                    incr_inode=incr_st.st_ino,
                    offset=0,
                    safe_until=None,
                    last_segment_at=None,
                    segments=0,
                    bytes=0,
                    updated_at=created,
                    closed_at=None,
                )
                self.state.start(gen)
            except BaseException:
                os.close(incr_fd)
                raise
        self._replace_followed(_Followed(gen_id, first.name, incr_fd, incr_st.st_ino))
        report.started.append(reason)
        log.warning("archive generation started", extra={"generation": gen_id, "reason": reason})
        return gen

    def _ship_base(self, fd: int, name: str, generation: str) -> str:
        """Stage the pinned base (a hard link when it is the same inode, else a copy), hash, upload."""
        staged = self.o.staging_dir / f"{generation}-{name}"
        try:
            try:
                self.o.staging_dir.mkdir(parents=True, exist_ok=True)
                staged.unlink(missing_ok=True)
                pinned = os.fstat(fd)
                if link_if_same(self._aof_path(name), staged, pinned):
                    digest = hash_fd(fd, pinned.st_size)
                else:
                    with open(staged, "wb") as out:
                        digest = hash_fd(fd, pinned.st_size, out)
            except OSError as exc:
                raise StagingError(
                    f"cannot stage the AOF base {name} in {self.o.staging_dir} for a new archive generation: "
                    f"{exc.strerror or exc}; free space there (it needs room for one AOF base unless it is on "
                    "Redis's filesystem, where a hard link costs nothing) or move state_dir; the archiver "
                    "keeps its position and retries"
                ) from None
            self.target.put_file(layout.base_key(self.o.instance, generation, name), staged, sha256=digest)
            return digest
        finally:
            with contextlib.suppress(OSError):
                staged.unlink(missing_ok=True)

    # -- files --------------------------------------------------------------------------
    def _layout(self) -> DataLayout:
        if self.layout is None:
            found = discover_layout(self.client)
            if not found.aof_enabled or not found.aof_dir:
                raise NotArchivable(
                    "the archive follows Redis 7's multi-part AOF, but appendonly is "
                    f"{'yes' if found.aof_enabled else 'no'} and appenddirname is {found.aof_dir or 'unset'}; "
                    "set appendonly yes (Redis 7), or archive.enabled = false"
                )
            self.layout = found
        return self.layout

    def _aof_path(self, name: str) -> Path:
        return self.o.data_dir / self._layout().aof_dir / name

    def _manifest_path(self) -> Path:
        lay = self._layout()
        return self.o.data_dir / lay.aof_dir / f"{lay.aof_file}.manifest"

    def _manifest_text(self) -> str:
        path = self._manifest_path()
        try:
            return path.read_text()
        except FileNotFoundError:
            raise SnapshotError(
                f"{path} does not exist; check REDIS_MAINT_DATA_DIR (where this process sees Redis's data dir)"
            ) from None

    def _live(self) -> _Live:
        return _parse_live(self._manifest_text(), self._manifest_path())

    def _exists(self, name: str) -> bool:
        return self._aof_path(name).exists()

    def _open_incr(self, name: str) -> tuple[int, int]:
        try:
            fd = open_pinned(self._aof_path(name), may_vanish=True)
        except FileChanged:
            raise SnapshotError(f"{self._aof_path(name)} is named by the AOF manifest but missing") from None
        return fd, os.fstat(fd).st_ino

    def _follow(self, cur: Generation) -> _Followed:
        """The open incr file the state names (opened by name after a restart)."""
        f = self._followed
        if f is not None and f.generation == cur.generation and f.name == cur.incr_file:
            return f
        try:
            fd = open_pinned(self._aof_path(cur.incr_file), may_vanish=True)
        except FileChanged:
            raise _Gone(cur.incr_file) from None
        st = os.fstat(fd)
        f = _Followed(
            cur.generation, cur.incr_file, fd, cur.incr_inode if cur.incr_inode is not None else st.st_ino
        )
        if st.st_ino != f.inode:
            f.inode = -1  # not the file the state archived: _broken_continuity names it
        self._replace_followed(f)
        return f

    def _replace_followed(self, f: _Followed | None) -> None:
        old, self._followed = self._followed, f
        if old is not None and (f is None or old.fd != f.fd):
            os.close(old.fd)

    # -- a rewrite's base in the background ---------------------------------------------------
    def _continue_past_rewrite(self, cur: Generation, live: _Live, why: str, report: TickReport) -> bool:
        """After a rewrite, the old base + the incr files since it still replay to what Redis holds, as
        long as the live incr file follows the ones archived: the old generation follows it while the new
        base ships (_begin). True when that is so and the shipping started."""
        if self._broken_continuity(cur) is not None:
            return False
        names = live.names()
        if cur.incr_file not in names:
            # The rewrite started and ended between two ticks: the followed file left the manifest. Its
            # successor is the rewrite's incr file only when Redis numbered it next (no file skipped) and
            # the new base is numbered after the old one (a rewrite, not other files put in place).
            nxt = live.incrs[0]
            if (nxt.seq, _seq(live.base.name)) != (
                layout.incr_seq(cur.incr_file) + 1,
                _seq(cur.base_name) + 1,
            ):
                return False
            if not self._begin(why):
                return False
            self._finish_followed(cur, report)
            done = self.state.current() or cur
            fd, inode = self._open_incr(nxt.name)
            self.state.follow(done.generation, done.incr_file, done.offset, nxt.name, inode)
            self._replace_followed(_Followed(done.generation, nxt.name, fd, inode))
            return True
        return self._begin(why)

    def _begin(self, why: str) -> bool:
        """Pin the new base and its first incr file (one manifest read) and ship the base in a thread."""
        text = self._manifest_text()
        live = _parse_live(text, self._manifest_path())
        base_fd = open_pinned(self._aof_path(live.base.name), may_vanish=True)
        try:
            incr_fd = open_pinned(self._aof_path(live.incrs[0].name), may_vanish=True)
        except BaseException:
            os.close(base_fd)
            raise
        if self._manifest_text() != text:
            os.close(base_fd)
            os.close(incr_fd)
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-base")
        incr_inode = os.fstat(incr_fd).st_ino
        job = (base_fd, live, text, why, incr_inode, self._backup_id())
        self._pending = _Pending(
            why, live.incrs[0].name, incr_fd, incr_inode, self._pool.submit(self._ship_new, *job)
        )
        log.info(
            "archive: a rewrite's base ships in the background", extra={"base": live.base.name, "why": why}
        )
        return True

    def _ship_new(
        self, base_fd: int, live: _Live, text: str, why: str, incr_inode: int, backup_id: str | None
    ) -> Generation:
        """In the thread: the base and generation.json on the target; the row that makes it current."""
        try:
            base_st = os.fstat(base_fd)
            created = utcnow()
            gen_id = layout.new_generation_id(created)
            sha = self._ship_base(base_fd, live.base.name, gen_id)
        finally:
            os.close(base_fd)
        manifest = layout.GenerationManifest(
            instance=self.o.instance, generation=gen_id, created_at=created, reason=why, aof_manifest=text,
            base_name=live.base.name, base_sha256=sha, base_size=base_st.st_size,
            base_mtime=datetime.fromtimestamp(base_st.st_mtime, UTC), incr_files=live.names(), backup_id=backup_id,
        )  # fmt: skip
        self.target.put_bytes(layout.manifest_key(self.o.instance, gen_id), manifest.dumps())
        return Generation(
            instance=self.o.instance, generation=gen_id, status="current", reason=why, created_at=created,
            backup_id=backup_id, base_name=live.base.name, base_sha256=sha, base_time=manifest.base_mtime,
            incr_file=live.incrs[0].name, incr_inode=incr_inode, offset=0, safe_until=None,
            last_segment_at=None, segments=0, bytes=0, updated_at=created, closed_at=None,
        )  # fmt: skip

    def _adopt(
        self, cur: Generation | None, live: _Live, t0: datetime, report: TickReport
    ) -> Generation | None:
        """The background base is on the target: the old generation is shipped up to t0, then the new
        one becomes current and follows its pinned incr file from 0. A failed base is raised (the loop
        retries; the rewrite is seen again on the next tick and its base shipped anew)."""
        p, self._pending = self._pending, None
        try:
            gen = p.future.result()
        except BaseException:
            os.close(p.incr_fd)
            raise
        if cur is not None:
            with contextlib.suppress(_Gone):
                self._ship(cur, live, t0, report)
        self.state.start(gen)
        self._replace_followed(_Followed(gen.generation, p.incr_name, p.incr_fd, p.incr_inode))
        report.started.append(p.reason)
        log.warning("archive generation started", extra={"generation": gen.generation, "reason": p.reason})
        return gen

    def base_in_flight(self) -> bool:
        """A new generation's base is being shipped in the background (not adopted yet)."""
        return getattr(self, "_pending", None) is not None

    def close(self) -> None:
        p, self._pending = self._pending, None
        if p is not None:
            with contextlib.suppress(Exception):
                p.future.result()  # an upload under way finishes (a thread cannot be stopped); unused
            os.close(p.incr_fd)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._replace_followed(None)

    def _redis_now(self) -> datetime:
        now = server_time(self.client)
        self.skew_s = now - time.time()
        return datetime.fromtimestamp(now, UTC)

    def redis_now(self) -> datetime:
        """Redis's clock as of now, from the last TIME (for the lag metric, without a round trip)."""
        return utcnow() + timedelta(seconds=self.skew_s)


@dataclass
class _Pending:
    """A rewrite's generation whose base is being shipped; its first incr file is pinned open."""

    reason: str
    incr_name: str
    incr_fd: int
    incr_inode: int
    future: Future


def _seq(name: str) -> int:
    """N of `appendonly.aof.N.base.rdb` / `.N.incr.aof`; -1 if absent."""
    parts = name.split(".")
    return int(parts[-3]) if len(parts) >= 3 and parts[-3].isdigit() else -1


class _Gone(Exception):
    pass


def _role(client: redis.Redis) -> str:
    return str(redis_call(client, client.info, "replication").get("role", "?"))


def _parse_live(text: str, path: Path) -> _Live:
    entries = parse_aof_manifest(text, source=str(path))
    bases = [e for e in entries if e.type == "b"]
    incrs = sorted((e for e in entries if e.type == "i"), key=lambda e: e.seq)
    if not bases or not incrs:
        raise FileChanged(f"{path} names no base or no incr file yet")
    return _Live(text, bases[0], incrs)


def _next_incr(names: list[str], current: str) -> str | None:
    if current in names:
        i = names.index(current)
        return names[i + 1] if i + 1 < len(names) else None
    return None


def clear_staging(staging_dir: Path) -> None:
    """Leftovers of a killed generation start."""
    if staging_dir.is_dir() and not staging_dir.is_symlink():
        shutil.rmtree(staging_dir, ignore_errors=True)
