"""Restore to a point in time from the AOF archive: `backups restore --to-time TIME --target DIR`.

1. **Plan.** The archive's generations and segments come from the history store (the archiver's
   rows: archive_state, archive_segments). Each generation can restore every second from its base's
   time (`base_time`, else when the generation started) to the newest second it archived (the last
   `#TS` of its segments, or the second before `safe_until`, when everything acknowledged was on the
   target); a generation that ended with an AOF rewrite also covers the seconds up to the next one's
   base. TIME picks the newest generation that covers it; a TIME no generation covers is a
   UsageError (exit 2) stating the window (or the gap). Only the segments that can hold a command at
   or before TIME are needed: those that start before the first annotation later than TIME.
2. **Assemble** (assemble.py) in a private directory under docker.snapshot_dir: the base, one incr
   file streamed from the segments (each one's length and sha256 checked: a corrupt segment is
   refused, named, with the newest time before it), a manifest naming the two.
3. **Half a command** at the end (a power cut): the RESP walk cuts the incr file back to the last
   complete command (and out of an unfinished MULTI), and the result says how many bytes went.
4. **Truncate** at TIME with `redis-check-aof --truncate-to-timestamp` in a throwaway container
   (truncate.py); for `latest` the tool only checks. The walk's own offset of the first annotation
   later than TIME must agree with what the tool left.
5. **Prove**: a copy is loaded in a throwaway redis-server (checks/restore_drill.load_in_server:
   as a replica, so nothing expires while it loads), reporting the key count and DEBUG DIGEST.
6. **Lay out** in DIR as a backup restore does (backup/restore.py): never into a directory a Redis
   runs on, a non-empty DIR only with force (its Redis files moved aside), all or nothing.

`#TS` annotations have one-second resolution: TIME means "every write up to the end of that second".
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis_maint.archive import assemble, layout, truncate
from redis_maint.archive.from_target import TargetArchive, archive_source
from redis_maint.archive.layout import SegmentMeta
from redis_maint.archive.state import ArchiveState, Generation
from redis_maint.backup import restore as backup_restore
from redis_maint.backup import stored
from redis_maint.backup.live_redis import DirCheck
from redis_maint.checks import restore_drill
from redis_maint.checks.containers import CheckEnv
from redis_maint.errors import IntegrityError, UsageError
from redis_maint.history.runs import HistoryStore
from redis_maint.progress import Progress
from redis_maint.storage import Target, download
from redis_maint.storage.base import fsync_dir
from redis_maint.timeutil import as_utc, isoformat

Probe = Callable[[Path], DirCheck]
AOF_MANIFEST = f"{assemble.AOF_DIRNAME}/{assemble.MANIFEST}"
_CONTINUES = ("rewrite",)  # the next generation started so: this one's incr file is archived to its end


LATEST = "latest"
BEFORE_RUN_PRECISION = (
    "#TS annotations have one-second resolution: the restore keeps every write up to the end of the "
    "last second that ended before the run started; writes made earlier in the run's own starting "
    "second are not restored"
)


def iso(ts: int | None) -> str | None:
    return None if ts is None else isoformat(datetime.fromtimestamp(ts, UTC))


def canonical_time(value: str) -> str:
    """`latest` or an ISO 8601 datetime (checked here; ValueError says what is wrong)."""
    value = value.strip()
    if value.lower() == LATEST:
        return LATEST
    _parse(value)
    return value


def _parse(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: give ISO 8601 such as 2026-12-01T21:30:05Z (no zone = UTC) or latest"
        ) from None


def zone_assumed(value: str) -> bool:
    return value != LATEST and _parse(value).tzinfo is None


def time_to_ts(value: str) -> int | None:
    """Unix seconds of TIME (no zone: UTC; a fraction is dropped: whole seconds), None for latest."""
    if value == LATEST:
        return None
    return math.floor(as_utc(_parse(value)).timestamp())


def before_run_ts(started_at: datetime) -> int:
    """The last second that ended before `started_at`."""
    return math.floor(as_utc(started_at).timestamp()) - 1


def undone(run: Any) -> dict[str, Any]:
    """What the history row of a --before-run restore records about the run it undoes."""
    return {
        "run_id": run.id,
        "job": run.job,
        "started_at": isoformat(run.started_at),
        "requested_by": run.requested_by,
        "status": run.status,
        "restored_to": iso(before_run_ts(run.started_at)),
    }


@dataclass(frozen=True)
class Span:
    """The seconds one generation can restore, and its segments in archive order."""

    generation: Generation
    segments: list[SegmentMeta]
    start: int
    end: int

    def covers(self, ts: int) -> bool:
        return self.start <= ts <= self.end


@dataclass(frozen=True)
class Plan:
    span: Span
    to_ts: int | None  # None: latest
    segments: list[SegmentMeta]  # the ones needed, in order
    window: tuple[int, int]
    starts: list[int | None] = field(default_factory=list)  # the time in force where each segment starts

    @property
    def generation(self) -> Generation:
        return self.span.generation


def spans(state: ArchiveState | TargetArchive) -> list[Span]:
    """Every generation with its seconds, oldest first."""
    gens = state.generations()
    segs = [state.segments(g.generation) for g in gens]
    found: list[Span] = []
    for i, gen in enumerate(gens):
        start = math.floor(as_utc(gen.base_time or gen.created_at).timestamp())
        last = max((s.last_ts for s in segs[i] if s.last_ts is not None), default=start)
        safe = gen.safe_until and math.floor(as_utc(gen.safe_until).timestamp()) - 1
        end = max(last, safe or start)
        if i + 1 < len(gens) and (gens[i + 1].reason or "").startswith(_CONTINUES):
            # After a rewrite every write goes to the next generation's incr file: until its first
            # annotation, nothing was written that this generation's (archived to its end) lacks.
            first = min((s.first_ts for s in segs[i + 1] if s.first_ts is not None), default=None)
            end = max(end, first - 1 if first is not None else end)
        found.append(Span(gen, segs[i], start, end))
    return found


def plan(state: ArchiveState | TargetArchive, to_ts: int | None) -> Plan:
    """The generation and segments for a restore to `to_ts` (None: latest); UsageError outside the window."""
    found = [s for s in spans(state) if s.generation.base_name]
    if not found:
        raise UsageError(
            f"the AOF archive of instance {state.instance} has no generation, in the history store or on "
            "the target; "
            "enable the archiver (archive.enabled) and wait for its first segment, or restore a backup "
            "(`redis-maint backups list`)"
        )
    window = (found[0].start, found[-1].end)
    if to_ts is None:
        span = found[-1]
    else:
        covering = [s for s in found if s.covers(to_ts)]
        if not covering:
            raise UsageError(_outside(to_ts, window, found))
        span = max(covering, key=lambda s: s.start)
    needed, starts = _needed(span.segments, to_ts)
    return Plan(span, to_ts, needed, window, starts)


def _outside(to_ts: int, window: tuple[int, int], found: list[Span]) -> str:
    where = f"{iso(window[0])} .. {iso(window[1])}"
    if window[0] <= to_ts <= window[1]:
        before = max((s for s in found if s.end < to_ts), key=lambda s: s.end)
        after = min((s for s in found if s.start > to_ts), key=lambda s: s.start)
        return (
            f"{iso(to_ts)} falls in a gap of the AOF archive: generation {before.generation.generation} "
            f"ends at {iso(before.end)}, {after.generation.generation} starts at {iso(after.start)} "
            f"({after.generation.reason}); the archive's window is {where}"
        )
    return (
        f"{iso(to_ts)} is outside the AOF archive's window: {where} (UTC); choose a time inside it, "
        "or restore a backup for an older time (`redis-maint backups list`)"
    )


def _needed(segs: list[SegmentMeta], to_ts: int | None) -> tuple[list[SegmentMeta], list[int | None]]:
    """Segments that may hold a command at or before `to_ts`, and the time in force where each starts."""
    needed, starts, carried = [], [], None
    for seg in segs:
        if to_ts is not None and carried is not None and carried > to_ts:
            break
        needed.append(seg)
        starts.append(carried)
        if seg.last_ts is not None:
            carried = seg.last_ts
    return needed, starts


def check_continuity(p: Plan) -> None:
    """Each incr file's segments start at 0 and follow each other without a gap or an overlap."""
    expect: dict[str, int] = {}
    for i, seg in enumerate(p.segments):
        want = expect.get(seg.incr_file, 0)
        if seg.offset != want:
            raise IntegrityError(
                f"the archive of generation {seg.generation} has a gap in {seg.incr_file}: bytes {want}.."
                f"{seg.offset} are not archived. {_offer(p, i)}"
            )
        expect[seg.incr_file] = seg.end


