"""A rewrite's base ships in the background (the archiver's loop): while it uploads, the old generation
keeps following the live incr file and safe_until keeps moving; then the new generation takes over
with no gap. On a real redis-server (appendonly yes, aof-timestamp-enabled yes) and a local target."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from redis_maint.archive import layout
from redis_maint.archive.archiver import Archiver, ArchiverOptions
from redis_maint.archive.state import ArchiveState
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from tests.support.common import wait_for
from tests.support.services.redis import wait_aof_rewrite

INSTANCE = "default"


class SlowBase:
    """The real local target, whose base uploads wait until `release` is set."""

    def __init__(self, target):
        self.target, self.release, self.waiting = target, threading.Event(), threading.Event()
        self.release.set()

    def __getattr__(self, name):
        return getattr(self.target, name)

    def put_file(self, key, path, **kw):
        if "/base/" in key:
            self.waiting.set()
            assert self.release.wait(30)
        return self.target.put_file(key, path, **kw)


def write(client, n: int, prefix: str) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"{prefix}{i}", os.urandom(100).hex(), ex=86400)
    pipe.execute()


def incr_files(server) -> list[str]:
    manifest = (server.dir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    return [line.split()[1] for line in manifest.splitlines() if line.endswith("type i")]


def archived(target, state: ArchiveState, generation: str, incr_file: str) -> bytes:
    """One incr file's bytes in a generation: its segments back to back (no gap), each as recorded."""
    out = b""
    for s in (s for s in state.segments(generation) if s.incr_file == incr_file):
        assert s.offset == len(out), f"gap or overlap at {s.offset} (have {len(out)})"
        data = b"".join(target.read_chunks(s.key(INSTANCE)))
        assert hashlib.sha256(data).hexdigest() == s.sha256
        out += data
    return out


@pytest.mark.parametrize("seen", ["between-ticks", "mid-rewrite"])
def test_the_old_generation_keeps_moving_while_a_rewrites_base_ships(redis_factory, tmp_path, seen):
    # between-ticks: the rewrite starts and ends between two ticks (the archiver never saw its incr file
    # in the manifest); mid-rewrite: a tick runs while the rewrite is under way and follows into it.
    slow = {"rdb-key-save-delay": "20000"} if seen == "mid-rewrite" else {}  # 20 ms per key: ~2 s
    server = redis_factory("primary", args={"aof-timestamp-enabled": "yes", **slow})
    client = server.client()
    store = HistoryStore(f"sqlite:///{tmp_path}/history.db")
    target = SlowBase(open_target(str(tmp_path / "target")))
    options = ArchiverOptions(INSTANCE, server.dir, tmp_path / "staging", interval_s=0.2)
    state = ArchiveState(store, INSTANCE)
    archiver = Archiver(options, client, target, state)
    archiver.background_bases = True  # as the loop sets it
    try:
        archiver.tick()  # the first generation (shipped inline: not a rewrite)
        old = state.current()
        write(client, 100, "before:")
        archiver.tick()
        old_incr = incr_files(server)[-1]
        target.release.clear()
        client.bgrewriteaof()
        if seen == "mid-rewrite":
            wait_for(lambda: len(incr_files(server)) == 2, timeout=10)
            write(client, 20, "during:")
            archiver.tick()  # follows into the rewrite's incr file
        wait_aof_rewrite(client, timeout=30)
        new_incr = incr_files(server)[-1]
        write(client, 50, "after:")
        t_before = client.time()[0]
        report = archiver.tick()  # sees the rewrite; its base is held up on its way to the target
        assert target.waiting.wait(10)
        assert report.started == []
        now = state.current()
        assert now.generation == old.generation and now.incr_file == new_incr
        assert now.safe_until.timestamp() >= t_before  # the lag did not wait for the base
        write(client, 50, "later:")
        t_later = client.time()[0]
        archiver.tick()
        assert state.current().safe_until.timestamp() >= t_later
        # The old chain: its base, the old incr file whole (Redis deleted it), the new one so far.
        assert not (server.dir / "appendonlydir" / old_incr).exists()
        assert (
            archived(target, state, old.generation, new_incr)
            == ((server.dir / "appendonlydir" / new_incr).read_bytes()[: state.current().offset])
        )
        target.release.set()
        wait_for(lambda: archiver._pending.future.done(), timeout=30)
        write(client, 10, "last:")
        report = archiver.tick()
    finally:
        target.release.set()
        archiver.close()
    assert len(report.started) == 1 and report.started[0].startswith("rewrite:")
    new = state.current()
    assert new.generation != old.generation and new.base_name != old.base_name
    assert {g.generation: g.status for g in state.generations()}[old.generation] == "closed"
    base = target.head(layout.base_key(INSTANCE, new.generation, new.base_name))
    assert (
        b"".join(target.read_chunks(base.key)) == (server.dir / "appendonlydir" / new.base_name).read_bytes()
    )
    # The new generation holds the live incr file exactly, from 0: base + increments without a gap.
    assert (
        archived(target, state, new.generation, new_incr)
        == (server.dir / "appendonlydir" / new_incr).read_bytes()
    )
    assert new.safe_until is not None


def test_a_lone_tick_still_ships_the_rewrites_base_before_it_returns(redis_factory, tmp_path):
    server = redis_factory("primary", args={"aof-timestamp-enabled": "yes"})
    client = server.client()
    state = ArchiveState(HistoryStore(f"sqlite:///{tmp_path}/history.db"), INSTANCE)
    options = ArchiverOptions(INSTANCE, server.dir, tmp_path / "staging", interval_s=0.2)
    archiver = Archiver(options, client, open_target(str(tmp_path / "target")), state)
    try:
        archiver.tick()
        write(client, 20, "s:")
        client.bgrewriteaof()
        wait_aof_rewrite(client)
        report = archiver.tick()  # `archive run --once`: everything inline
    finally:
        archiver.close()
    assert report.started and report.started[0].startswith("rewrite:")
    assert archiver._pending is None
