"""Faults the AOF archiver must survive, on a real redis-server (appendonly yes,
aof-timestamp-enabled yes), moto's S3 server, a real tmpfs and restores proven in Docker:
SIGKILL during an upload, Redis restarted, Redis replaced by a restore, a full disk, and an archiver
paused past its lease (fencing)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import redis

from redis_maint.archive import layout
from redis_maint.archive.loop import Loop
from redis_maint.archive.state import ArchiveState
from redis_maint.archive.status import problem_path, read_problem
from redis_maint.errors import LeaseLostError, MaintenanceError
from redis_maint.history.leases import Lease
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from tests.support.archive_faults import (
    AOF_ARGS,
    INSTANCE,
    Writer,
    concatenated,
    digest,
    fill,
    late_segments,
    live_incr,
    make_archiver,
    recorded_segment_keys,
    small_tmpfs,
    stored_segment_keys,
    write,
)
from tests.support.common import ROOT, in_ci, json_out, wait_for


def no_tmpfs() -> None:
    """A full disk is simulated with a tiny tmpfs: under CI=true a machine that cannot mount one fails."""
    if in_ci():
        pytest.fail("this machine cannot mount a tmpfs (the test runs as root under CI=true)")
    pytest.skip("this machine cannot mount a tmpfs (needs root)")


@pytest.fixture
def store(tmp_path):
    return HistoryStore(os.environ["REDIS_MAINT_HISTORY_URL"])


@pytest.fixture
def primary(redis_factory, monkeypatch):
    # appendfsync always: with everysec Redis may postpone writing acknowledged commands to the file by
    # up to 2 s while a background fsync is slow, and these tests compare the file with the live data.
    server = redis_factory("primary", args={**AOF_ARGS, "appendfsync": "always"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    return server


def restore_latest(cli, tmp_path) -> dict:
    out = tmp_path / f"restore-{time.monotonic_ns()}"
    return json_out(cli("backups", "restore", "--to-time", "latest", "--target", str(out), "--json"))


def restore_to(cli, tmp_path, when: str) -> dict:
    out = tmp_path / f"restore-{time.monotonic_ns()}"
    return json_out(cli("backups", "restore", "--to-time", when, "--target", str(out), "--json"))


# -- (1) SIGKILL during an upload -------------------------------------------------------------------
def test_sigkill_during_an_s3_upload_then_restart_restores_exactly_the_source(
    bucket, s3, primary, store, cli, tmp_path, check_image
):
    """The archiver's PUT hangs on a frozen S3 server (SIGSTOP on moto) and the archiver is killed
    with SIGKILL right then; moto resumes (the PUT may still land: a segment the state never
    recorded). The restarted archiver (a new lease, a new fencing token) uploads those bytes again
    under its own key: no gap; the killed one's late segment, if it landed, stays off the chain
    beside it; and a restore to latest has the source's DEBUG DIGEST."""
    env = {**os.environ, "REDIS_MAINT_ARCHIVE__INTERVAL": "0.2s", "REDIS_MAINT_LOG_LEVEL": "WARNING"}
    state = ArchiveState(store, INSTANCE)

    def start():
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), "archive", "run"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    with Writer(primary.client()):
        proc = start()
        wait_for(lambda: state.current() is not None and state.current().segments > 0, what="a segment")
        s3.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.0)  # the archiver's next PUT is on the wire and waits for an answer
            frozen_at = state.current().offset
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            s3.proc.send_signal(signal.SIGCONT)
        assert state.current().offset == frozen_at  # nothing recorded without its upload
        proc = start()
        wait_for(lambda: state.current().offset > frozen_at, timeout=20, what="the restarted archiver")
    size = live_incr(primary).stat().st_size
    wait_for(lambda: state.current().offset == size, timeout=20, what="catch-up")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr.read().decode()[-2000:]
    gen = state.current()
    assert [g.generation for g in state.generations()] == [gen.generation]  # continuity kept
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    assert concatenated(target, store, gen.generation, gen.incr_file) == live_incr(primary).read_bytes()
    late = late_segments(target, store, gen.generation)
    assert [layout.parse_segment_key(k).offset for k in late] in (
        [],
        [frozen_at],
    )  # the frozen PUT, if stored
    body = restore_latest(cli, tmp_path)
    assert body["proof"]["digest"] == digest(primary.client())
    assert body["proof"]["keys"] == primary.client().dbsize()