def _offer(p: Plan, i: int) -> str:
    """The newest time a restore can reach without segment `i`."""
    carried = p.starts[i] if i < len(p.starts) else None
    if carried is not None and carried - 1 >= p.span.start:
        t = carried - 1
        return f"The newest time before it is {iso(t)}: `redis-maint backups restore --to-time {iso(t)} --target DIR`"
    return (
        f"No time in generation {p.generation.generation} can be restored without it (it starts at "
        f"{iso(p.span.start)}); restore an older generation's time or a backup (`redis-maint backups list`)"
    )


@dataclass
class Request:
    directory: Path
    force: bool
    to_ts: int | None
    run_id: int | str
    timeout_s: float
    checkpoint: Callable[[], None] | None = None
    progress: Progress | None = None
    cancel: Any = None
    db: int = 0
    session_pattern: str = "session:*"

    @classmethod
    def bounded_as(
        cls, opts: restore_drill.DrillOptions, directory: Path, *, force: bool, to_ts: int | None
    ) -> Request:
        """A restore bound as a drill of the same run is: its deadline, cancel and progress, and the
        session keys its proof counts."""
        return cls(
            directory=directory,
            force=force,
            to_ts=to_ts,
            run_id=opts.run_id,
            timeout_s=opts.timeout_s,
            checkpoint=opts.checkpoint,
            progress=opts.progress,
            cancel=opts.cancel,
            db=opts.db,
            session_pattern=opts.session_pattern,
        )


