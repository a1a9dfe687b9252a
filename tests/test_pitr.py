"""Restore to a point in time from the AOF archive: `backups restore --to-time/--before-run`.

A real redis-server (appendonly yes, aof-timestamp-enabled yes) runs a workload whose seconds the
test knows: each step waits for a fresh second on Redis's own clock, writes, sets, overwrites and
deletes keys (no TTLs), and records DEBUG DIGEST and the key count. The archiver (redis_maint.archive)
ships the incr file after each step, and an AOF rewrite in the middle starts a second generation.
Restores go through the CLI, truncate in a real container and are proven by loading them in a
throwaway redis-server: its DEBUG DIGEST must equal the source's at that second.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import boto3
import pytest

from redis_maint.archive import assemble
from redis_maint.archive.state import ArchiveState
from redis_maint.errors import IntegrityError
from redis_maint.storage import open_target
from tests.support.common import json_out
from tests.support.history import current_store
from tests.support.pitr_workload import AOF_ARGS, INSTANCE, Workload, iso, run_workload
from tests.support.services.redis import RedisServer

# ---- the RESP walk (no services) --------------------------------------------------------------

CMD = b"*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\n1\r\n"
MULTI, EXEC = b"*1\r\n$5\r\nMULTI\r\n", b"*1\r\n$4\r\nEXEC\r\n"


def _walk(tmp_path: Path, data: bytes, after: int | None = None) -> assemble.Walk:
    path = tmp_path / "incr.aof"
    path.write_bytes(data)
    return assemble.walk(path, after=after)


def test_walk_finds_the_last_complete_command_and_the_annotations(tmp_path):
    data = b"#TS:100\r\n" + CMD + b"#TS:102\r\n" + CMD + CMD
    w = _walk(tmp_path, data, after=101)
    assert (w.complete_up_to, w.commands, w.tail) == (len(data), 3, None)
    assert (w.first_ts, w.last_ts, w.first_after) == (100, 102, 9 + len(CMD))


@pytest.mark.parametrize("cut", [1, 5, 12, len(CMD) - 1])
def test_walk_cuts_half_a_command_at_the_end(tmp_path, cut):
    good = b"#TS:100\r\n" + CMD
    w = _walk(tmp_path, good + CMD[:cut])
    assert w.complete_up_to == len(good) and w.dropped == cut
    assert "ends inside" in w.tail


def test_walk_cuts_an_unfinished_multi(tmp_path):
    good = b"#TS:100\r\n" + CMD + MULTI + CMD + EXEC + b"#TS:101\r\n"
    w = _walk(tmp_path, good + MULTI + CMD)
    assert w.complete_up_to == len(good) and w.commands == 4 and w.last_ts == 101
    assert w.tail == "a MULTI block without its EXEC"


def test_walk_refuses_bad_bytes_that_are_not_a_cut_tail(tmp_path):
    with pytest.raises(IntegrityError, match="not an AOF command at offset"):
        _walk(tmp_path, CMD + b"garbage\r\n" + CMD)


@pytest.fixture(scope="module")
def _archived_once(tmp_path_factory):
    """One workload for the local-target tests (they only read it, or undo what they change)."""
    from redis_maint.history.runs import HistoryStore

    root = tmp_path_factory.mktemp("pitr")
    server = RedisServer(dir=root / "source", args=AOF_ARGS).start()
    store = HistoryStore(f"sqlite:///{root}/history.db")
    target = open_target(str(root / "backups"))
    try:
        w = run_workload(server, store, target, root, steps=6, rewrite_after=2)
        yield w, root
        w.archiver.close()
    finally:
        server.stop()


@pytest.fixture
def local_archive(_archived_once, monkeypatch, check_image):
    """The shared workload, with the CLI's settings pointing at its Redis, history and target."""
    w, root = _archived_once
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", f"sqlite:///{root}/history.db")
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", str(root / "backups"))
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", w.server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(w.server.dir))
    return w


def restore(cli, tmp_path, *args: str):
    out = tmp_path / f"restore-{time.monotonic_ns()}"
    return out, cli("backups", "restore", *args, "--target", str(out), "--json")