# -- (2) Redis restarts -----------------------------------------------------------------------------
def fresh_second(client, after: int) -> int:
    while True:
        sec, micros = client.time()
        if sec > after and micros < 400_000:
            return sec
        time.sleep(0.02)


def test_redis_restarted_on_its_own_files_keeps_the_generation_and_restores_across_it(
    primary, store, cli, tmp_path, check_image
):
    """SIGTERM and a start on the same dir: Redis 7 appends to the same incr file (same inode), so
    the archive continues in the same generation, and a restore to an instant after the restart
    equals the source at that instant."""
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    archiver = make_archiver(primary, store, target, tmp_path)
    archiver.tick()
    write(primary.client(), 200, prefix="before:")
    archiver.tick()
    incr_before = live_incr(primary)
    inode = incr_before.stat().st_ino
    gen = ArchiveState(store, INSTANCE).current()
    write(primary.client(), 50, prefix="tail:")  # written before the stop, archived after the restart
    primary.stop()
    with pytest.raises((MaintenanceError, redis.RedisError)):
        archiver.tick()  # Redis is down: the tick fails, the loop would retry
    assert ArchiveState(store, INSTANCE).current().offset == gen.offset  # position kept
    primary.start()
    incr_after = live_incr(primary)
    assert (incr_after.name, incr_after.stat().st_ino) == (incr_before.name, inode)
    sec = fresh_second(primary.client(), int(time.time()))
    write(primary.client(), 100, prefix="after:")
    assert primary.client().time()[0] == sec
    at_sec = (digest(primary.client()), primary.client().dbsize())
    archiver.tick()
    fresh_second(primary.client(), sec)
    write(primary.client(), 100, prefix="later:")
    report = archiver.tick()
    archiver.close()
    assert report.started == []
    now = ArchiveState(store, INSTANCE)
    assert [g.generation for g in now.generations()] == [gen.generation]
    assert concatenated(target, store, gen.generation, incr_after.name) == incr_after.read_bytes()
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = restore_to(cli, tmp_path, when)
    assert (body["proof"]["digest"], body["proof"]["keys"]) == at_sec


# -- (3) Redis replaced by a restore ----------------------------------------------------------------
def test_redis_replaced_by_a_restore_starts_a_generation_and_closes_the_old_one_whole(
    primary, store, cli, tmp_path, check_image
):
    """Redis stops; its appendonlydir is replaced by an older copy (a restore: same names, other
    inodes); Redis starts on it. The archiver ships the old file's last bytes (still open) into the
    old generation, starts a new one saying why, archives nothing twice, and the archive restores
    the restored Redis exactly."""
    client = primary.client()
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    archiver = make_archiver(primary, store, target, tmp_path)
    archiver.tick()
    write(client, 200, prefix="a:")
    archiver.tick()
    saved = tmp_path / "saved-appendonlydir"
    shutil.copytree(primary.dir / "appendonlydir", saved)  # the "backup" restored below
    write(client, 200, prefix="b:")
    archiver.tick()
    write(client, 100, prefix="c:")  # not archived before Redis stops
    old = ArchiveState(store, INSTANCE).current()
    primary.stop()
    old_bytes = live_incr(primary).read_bytes()
    assert old.offset < len(old_bytes)
    shutil.rmtree(primary.dir / "appendonlydir")
    shutil.copytree(saved, primary.dir / "appendonlydir")
    primary.start()
    report = archiver.tick()
    state = ArchiveState(store, INSTANCE)
    new = state.current()
    assert len(report.started) == 1 and report.started[0].startswith("replaced:"), report.started
    assert new.generation != old.generation and new.reason == report.started[0]
    gens = {g.generation: g for g in state.generations()}
    assert gens[old.generation].status == "closed"
    # The old generation holds the old file whole, its tail included; nothing stored twice.
    assert concatenated(target, store, old.generation, old.incr_file) == old_bytes
    for g in (old.generation, new.generation):
        assert stored_segment_keys(target, g) == recorded_segment_keys(store, g)
    write(client, 50, prefix="d:")
    archiver.tick()
    archiver.close()
    assert min(s.offset for s in state.segments(new.generation)) == 0
    assert concatenated(target, store, new.generation, new.incr_file) == live_incr(primary).read_bytes()
    body = restore_latest(cli, tmp_path)
    assert body["generation"] == new.generation
    assert (body["proof"]["digest"], body["proof"]["keys"]) == (digest(client), client.dbsize())