def preflight(directory: Path, *, force: bool, probe: Probe) -> tuple[Path, DirCheck]:
    """Refusals before anything is written (UsageError): a Redis runs on DIR, or DIR is not empty."""
    directory = Path(os.path.abspath(directory))
    live = probe(directory)
    if live.live:
        lines = [
            f"a Redis is running on {directory}; --force does not override this. A running Redis "
            "rewrites its files from memory, so it would throw the restored files away. Found:",
            *(f"  - {r.detail}" for r in live.live),
            "Stop it first:",
            *(f"  {cmd}" for cmd in dict.fromkeys(c for r in live.live for c in r.stop)),
            "then run the same restore again with --force.",
        ]
        raise UsageError("\n".join(lines))
    entries = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    if entries and not force:
        raise UsageError(
            f"{directory} is not empty ({', '.join(entries[:5])}); restore into an empty directory, "
            "or pass --force to move the Redis files already there aside"
        )
    return directory, live


def restore(
    env: CheckEnv, target: Target, store: HistoryStore, instance: str, req: Request, *, probe: Probe
) -> dict[str, Any]:
    """Plan, assemble, cut, truncate, prove and lay out; the run's result."""
    t0 = time.monotonic()
    deadline = t0 + req.timeout_s
    directory, live = preflight(req.directory, force=req.force, probe=probe)
    source = archive_source(store, target, instance, req.checkpoint)
    p = plan(source, req.to_ts)
    check_continuity(p)
    work = Path(env.docker.snapshot_dir) / f"pitr-{req.run_id}-{secrets.token_hex(3)}"
    try:
        aof_dir = work / assemble.AOF_DIRNAME
        fetched = _fetch(target, instance, p, aof_dir, req)
        t1 = time.monotonic()
        cut = _cut_tail(aof_dir / assemble.INCR, req.to_ts)
        tool = _truncate(env, work, aof_dir / assemble.INCR, req, cut, deadline)
        t2 = time.monotonic()
        proof = _prove(env, work, req, deadline)
        t3 = time.monotonic()
        files = [
            {"path": f"{assemble.AOF_DIRNAME}/{f.name}", "size": f.stat().st_size}
            for f in sorted(aof_dir.iterdir())
        ]
        moved = _lay_out(work, directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    durations = {"download": round(t1 - t0, 3), "truncate": round(t2 - t1, 3), "prove": round(t3 - t2, 3)}
    durations["total"] = round(time.monotonic() - t0, 3)
    result = _result(p, target, instance, directory, files, moved, fetched, cut, tool, proof, durations, live)
    result["archive_read_from"] = "history" if isinstance(source, ArchiveState) else "target"
    if isinstance(source, TargetArchive):
        result["warnings"] = [
            *result["warnings"],
            f"the history store has no archive rows for instance {instance}: the archive was read from "
            f"{target.uri} (every segment once to plan the restore)",
        ]
    return result


def _fetch(target: Target, instance: str, p: Plan, aof_dir: Path, req: Request) -> dict[str, Any]:
    """The base (sha256 checked) and the needed segments, streamed into one incr file."""
    gen = p.generation
    base = aof_dir / assemble.base_filename(gen.base_name)
    key = layout.base_key(instance, gen.generation, gen.base_name)
    total = sum(s.length for s in p.segments)
    progress = req.progress or Progress()
    progress.start(total or None, "downloading the archive", "bytes")
    try:
        size, sha = download(target, key, base, req.checkpoint)
        if gen.base_sha256 and sha != gen.base_sha256:
            raise IntegrityError(
                f"the base {key} is corrupt: sha256 {sha[:12]}… is not the archived {gen.base_sha256[:12]}…; "
                "no time in this generation can be restored: restore an older time or a backup"
            )
        with open(aof_dir / assemble.INCR, "wb") as out:
            for i, seg in enumerate(p.segments):
                try:
                    assemble.append_segment(
                        target,
                        seg.key(instance),
                        out,
                        length=seg.length,
                        sha256=seg.sha256,
                        checkpoint=req.checkpoint,
                        on_bytes=progress.advance,
                    )
                except assemble.CorruptSegment as exc:
                    raise IntegrityError(f"{exc}; the restore refuses it. {_offer(p, i)}") from None
            out.flush()
            os.fsync(out.fileno())
    finally:
        progress.finish()
    assemble.write_manifest(aof_dir, gen.base_name)
    return {"base": {"key": key, "size": size, "sha256": sha}, "segments": len(p.segments), "bytes": total}


def _cut_tail(incr: Path, to_ts: int | None) -> tuple[assemble.Walk, dict[str, Any] | None]:
    """Half a command at the end (a power cut): back to the last complete one."""
    w = assemble.walk(incr, after=to_ts)
    if not w.dropped:
        return w, None
    assemble.cut(incr, w.complete_up_to)
    return w, {
        "bytes": w.dropped,
        "at": w.complete_up_to,
        "why": w.tail,
        "note": f"the archived AOF ends with {w.tail}: {w.dropped} bytes after the last complete command "
        f"(offset {w.complete_up_to}) were cut off, as `redis-check-aof --fix` would",
    }


def _truncate(env: CheckEnv, work: Path, incr: Path, req: Request, cut, deadline: float) -> dict[str, Any]:
    w, _ = cut
    run = dict(run_id=req.run_id, cancel=req.cancel, timeout_s=_left(deadline))
    done = truncate.run_tool(env, work, AOF_MANIFEST, req.to_ts, **run)
    if done.nothing_before:  # TIME is before the generation's first write: the base alone
        assemble.cut(incr, w.first_after or 0)
        done = truncate.run_tool(env, work, AOF_MANIFEST, None, **run)
    want = w.complete_up_to if w.first_after is None else w.first_after
    size = incr.stat().st_size
    if req.to_ts is not None and size != want:
        raise IntegrityError(
            f"redis-check-aof --truncate-to-timestamp {req.to_ts} left {size} bytes of the incr file, but "
            f"the first annotation later than that time is at offset {want}; the restore stops"
        )
    tool = "redis-check-aof" + ("" if req.to_ts is None else f" --truncate-to-timestamp {req.to_ts}")
    return {"tool": tool, "verdict": done.verdict, "incr_bytes": size, "output": done.output}


def _prove(env: CheckEnv, work: Path, req: Request, deadline: float) -> dict[str, Any]:
    """Load a copy in a throwaway redis-server: the loaded keys and the dataset's DEBUG DIGEST."""
    src, proof = work / assemble.AOF_DIRNAME, work / "proof" / assemble.AOF_DIRNAME
    proof.mkdir(parents=True)
    for f in src.iterdir():  # Redis never writes to a base; it appends to the incr file
        if ".base." in f.name:
            os.link(f, proof / f.name)
        else:
            shutil.copyfile(f, proof / f.name)
    opts = restore_drill.DrillOptions(
        run_id=req.run_id,
        timeout_s=_left(deadline),
        session_pattern=req.session_pattern,
        db=req.db,
        cancel=req.cancel,
        checkpoint=req.checkpoint,
        progress=req.progress,
    )
    manifest = {"aof_manifest": AOF_MANIFEST, "rdb": None}
    server = restore_drill.load_in_server(env, work / "proof", manifest, opts, deadline)
    if server.get("loaded_from") != "aof":
        raise IntegrityError(
            f"the proof server did not load the assembled AOF (loaded from {server.get('loaded_from')})"
        )
    keep = ("keys", "loaded_keys", "expired_keys", "sessions", "digest", "load_s", "loaded_from", "db_keys")
    return {k: server.get(k) for k in keep}


def _lay_out(work: Path, directory: Path) -> str | None:
    """Into DIR as a backup restore does: staged inside DIR, old Redis files aside, renamed in."""
    created = backup_restore._make_dirs(directory)
    staged = directory / f"{backup_restore.STAGING_MARK}{secrets.token_hex(4)}"
    try:
        staged.mkdir()
        shutil.move(str(work / assemble.AOF_DIRNAME), str(staged / assemble.AOF_DIRNAME))
        names = {"files": [{"path": AOF_MANIFEST}], "aof_manifest": AOF_MANIFEST, "rdb": None}
        try:
            moved = backup_restore._swap_in(directory, staged, names)
            fsync_dir(directory)
            return moved
        except OSError as exc:
            raise stored.local_write_error(exc, directory) from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        backup_restore._remove_dirs(created)
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _result(p, target, instance, directory, files, moved, fetched, cut, tool, proof, durations, live):
    gen = p.generation
    start = ["redis-server", "--dir", str(directory), "--appendonly", "yes"]
    expect = proof["keys"]
    return {
        "id": gen.generation,
        "generation": gen.generation,
        "to_time": "latest" if p.to_ts is None else iso(p.to_ts),
        "to_ts": p.to_ts,
        "window": {"start": iso(p.window[0]), "end": iso(p.window[1])},
        "target": target.uri_for(layout.generation_prefix(instance, gen.generation)),
        "dir": str(directory),
        "files": files,
        "moved_aside": moved,
        "appendonly": "yes",
        "base": fetched["base"],
        "segments": fetched["segments"],
        "segment_bytes": fetched["bytes"],
        "tail_cut": cut[1],
        "truncation": tool,
        "proof": proof,
        "durations_s": durations,
        "next": " ".join(start),
        "expected_dbsize": expect,
        "check_after_start": [
            f"redis-cli DBSIZE  # expect {expect} (fewer if TTLs ran out since)",
            f"redis-cli DEBUG DIGEST  # expect {proof['digest']} (the proof server's, before any TTL ran out)",
        ],
        "warnings": live.notes,
    }


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        from redis_maint.errors import JobTimeoutError

        raise JobTimeoutError("the restore to a time ran out of time; raise jobs.backup_restore.timeout")
    return left
