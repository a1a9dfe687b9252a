"""The snapshot: BGSAVE and its waits, the AOF-rewrite guard, the manifest, and the hashed copy."""

from __future__ import annotations

import hashlib
import os
import socket
from contextlib import ExitStack
from datetime import timedelta

import pytest

from redis_maint.errors import IntegrityError, JobTimeoutError, SnapshotError
from redis_maint.snapshot import datafiles
from redis_maint.snapshot.aof_guard import aof_rewrite_paused
from redis_maint.snapshot.aof_manifest import live_files, parse_aof_manifest, split_args
from redis_maint.snapshot.aof_note import read_note
from redis_maint.snapshot.bgsave import bgsave_and_wait
from redis_maint.snapshot.take import take_snapshot
from tests.support.builders.backups import fill_sessions
from tests.support.services.redis import wait_aof_rewrite

NOOP = lambda: None  # noqa: E731
MINUTE = timedelta(minutes=1)


def slow_saves(client, keys: int = 1000, delay_us: int = 400) -> None:
    """Make the next fork-based save take about keys*delay_us (rdb-key-save-delay)."""
    fill_sessions(client, keys)
    client.config_set("rdb-key-save-delay", delay_us)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the AOF manifest (pure) --------------------------------------------------------------


def test_manifest_parser_reads_types_order_quotes_and_comments():
    text = (
        "# written by redis 7\n"
        "file appendonly.aof.1.base.rdb seq 1 type b\n"
        "file appendonly.aof.1.incr.aof seq 1 type h\n"
        'file "appendonly.aof.2.incr\\x20x.aof" seq 2 type i\n'
        "file appendonly.aof.3.incr.aof seq 3 type i startoffset 0\n"
    )
    entries = parse_aof_manifest(text)
    assert [(e.name, e.seq, e.type) for e in entries] == [
        ("appendonly.aof.1.base.rdb", 1, "b"),
        ("appendonly.aof.1.incr.aof", 1, "h"),
        ("appendonly.aof.2.incr x.aof", 2, "i"),
        ("appendonly.aof.3.incr.aof", 3, "i"),
    ]
    assert [e.name for e in live_files(entries)] == [
        "appendonly.aof.1.base.rdb",
        "appendonly.aof.2.incr x.aof",
        "appendonly.aof.3.incr.aof",
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("file a seq 1", "missing type"),
        ("file a seq x type i", "invalid literal"),
        ("file a seq 1 type z", "unknown type"),
        ("file ../../etc/passwd seq 1 type b", "unsafe file name"),
        ('file "unclosed seq 1 type b', "unbalanced quotes"),
        ("file a seq 1 type", "odd number"),
    ],
)
def test_malformed_manifest_lines_are_named(line, problem):
    with pytest.raises(SnapshotError, match=rf"line 1 is malformed \(.*{problem}"):
        parse_aof_manifest(line + "\n", source="m")


def test_manifest_with_two_bases_or_no_live_file_is_refused():
    with pytest.raises(SnapshotError, match="more than one base"):
        parse_aof_manifest("file a seq 1 type b\nfile b seq 2 type b\n")
    with pytest.raises(SnapshotError, match="no base or incr"):
        parse_aof_manifest("file a seq 1 type h\n")


def test_split_args_follows_redis_quoting():
    assert split_args("a  'b c' \"d\\ne\"") == ["a", "b c", "d\ne"]


# -- BGSAVE ---------------------------------------------------------------------------------


def test_bgsave_waits_for_the_save_it_started(redis_server):
    client = redis_server.client()
    fill_sessions(client, 500)
    before = client.info("persistence")["rdb_saves"]
    result = bgsave_and_wait(client, checkpoint=NOOP, timeout=MINUTE)
    info = client.info("persistence")
    assert result["mode"] == "started"
    assert info["rdb_saves"] == before + 1 and info["rdb_bgsave_in_progress"] == 0
    assert info["rdb_last_save_time"] >= int(result["requested_at"])


def test_bgsave_waits_for_a_save_already_in_progress(redis_server):
    client = redis_server.client()
    slow_saves(client)
    client.bgsave(schedule=False)
    before = client.info("persistence")["rdb_saves"]
    result = bgsave_and_wait(client, checkpoint=NOOP, timeout=MINUTE)
    info = client.info("persistence")
    assert result["mode"] == "existing"
    assert info["rdb_saves"] == before, "no second save was started"
    assert info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "ok"