# -- (4) the disk fills -----------------------------------------------------------------------------
def test_a_full_staging_disk_is_reported_the_position_kept_and_the_archive_catches_up(
    primary, store, cli, tmp_path
):
    """A rewrite needs the new base staged; the staging dir is a full tmpfs (ENOSPC). The loop logs
    it, `archive status` shows it as `problem`, the old generation keeps its position; once space
    returns the new generation starts and everything written meanwhile is archived."""
    with small_tmpfs(tmp_path / "small", "256k") as small:
        if small is None:
            no_tmpfs()
        client = primary.client()
        target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
        problem = problem_path(tmp_path / "state", INSTANCE)
        archiver = make_archiver(
            primary,
            store,
            target,
            tmp_path,
            staging_dir=small / "staging",
            problem_file=problem,
            backoff_max_s=0.3,
        )
        archiver.tick()
        write(client, 100)
        archiver.tick()
        old = ArchiveState(store, INSTANCE).current()
        ballast = fill(small)
        client.bgrewriteaof()
        wait_for(lambda: live_incr(primary).name != old.incr_file, what="the rewrite's new incr file")
        write(client, 100, prefix="during:")
        stop = threading.Event()
        loop = Loop(archiver, stop)
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: loop.failures >= 2, what="failing ticks")
            assert (
                "No space left on device" in loop.last_error
                and "cannot stage the AOF base" in loop.last_error
            )
            status = json_out(cli("archive", "status", "--json"))
            assert status["generation"] == old.generation  # the position is kept
            assert status["problem"]["failures"] >= 1 and "No space left" in status["problem"]["error"]
            assert status["problem"]["position"]["generation"] == old.generation
            ballast.unlink()
            wait_for(
                lambda: ArchiveState(store, INSTANCE).current().generation != old.generation, what="recovery"
            )
            size = live_incr(primary).stat().st_size
            wait_for(lambda: ArchiveState(store, INSTANCE).current().offset == size, what="catch-up")
        finally:
            stop.set()
            thread.join(10)
        new = ArchiveState(store, INSTANCE).current()
        assert new.reason.startswith("rewrite:")
        assert concatenated(target, store, new.generation, new.incr_file) == live_incr(primary).read_bytes()
        assert read_problem(problem) is None  # cleared by the first tick that succeeded
        assert json_out(cli("archive", "status", "--json"))["problem"] is None


def test_redis_refusing_writes_on_a_full_data_disk_leaves_the_archive_whole(redis_factory, store, tmp_path):
    """Redis's own data disk fills: it refuses writes (MISCONF) and the archiver has nothing new to
    ship (no tick fails, nothing acknowledged is missing); with space back Redis writes again and
    the same generation goes on."""
    with small_tmpfs(tmp_path / "data", "2m") as data:
        if data is None:
            no_tmpfs()
        # everysec (the shipped setting): with `always` Redis exits on an AOF write error instead
        server = redis_factory("data", args=AOF_ARGS)
        client = server.client()
        target = open_target(str(tmp_path / "target"))
        archiver = make_archiver(server, store, target, tmp_path)
        archiver.tick()
        write(client, 50)
        archiver.tick()
        gen = ArchiveState(store, INSTANCE).current()
        ballast = fill(data)
        with pytest.raises(redis.ResponseError, match=r"MISCONF|No space"):
            for i in range(200):
                write(client, 50, prefix=f"full{i}:")
        report = archiver.tick()  # no failure: what Redis wrote whole is shipped, nothing else
        assert report.started == [] and report.safe_until is not None
        ballast.unlink()
        wait_for(lambda: _writes(client), what="Redis accepting writes again")

        def caught_up() -> bool:
            archiver.tick()
            return ArchiveState(store, INSTANCE).current().offset == live_incr(server).stat().st_size

        wait_for(caught_up, what="the archive at the file's end")
        archiver.close()
        now = ArchiveState(store, INSTANCE).current()
        assert now.generation == gen.generation
        assert concatenated(target, store, gen.generation, now.incr_file) == live_incr(server).read_bytes()


def _writes(client) -> bool:
    try:
        client.set("probe", "1")
        return True
    except redis.ResponseError:
        return False


# -- fencing ----------------------------------------------------------------------------------------
def leased_archiver(primary, store, target, tmp_path, ttl_s: float):
    """An archiver under a fresh take of the `archive@default` lease: (lease, archiver)."""
    lease = Lease.acquire(store, "archive", timedelta(seconds=ttl_s), scope=INSTANCE)
    state = ArchiveState(store, INSTANCE, guard=lease.fenced, fence=lease.fence)
    return lease, make_archiver(primary, store, target, tmp_path, state=state)


