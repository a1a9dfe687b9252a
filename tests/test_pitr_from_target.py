"""A restore to a time when the history store has no archive rows (lost with its host, started afresh):
the archive is read from the target alone, and restores exactly what the history-backed restore does.

Real redis-server with `aof-timestamp-enabled yes`, the real archiver, a local target and moto's S3
server; restores through the CLI, truncated in a container and proven by a throwaway load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import boto3

from redis_maint.archive import layout
from redis_maint.archive.from_target import TargetArchive
from redis_maint.archive.state import ArchiveState
from redis_maint.storage import open_target
from tests.support.history import current_store
from tests.support.pitr_workload import INSTANCE, iso, run_workload


def restore(cli, tmp_path, *args: str):
    out = tmp_path / f"restore-{time.monotonic_ns()}"
    return out, cli("backups", "restore", *args, "--target", str(out), "--json")


def without_upload_time(segments):
    return [dataclasses.replace(s, uploaded_at=None) for s in segments]


def fresh_history(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", f"sqlite:///{tmp_path}/fresh-history.db")


def test_the_target_alone_gives_the_generations_and_segments_the_history_recorded(pitr_source, tmp_path):
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    w = run_workload(pitr_source, current_store(), target, tmp_path, steps=4, rewrite_after=1)
    w.archiver.close()
    recorded = ArchiveState(w.store, INSTANCE)
    read = TargetArchive(target, INSTANCE)
    gens = recorded.generations()
    assert len(gens) == 2
    assert [
        (g.generation, g.reason, g.base_name, g.base_sha256, g.base_time) for g in read.generations()
    ] == [(g.generation, g.reason, g.base_name, g.base_sha256, g.base_time) for g in gens]
    for gen in gens:
        segs = recorded.segments(gen.generation)
        assert segs and without_upload_time(read.segments(gen.generation)) == without_upload_time(segs)

    # A late upload off the chain (inside an archived segment), a generation without its
    # generation.json (its base may be half-stored) and one whose generation.json is not JSON are left out.
    seg = recorded.segments(gens[1].generation)[0]
    late = layout.segment_key(INSTANCE, seg.generation, seg.incr_file, seg.offset + 3)
    target.put_bytes(late, b"*1\r\n$4\r\nPING\r\n")
    orphan = layout.new_generation_id()
    target.put_bytes(
        layout.segment_key(INSTANCE, orphan, "appendonly.aof.9.incr.aof", 0), b"*1\r\n$4\r\nPING\r\n"
    )
    broken = layout.new_generation_id()
    target.put_bytes(layout.manifest_key(INSTANCE, broken), b"{not json")
    target.put_bytes(
        layout.segment_key(INSTANCE, broken, "appendonly.aof.9.incr.aof", 0), b"*1\r\n$4\r\nPING\r\n"
    )
    again = TargetArchive(target, INSTANCE)
    assert [g.generation for g in again.generations()] == [g.generation for g in gens]
    assert without_upload_time(again.segments(gens[1].generation)) == without_upload_time(
        recorded.segments(gens[1].generation)
    )


def test_with_a_fresh_history_a_restore_to_a_time_reads_the_target(
    pitr_source, cli, tmp_path, check_image, monkeypatch, no_leftovers
):
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    w = run_workload(pitr_source, current_store(), target, tmp_path, steps=4, rewrite_after=1)
    w.archiver.close()
    fresh_history(monkeypatch, tmp_path)
    for sec, digest, keys in (w.instants[0], w.instants[-1]):  # one second in each generation
        _, result = restore(cli, tmp_path, "--to-time", iso(sec))
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert (body["proof"]["digest"], body["proof"]["keys"]) == (digest, keys), f"at {iso(sec)}"
        assert body["archive_read_from"] == "target"
        assert any("no archive rows" in warning for warning in body["warnings"])
    _, latest = restore(cli, tmp_path, "--to-time", "latest")
    assert latest.exit_code == 0, latest.output
    assert json.loads(latest.stdout)["proof"]["digest"] == w.instants[-1][1]
    # A dry run plans from the target too, and says which generation it would restore.
    from config import load_settings
    from jobs import REGISTRY
    from redis_maint.run.runner import execute

    params = {"to_time": "latest", "directory": str(tmp_path / "dry")}
    dry = execute(
        load_settings(jobs=REGISTRY), "backup-restore", trigger="manual", dry_run=True, params=params
    )
    assert dry.status == "succeeded", dry.error
    assert dry.summary["generation"] == ArchiveState(w.store, INSTANCE).generations()[-1].generation
    # The restores are runs in the fresh history; its archive tables stay empty (read, never written).
    assert len(current_store().list(job="backup-restore")) == 4
    assert ArchiveState(current_store(), INSTANCE).generations() == []


def test_outside_the_window_read_from_the_target_exits_2_and_nothing_anywhere_exits_2(
    pitr_source, cli, tmp_path, monkeypatch
):
    fresh_history(monkeypatch, tmp_path)
    _, nothing = restore(cli, tmp_path, "--to-time", "latest")
    assert nothing.exit_code == 2
    assert "has no generation, in the history store or on the target" in nothing.stderr

    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    w = run_workload(pitr_source, current_store(), target, tmp_path, steps=2)
    w.archiver.close()
    fresh_history(monkeypatch, tmp_path / "again")
    (tmp_path / "again").mkdir()
    out, late = restore(cli, tmp_path, "--to-time", iso(w.instants[-1][0] + 3600))
    assert late.exit_code == 2 and "outside the AOF archive's window" in late.stderr
    assert not out.exists()
    assert current_store().list(job="backup-restore") == []  # refused before anything was recorded


def test_from_s3_a_changed_segment_is_refused_by_the_sha256_stored_with_it(
    pitr_source, bucket, cli, tmp_path, check_image, monkeypatch
):
    from redis_maint.storage.s3 import S3Target

    target = S3Target(os.environ["REDIS_MAINT_TARGET__URI"], None)
    w = run_workload(pitr_source, current_store(), target, tmp_path, steps=3)
    w.archiver.close()
    gen = ArchiveState(w.store, INSTANCE).current()
    segs = [s for s in ArchiveState(w.store, INSTANCE).segments(gen.generation) if s.first_ts]
    fresh_history(monkeypatch, tmp_path)
    sec, digest, keys = w.instants[1]
    _, result = restore(cli, tmp_path, "--to-time", iso(sec))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["proof"]["digest"], body["proof"]["keys"], body["archive_read_from"]) == (
        digest,
        keys,
        "target",
    )

    # Same length, same metadata, one byte changed inside a value: only the stored sha256 can tell.
    s3 = boto3.client("s3")
    victim = segs[-1]
    key = f"redis/{victim.key(INSTANCE)}"
    held = s3.get_object(Bucket=bucket, Key=key)
    data = bytearray(held["Body"].read())
    data[data.rindex(b"org-")] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=held["Metadata"])
    bad = restore(cli, tmp_path, "--to-time", "latest")[1]
    assert bad.exit_code == 1
    assert (
        f"segment {victim.key(INSTANCE)} is corrupt" in bad.stderr
        and "The newest time before it" in bad.stderr
    )