def test_restore_to_each_instant_gives_the_dataset_of_that_second(
    local_archive, cli, tmp_path, no_leftovers, redis_factory
):
    w = local_archive
    gens = ArchiveState(w.store, INSTANCE).generations()
    assert len(gens) == 2 and gens[1].reason.startswith("rewrite")
    chosen, outs = [], []
    for n, (sec, digest, keys) in enumerate(w.instants[:4] + w.instants[-1:]):  # both generations
        when = iso(sec).removesuffix("Z") if n == 1 else iso(sec)  # no zone: UTC, and said so
        out, result = restore(cli, tmp_path, "--to-time", when)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        chosen.append(body["generation"])
        outs.append(out)
        assert body["to_time"] == iso(sec)
        assert ("the time has no zone: taken as UTC" in body["warnings"]) == (n == 1)
        assert (body["proof"]["digest"], body["proof"]["keys"]) == (digest, keys), f"at {iso(sec)}"
        assert body["truncation"]["verdict"] == "ok"
        assert sorted(os.listdir(out / "appendonlydir")) == [
            "appendonly.aof.1.base.rdb",
            "appendonly.aof.1.incr.aof",
            "appendonly.aof.manifest",
        ]
    # The generation chosen follows the rewrite: the first instants from the first one, the last from the second.
    assert (chosen[0], chosen[-1]) == (gens[0].generation, gens[1].generation)
    # A real Redis started on a restored directory serves exactly that second's dataset.
    sec, digest, keys = w.instants[1]
    restored = redis_factory(outs[1].name, args={**AOF_ARGS, "dir": str(outs[1])})
    assert restored.client().execute_command("DEBUG", "DIGEST").decode() == digest
    assert restored.client().dbsize() == keys


def test_latest_restores_everything_archived(local_archive, cli, tmp_path):
    w = local_archive
    _, result = restore(cli, tmp_path, "--to-time", "latest")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["to_time"] == "latest" and body["tail_cut"] is None
    assert body["proof"]["digest"] == w.instants[-1][1]


def test_a_time_outside_the_window_exits_2_naming_the_window(local_archive, cli, tmp_path):
    w = local_archive
    spans = [iso(w.instants[-1][0] + 3600), "2001-01-01T00:00:00Z"]
    recorded = len(current_store().list(job="backup-restore"))
    for when in spans:
        out, result = restore(cli, tmp_path, "--to-time", when)
        assert result.exit_code == 2, result.output
        assert "outside the AOF archive's window" in result.stderr and when in result.stderr
        assert re.search(r"window: \S+Z \.\. \S+Z \(UTC\)", result.stderr), result.stderr
        assert not out.exists()
    assert len(current_store().list(job="backup-restore")) == recorded  # nothing recorded
    bad = restore(cli, tmp_path, "--to-time", "yesterday-ish")[1]
    assert bad.exit_code == 2 and "is not a time" in bad.stderr


def test_a_corrupt_segment_is_refused_named_and_the_newest_time_before_it_offered(
    local_archive, cli, tmp_path
):
    w = local_archive
    gen = ArchiveState(w.store, INSTANCE).generations()[1]
    segs = [s for s in ArchiveState(w.store, INSTANCE).segments(gen.generation) if s.first_ts is not None]
    victim = segs[-1]  # the last step's writes: earlier seconds of this generation stay restorable
    path = Path(os.environ["REDIS_MAINT_TARGET__URI"]) / victim.key(INSTANCE)
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        _, result = restore(cli, tmp_path, "--to-time", iso(w.instants[-1][0]))
    finally:
        path.write_bytes(original)  # the other tests share this archive
    assert result.exit_code == 1
    assert victim.key(INSTANCE) in result.stderr and "is corrupt" in result.stderr
    offered_time = re.search(r"The newest time before it is (\S+Z)", result.stderr)[1]
    assert offered_time == iso(segs[-2].last_ts - 1)  # the second before the segment's own first one
    retry = restore(cli, tmp_path, "--to-time", offered_time)[1]
    assert retry.exit_code == 0, retry.output
    expected = [d for s, d, _ in w.instants if iso(s) <= offered_time][-1]
    assert json.loads(retry.stdout)["proof"]["digest"] == expected