def test_an_archiver_paused_past_its_lease_neither_uploads_nor_moves_the_position(primary, store, tmp_path):
    """Archiver A holds the `archive@default` lease, then stalls (no heartbeat) past its expiry;
    archiver B takes the lease over (a larger fencing token) and archives. When A wakes up, its tick
    stops at the fence: no segment uploaded, the position B recorded untouched."""
    client = primary.client()
    target = open_target(str(tmp_path / "target"))
    lease_a, a = leased_archiver(primary, store, target, tmp_path, ttl_s=1)
    a.tick()
    write(client, 100)
    a.tick()
    time.sleep(1.3)  # A is paused: its lease lapses
    lease_b, b = leased_archiver(primary, store, target, tmp_path, ttl_s=30)
    assert lease_b.fence > lease_a.fence
    write(client, 100, prefix="b:")
    b.tick()
    at_b = ArchiveState(store, INSTANCE).current()
    write(client, 100, prefix="while-a-wakes:")
    with pytest.raises(LeaseLostError, match="taken over"):
        a.tick()
    a.close()
    assert ArchiveState(store, INSTANCE).current() == at_b
    assert stored_segment_keys(target, at_b.generation) == recorded_segment_keys(store, at_b.generation)
    b.tick()
    b.close()
    lease_b.release()
    cur = ArchiveState(store, INSTANCE).current()
    assert concatenated(target, store, cur.generation, cur.incr_file) == live_incr(primary).read_bytes()
    from redis_maint.history import db

    with store.engine.connect() as conn:
        fences = {r.fence for r in conn.execute(db.archive_state.select())}
    assert fences == {lease_b.fence}


class HeldUploads:
    """A target whose segment uploads, once `hold` is set, wait for `release`: an upload in flight."""

    def __init__(self, target):
        self.target = target
        self.hold, self.entered, self.release = threading.Event(), threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.target, name)

    def put_bytes(self, key, data, **kw):
        if self.hold.is_set() and key.endswith(".seg"):
            self.entered.set()
            assert self.release.wait(30)
        return self.target.put_bytes(key, data, **kw)


def test_an_upload_in_flight_when_the_lease_is_lost_lands_beside_the_new_holders_segment(
    primary, store, tmp_path
):
    """A's segment PUT is in flight (after its lease check) while its lease lapses; B takes over and
    archives the same offset, longer. A's PUT then completes: under A's fencing token, so B's recorded
    segment is untouched, and the archive read from the target alone leaves A's out too."""
    from redis_maint.archive.state import StateConflictError

    client = primary.client()
    target = open_target(str(tmp_path / "target"))
    held = HeldUploads(target)
    lease_a, a = leased_archiver(primary, store, held, tmp_path, ttl_s=3)
    a.tick()
    write(client, 100)
    a.tick()
    write(client, 50, prefix="in-flight:")
    held.hold.set()
    failures: list[BaseException] = []

    def tick_a() -> None:
        try:
            a.tick()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=tick_a)
    thread.start()
    assert held.entered.wait(10), "A never started its upload"
    time.sleep(3.3)  # A's lease lapses while its PUT hangs
    lease_b, b = leased_archiver(primary, store, target, tmp_path, ttl_s=30)
    write(client, 50, prefix="b:")  # B's segment at A's offset holds more than A's
    b.tick()
    held.release.set()
    thread.join(30)
    assert len(failures) == 1 and isinstance(failures[0], LeaseLostError | StateConflictError), failures
    b.tick()
    a.close()
    b.close()
    lease_b.release()
    cur = ArchiveState(store, INSTANCE).current()
    assert concatenated(target, store, cur.generation, cur.incr_file) == live_incr(primary).read_bytes()
    late = late_segments(target, store, cur.generation)  # also: the target alone reads B's chain
    assert [layout.parse_segment_key(k).fence for k in late] == [lease_a.fence]


def test_archive_status_reports_no_problem_when_ticks_succeed(primary, cli):
    write(primary.client(), 10)
    assert cli("archive", "run", "--once").exit_code == 0
    status = json.loads(cli("archive", "status", "--json").stdout)
    assert status["problem"] is None and status["generation"] is not None
    assert layout.is_generation_id(status["generation"])