def test_bgsave_is_scheduled_behind_a_running_aof_rewrite(redis_server):
    client = redis_server.client()
    slow_saves(client)
    client.bgrewriteaof()
    before = client.info("persistence")["rdb_saves"]
    result = bgsave_and_wait(client, checkpoint=NOOP, timeout=MINUTE)
    info = client.info("persistence")
    assert result["mode"] == "scheduled"
    assert info["rdb_saves"] == before + 1 and info["aof_rewrite_in_progress"] == 0


def test_bgsave_that_outlives_its_timeout_fails_with_the_figures(redis_server):
    client = redis_server.client()
    slow_saves(client, keys=2000, delay_us=2000)
    with pytest.raises(
        JobTimeoutError, match=r"did not finish within 0:00:00.300000 \(rdb_current_bgsave_time_sec"
    ):
        bgsave_and_wait(client, checkpoint=NOOP, timeout=timedelta(milliseconds=300))


def test_bgsave_wait_stops_at_a_checkpoint(redis_server):
    client = redis_server.client()
    slow_saves(client)

    class Stop(Exception):
        pass

    def checkpoint():
        if client.info("persistence")["rdb_bgsave_in_progress"]:
            raise Stop

    with pytest.raises(Stop):
        bgsave_and_wait(client, checkpoint=checkpoint, timeout=MINUTE)


# -- the AOF-rewrite guard ----------------------------------------------------------------------


def percentage(client) -> str:
    return client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]


def test_guard_pauses_rewrites_and_restores_the_value_after_a_failure(redis_server, tmp_path):
    client = redis_server.client()
    client.config_set("auto-aof-rewrite-percentage", 77)
    note = tmp_path / "note"
    with pytest.raises(RuntimeError), aof_rewrite_paused(client, checkpoint=NOOP, timeout=MINUTE, note=note):
        assert percentage(client) == "0"
        saved = read_note(note)
        assert saved.original == "77"
        assert [(o.host, o.pid) for o in saved.owners] == [(socket.gethostname(), os.getpid())]
        raise RuntimeError("copy failed")
    assert percentage(client) == "77"
    assert not note.exists()


def test_guard_waits_for_a_running_rewrite_to_finish(redis_server):
    client = redis_server.client()
    slow_saves(client)
    client.bgrewriteaof()
    assert client.info("persistence")["aof_rewrite_in_progress"] == 1
    with aof_rewrite_paused(client, checkpoint=NOOP, timeout=MINUTE):
        info = client.info("persistence")
        assert info["aof_rewrite_in_progress"] == 0 and info["aof_rewrite_scheduled"] == 0
    assert percentage(client) == "100"


def test_guard_restores_what_a_killed_run_left_in_its_note(redis_server, tmp_path):
    client = redis_server.client()
    client.config_set("auto-aof-rewrite-percentage", 0)  # as a SIGKILLed run leaves it
    note = tmp_path / "note"
    note.write_text("55\n")
    with aof_rewrite_paused(client, checkpoint=NOOP, timeout=MINUTE, note=note):
        pass
    assert percentage(client) == "55"
    assert not note.exists()


def test_nested_guards_restore_once_at_the_end(redis_server):
    client = redis_server.client()
    with ExitStack() as stack:
        stack.enter_context(aof_rewrite_paused(client, checkpoint=NOOP, timeout=MINUTE))
        with aof_rewrite_paused(redis_server.client(), checkpoint=NOOP, timeout=MINUTE):
            pass
        assert percentage(client) == "0", "the inner guard must not re-enable rewrites"
    assert percentage(client) == "100"


# -- the copy ------------------------------------------------------------------------------------