def test_half_a_command_at_the_end_of_the_archive_is_cut_and_said(pitr_source, cli, tmp_path, check_image):
    """A power cut left half a command at the end of the incr file, and it was archived (the archiver
    ships a file's tail as it is once nothing more can be appended)."""
    w = run_workload(
        pitr_source, current_store(), open_target(os.environ["REDIS_MAINT_TARGET__URI"]), tmp_path, 1
    )
    w.archiver.close()
    state = ArchiveState(w.store, INSTANCE)
    cur = state.current()
    half = b"*3\r\n$3\r\nset\r\n$4\r\nlost\r\n$5\r\nva"
    seg = assemble_segment(w, cur, half)
    state.record_segment(seg, cur.incr_inode, None)
    _, result = restore(cli, tmp_path, "--to-time", "latest")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["tail_cut"]["bytes"] == len(half)
    assert "as `redis-check-aof --fix` would" in body["tail_cut"]["note"]
    assert body["proof"]["digest"] == w.instants[-1][1]


def assemble_segment(w: Workload, cur, data: bytes):
    import hashlib

    from redis_maint.archive.layout import SegmentMeta
    from redis_maint.timeutil import utcnow

    seg = SegmentMeta(
        cur.generation,
        cur.incr_file,
        cur.offset,
        len(data),
        hashlib.sha256(data).hexdigest(),
        None,
        None,
        utcnow(),
    )
    w.target.put_bytes(seg.key(INSTANCE), data)
    return seg


def test_before_run_undoes_a_recorded_delete_all(pitr_source, cli, tmp_path, check_image):
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    w = run_workload(pitr_source, current_store(), target, tmp_path, steps=2)
    before = w.instants[-1]
    w.fresh_second()  # the delete starts in a later second than the last write it must keep
    deleted = json_out(cli("sessions", "delete", "--all", "--yes", "--json"))
    assert deleted["status"] == "succeeded" and pitr_source.client().dbsize() == 2
    w.archiver.tick()
    _, result = restore(cli, tmp_path, "--before-run", str(deleted["id"]))
    w.archiver.close()
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["proof"]["digest"] == before[1] and body["proof"]["keys"] == before[2]
    assert body["before_run"]["run_id"] == deleted["id"] and body["before_run"]["job"] == "session-delete"
    assert "one-second resolution" in body["precision"]
    row = current_store().list(job="backup-restore")[0]
    assert row.summary["before_run"]["run_id"] == deleted["id"]
    assert row.summary["params"]["before_run"] == deleted["id"]
    unknown = restore(cli, tmp_path, "--before-run", "999999")[1]
    assert unknown.exit_code == 2 and "no run 999999" in unknown.stderr


def test_never_into_the_directory_of_a_running_redis(local_archive, cli, tmp_path):
    result = restore_into(cli, local_archive.server.dir, "--to-time", "latest", "--force")
    assert result.exit_code == 2 and "a Redis is running on" in result.stderr


def restore_into(cli, directory: Path, *args: str):
    return cli("backups", "restore", *args, "--target", str(directory), "--json")


def test_restore_to_a_time_from_s3_and_a_corrupt_segment_there(
    pitr_source, bucket, cli, tmp_path, check_image
):
    from redis_maint.storage.s3 import S3Target

    target = S3Target(os.environ["REDIS_MAINT_TARGET__URI"], None)
    w = run_workload(pitr_source, current_store(), target, tmp_path, steps=3)
    w.archiver.close()
    sec, digest, keys = w.instants[1]
    _, result = restore(cli, tmp_path, "--to-time", iso(sec))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["proof"]["digest"], body["proof"]["keys"]) == (digest, keys)
    assert body["target"].startswith(f"s3://{bucket}/")
    gen = ArchiveState(w.store, INSTANCE).current()
    victim = [s for s in ArchiveState(w.store, INSTANCE).segments(gen.generation) if s.first_ts][-1]
    boto3.client("s3").put_object(Bucket=bucket, Key=f"redis/{victim.key(INSTANCE)}", Body=b"not the segment")
    bad = restore(cli, tmp_path, "--to-time", "latest")[1]
    assert bad.exit_code == 1 and f"segment {victim.key(INSTANCE)} is corrupt" in bad.stderr