def test_snapshot_copies_the_manifest_and_every_live_file_it_names(redis_server, tmp_path):
    client = redis_server.client()
    fill_sessions(client, 2000)
    client.bgrewriteaof()
    wait_aof_rewrite(client)
    fill_sessions(client, 200, start=5000)
    snap = take_snapshot(client, redis_server.dir, tmp_path / "stage", checkpoint=NOOP)

    manifest = (redis_server.dir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    live = [f"appendonlydir/{e.name}" for e in live_files(parse_aof_manifest(manifest))]
    assert [f.path for f in snap.files] == ["dump.rdb", "appendonlydir/appendonly.aof.manifest", *live]
    assert snap.aof_manifest == "appendonlydir/appendonly.aof.manifest" and snap.rdb == "dump.rdb"
    for f in snap.files:
        staged = tmp_path / "stage" / f.path
        assert (staged.stat().st_size, sha(staged)) == (f.size, f.sha256)
    assert snap.server["dbsize"] == 2200 and snap.server["redis_version"].startswith("7.")
    assert snap.bgsave["mode"] == "started"


def test_incr_file_is_copied_up_to_its_size_when_pinned(redis_server, tmp_path):
    client = redis_server.client()
    fill_sessions(client, 3000)
    incr = next((redis_server.dir / "appendonlydir").glob("*.incr.aof"))
    calls = []

    def write_during_copy():
        calls.append(1)
        if len(calls) == 3:  # after pinning: Redis keeps appending while we copy
            fill_sessions(client, 100, start=9000)

    snap = take_snapshot(
        client,
        redis_server.dir,
        tmp_path / "s",
        checkpoint=write_during_copy,
        bgsave=False,
        include_rdb=False,
    )
    copied = next(f for f in snap.files if f.path.endswith(".incr.aof"))
    assert incr.stat().st_size > copied.size
    with open(incr, "rb") as fh:
        assert hashlib.sha256(fh.read(copied.size)).hexdigest() == copied.sha256


def test_rdb_modified_while_copied_is_copied_again(redis_server, tmp_path):
    client = redis_server.client()
    fill_sessions(client, 100)
    client.config_set("appendonly", "no")
    bgsave_and_wait(client, checkpoint=NOOP, timeout=MINUTE)
    rdb = redis_server.dir / "dump.rdb"
    calls = []

    def tamper():
        calls.append(1)
        if len(calls) <= 2:  # call 2 is the first chunk of the first attempt
            with open(rdb, "ab") as fh:
                fh.write(b"x")

    snap = take_snapshot(client, redis_server.dir, tmp_path / "s", checkpoint=tamper, bgsave=False)
    assert snap.files[0].sha256 == sha(rdb)
    assert snap.files[0].size == rdb.stat().st_size


def test_a_file_that_never_stops_changing_fails_the_copy(redis_server, tmp_path):
    client = redis_server.client()
    fill_sessions(client, 100)
    client.config_set("appendonly", "no")
    bgsave_and_wait(client, checkpoint=NOOP, timeout=MINUTE)
    rdb = redis_server.dir / "dump.rdb"

    def tamper():
        with open(rdb, "ab") as fh:
            fh.write(b"x")

    with pytest.raises(IntegrityError, match="kept changing while being copied"):
        take_snapshot(client, redis_server.dir, tmp_path / "s", checkpoint=tamper, bgsave=False)


def test_immutable_files_are_hard_linked_when_staging_shares_the_filesystem(redis_server, tmp_path):
    fill_sessions(redis_server.client(), 100)
    snap = take_snapshot(redis_server.client(), redis_server.dir, tmp_path / "s", checkpoint=NOOP)
    links = {f.path: os.stat(tmp_path / "s" / f.path).st_nlink for f in snap.files}
    assert links["dump.rdb"] == 2
    assert all(n == 1 for p, n in links.items() if p.endswith((".incr.aof", ".manifest")))


def test_rdb_only_server_snapshots_just_the_rdb(redis_factory, tmp_path):
    server = redis_factory("rdb", args={"appendonly": "no"})
    fill_sessions(server.client(), 100)
    snap = take_snapshot(server.client(), server.dir, tmp_path / "s", checkpoint=NOOP)
    assert [f.path for f in snap.files] == ["dump.rdb"]
    assert snap.aof_manifest is None and snap.server["aof_enabled"] == 0


def test_legacy_single_aof_is_pinned_as_an_appendable_file(tmp_path):
    (tmp_path / "appendonly.aof").write_bytes(b"*1\r\n$4\r\nPING\r\n")
    layout = datafiles.DataLayout(rdb="dump.rdb", aof_enabled=True, aof_dir=None, aof_file="appendonly.aof")
    with ExitStack() as stack:
        pinned, manifest = datafiles._pin_aof(stack, tmp_path, layout)
    assert manifest == "appendonly.aof"
    assert [(p.rel, p.appendable) for p in pinned] == [("appendonly.aof", True)]
