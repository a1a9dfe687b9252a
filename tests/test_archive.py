"""The AOF archiver: segments of Redis's incr files on the target, generations, state,
faults (kill -9, S3 down, truncation, a rewrite mid-upload), status and the only-primary rule, on a
real redis-server (appendonly yes, aof-timestamp-enabled yes), a local target and moto's S3 server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from redis_maint.archive import layout
from redis_maint.archive.archiver import Archiver, ArchiverOptions
from redis_maint.archive.follower import RespScanner, read_segment
from redis_maint.archive.loop import Loop
from redis_maint.archive.state import ArchiveState
from redis_maint.archive.status import archive_status
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from redis_maint.storage.s3 import S3Options, S3Target
from tests.support.archive_faults import Writer, late_segments, write
from tests.support.common import ROOT, in_ci, wait_for
from tests.support.services.redis import wait_aof_rewrite
from tests.support.services.tcp_proxy import TcpProxy

AOF_ARGS = {"aof-timestamp-enabled": "yes"}
INSTANCE = "default"


# -- pure logic -------------------------------------------------------------------------------------
def test_segment_keys_sort_by_offset_and_parse_back():
    gen = "20261201T213005Z-1a2b3c"
    keys = [layout.segment_key(INSTANCE, gen, "appendonly.aof.1.incr.aof", o) for o in (0, 9, 4096, 1 << 40)]
    assert keys == sorted(keys)
    assert keys[2] == f"default/aof/{gen}/appendonly.aof.1.incr.aof/0000000000001000.seg"
    assert layout.parse_segment_key(keys[3]) == layout.SegmentRef(
        INSTANCE, gen, "appendonly.aof.1.incr.aof", 1 << 40
    )
    fenced = layout.segment_key(INSTANCE, gen, "appendonly.aof.1.incr.aof", 4096, fence=17)
    assert fenced == f"default/aof/{gen}/appendonly.aof.1.incr.aof/0000000000001000-17.seg"
    assert layout.parse_segment_key(fenced) == layout.SegmentRef(
        INSTANCE, gen, "appendonly.aof.1.incr.aof", 4096, fence=17
    )
    assert layout.parse_segment_key(fenced.replace("-17.seg", "-x.seg")) is None
    assert layout.parse_segment_key(f"default/aof/{gen}/base/appendonly.aof.1.base.rdb") is None
    assert layout.parse_segment_key(f"default/aof/{gen}/generation.json") is None


def test_generation_manifest_and_segment_metadata_round_trip():
    at = datetime(2026, 12, 1, 21, 30, 5, tzinfo=UTC)
    gen = layout.GenerationManifest(
        INSTANCE, layout.new_generation_id(at), at, "rewrite: new base x", "file x seq 1 type b\n",
        "x", "ab" * 32, 10, at, ["appendonly.aof.2.incr.aof"], "bk-1",
    )  # fmt: skip
    assert gen.generation.startswith("20261201T213005Z-")
    assert layout.GenerationManifest.loads(gen.dumps()) == gen
    for fence in (None, 9):
        seg = layout.SegmentMeta(
            gen.generation, "appendonly.aof.2.incr.aof", 4096, 100, "cd" * 32, 1, 2, at, fence
        )
        ref = layout.parse_segment_key(seg.key(INSTANCE))
        assert layout.SegmentMeta.from_metadata(ref, seg.to_metadata()) == seg
    assert layout.incr_seq("appendonly.aof.12.incr.aof") == 12


def resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


AOF = (
    b"#TS:1700000000\r\n"
    + resp(b"SELECT", b"0")
    + resp(b"SET", b"k1", b"v\r\n1", b"EX", b"86400")
    + b"#TS:1700000001\r\n"
    + resp(b"MULTI")
    + resp(b"DEL", b"k1")
    + resp(b"EXEC")
)


def boundaries(data: bytes) -> list[int]:
    """Every offset where a command or annotation ends, found the slow way (one whole parse)."""
    out, pos = [], 0
    while pos < len(data):
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\r\n", pos) + 2
        else:
            eol = data.index(b"\r\n", pos)
            n, pos = int(data[pos + 1 : eol]), eol + 2
            for _ in range(n):
                eol = data.index(b"\r\n", pos)
                pos = eol + 2 + int(data[pos + 1 : eol]) + 2
        out.append(pos)
    return out


def test_the_scanner_finds_the_last_command_boundary_whatever_the_chunking():
    ends = boundaries(AOF)
    for cut in range(len(AOF) + 1):
        for step in (1, 3, 7, len(AOF)):
            scanner = RespScanner()
            for i in range(0, cut, step):
                scanner.feed(AOF[i : min(i + step, cut)])
            assert scanner.boundary == max([0] + [e for e in ends if e <= cut]), (cut, step)
    scanner = RespScanner()
    scanner.feed(AOF)
    assert (scanner.first_ts, scanner.last_ts, scanner.pending) == (1700000000, 1700000001, 0)


def test_a_segment_keeps_a_partial_trailing_command_for_the_next_one(tmp_path):
    path = tmp_path / "appendonly.aof.1.incr.aof"
    partial = resp(b"SET", b"k2", b"x" * 100)[:-20]
    path.write_bytes(AOF + partial)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = path.stat().st_size
        chunk = read_segment(fd, 0, size, final=False)
        assert chunk.data == AOF and chunk.whole and chunk.last_ts == 1700000001
        assert read_segment(fd, chunk.end, size, final=False) is None  # nothing complete yet
        tail = read_segment(fd, chunk.end, size, final=True)  # the file will not grow: ship as is
        assert tail.data == partial and not tail.whole
        small = read_segment(fd, 0, size, final=False, max_bytes=40)  # bounded: cut at a boundary below 40
        assert small.end == max(e for e in boundaries(AOF) if e <= 40)
    finally:
        os.close(fd)


# -- helpers on real services -----------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    return HistoryStore(f"sqlite:///{tmp_path}/history.db")


@pytest.fixture
def primary(redis_factory, monkeypatch):
    server = redis_factory("primary", args=AOF_ARGS)
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    return server


def make_archiver(server, store, target, tmp_path, **kw) -> Archiver:
    options = ArchiverOptions(
        instance=INSTANCE, data_dir=server.dir, staging_dir=tmp_path / "staging", interval_s=0.2, **kw
    )
    return Archiver(options, server.client(), target, ArchiveState(store, INSTANCE))


def live_incr(server) -> Path:
    manifest = (server.dir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    name = [line.split()[1] for line in manifest.splitlines() if line.endswith("type i")][-1]
    return server.dir / "appendonlydir" / name


def concatenated(target, store, generation: str, incr_file: str) -> bytes:
    """The archive's bytes of one incr file: its recorded segments, read from the target, which must
    follow each other with no gap and no overlap, each matching its recorded length and sha256."""
    import hashlib

    segs = [s for s in ArchiveState(store, INSTANCE).segments(generation) if s.incr_file == incr_file]
    out = b""
    for s in segs:
        assert s.offset == len(out), f"gap or overlap at {s.offset} (have {len(out)})"
        data = b"".join(target.read_chunks(s.key(INSTANCE)))
        assert (len(data), hashlib.sha256(data).hexdigest()) == (s.length, s.sha256)
        out += data
    return out


def stored_segment_keys(target, generation: str) -> set[str]:
    return {
        o.key for o in target.list(layout.generation_prefix(INSTANCE, generation)) if o.key.endswith(".seg")
    }


# -- the archive on real Redis ----------------------------------------------------------------------
@pytest.mark.parametrize("where", ["local", "s3"])
def test_segments_appear_and_concatenate_to_the_incr_file_exactly(where, request, primary, store, tmp_path):
    if where == "s3":
        request.getfixturevalue("s3")
        boto3.client("s3").create_bucket(Bucket="archive")
        target = open_target("s3://archive/redis", S3Options())
    else:
        target = open_target(str(tmp_path / "target"))
    client = primary.client()
    archiver = make_archiver(primary, store, target, tmp_path, max_segment_bytes=64 << 10)
    first = archiver.tick()
    assert first.started and first.started[0].startswith("first-start")
    for round_ in range(3):
        write(client, 300, prefix=f"s{round_}:")
        archiver.tick()
    report = archiver.tick()
    archiver.close()
    incr = live_incr(primary)
    gen = ArchiveState(store, INSTANCE).current()
    assert gen.incr_file == incr.name and gen.offset == incr.stat().st_size
    assert concatenated(target, store, gen.generation, incr.name) == incr.read_bytes()
    assert report.safe_until is not None and gen.safe_until == report.safe_until
    segs = ArchiveState(store, INSTANCE).segments(gen.generation)
    assert len(segs) > 3  # 64 KiB segments: several per tick
    assert stored_segment_keys(target, gen.generation) == {s.key(INSTANCE) for s in segs}
    stamped = [s for s in segs if s.first_ts is not None]
    assert stamped and all(s.first_ts <= s.last_ts for s in stamped)
    base = b"".join(target.read_chunks(layout.base_key(INSTANCE, gen.generation, gen.base_name)))
    assert base == (primary.dir / "appendonlydir" / gen.base_name).read_bytes()
    manifest = layout.GenerationManifest.loads(
        b"".join(target.read_chunks(layout.manifest_key(INSTANCE, gen.generation)))
    )
    assert manifest.base_sha256 == gen.base_sha256 and "type b" in manifest.aof_manifest
    if where == "s3":  # the segment's facts are in the object's metadata too
        head = boto3.client("s3").head_object(Bucket="archive", Key="redis/" + segs[1].key(INSTANCE))
        assert (
            layout.SegmentMeta.from_metadata(
                layout.parse_segment_key(segs[1].key(INSTANCE)), head["Metadata"]
            )
            == segs[1]
        )


class RewriteDuringUpload:
    """The real local target, which starts an AOF rewrite (and waits for it) during one segment upload."""

    def __init__(self, target, client):
        self.target, self.client, self.armed, self.incr_before = target, client, False, None

    def __getattr__(self, name):
        return getattr(self.target, name)

    def put_bytes(self, key, data, **kw):
        if self.armed and key.endswith(".seg"):
            self.armed = False
            self.client.bgrewriteaof()
            wait_aof_rewrite(self.client)
        return self.target.put_bytes(key, data, **kw)


def test_a_rewrite_during_an_upload_starts_a_generation_whose_base_is_shipped_first(primary, store, tmp_path):
    client = primary.client()
    target = RewriteDuringUpload(open_target(str(tmp_path / "target")), client)
    archiver = make_archiver(primary, store, target, tmp_path)
    archiver.tick()
    old = ArchiveState(store, INSTANCE).current()
    write(client, 500)
    old_incr = live_incr(primary)
    old_bytes_before = old_incr.read_bytes()
    target.armed = True
    archiver.tick()  # the rewrite happens while this tick's segment uploads
    write(client, 200, prefix="after:")  # lands in the new incr file only
    report = archiver.tick()
    archiver.close()
    assert any(r.startswith("rewrite:") for r in report.started)
    state = ArchiveState(store, INSTANCE)
    new = state.current()
    assert new.generation != old.generation and new.base_name != old.base_name
    gens = {g.generation: g for g in state.generations()}
    assert gens[old.generation].status == "closed"
    # The old generation holds the old incr file whole, although Redis deleted it.
    assert not old_incr.exists()
    # (Redis may append to it until the rewrite switches files: what we saw is a prefix of what was shipped.)
    archived = concatenated(target, store, old.generation, old_incr.name)
    assert archived.startswith(old_bytes_before) and boundaries(archived)[-1] == len(archived)
    # The new one: its base (stored before any of its segments) and the live incr file, exactly.
    base_obj = target.head(layout.base_key(INSTANCE, new.generation, new.base_name))
    assert (
        b"".join(target.read_chunks(base_obj.key))
        == (primary.dir / "appendonlydir" / new.base_name).read_bytes()
    )
    first_seg = min(state.segments(new.generation), key=lambda s: s.uploaded_at)
    assert base_obj.modified <= first_seg.uploaded_at
    incr = live_incr(primary)
    assert concatenated(target, store, new.generation, incr.name) == incr.read_bytes()


def test_a_truncated_incr_file_starts_a_new_generation_and_says_why(primary, store, tmp_path):
    client = primary.client()
    target = open_target(str(tmp_path / "target"))
    archiver = make_archiver(primary, store, target, tmp_path)
    write(client, 300)
    archiver.tick()
    before = ArchiveState(store, INSTANCE).current()
    incr = live_incr(primary)
    cut = max(e for e in boundaries(incr.read_bytes()) if e <= before.offset // 2)
    os.truncate(incr, cut)  # at a command boundary: Redis (O_APPEND) goes on writing after it
    report = archiver.tick()
    assert report.started and report.started[0].startswith("truncated:")
    assert f"from {before.offset} to {cut} bytes" in report.started[0]
    now = ArchiveState(store, INSTANCE).current()
    assert now.generation != before.generation and now.reason == report.started[0]
    write(client, 50, prefix="after:")
    archiver.tick()
    archiver.close()
    assert concatenated(target, store, now.generation, incr.name) == incr.read_bytes()


def test_a_replica_does_not_archive(redis_factory, store, tmp_path):
    primary = redis_factory("p", args=AOF_ARGS)
    replica = redis_factory("r", args={**AOF_ARGS, "replicaof": f"127.0.0.1 {primary.port}"})
    wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up", what="replication")
    target = open_target(str(tmp_path / "target"))
    report = make_archiver(replica, store, target, tmp_path).tick()
    assert report.skipped and "slave" in report.skipped
    assert ArchiveState(store, INSTANCE).current() is None
    assert list(target.list("")) == []
    assert make_archiver(primary, store, target, tmp_path).tick().generation is not None


def test_s3_unreachable_then_back_lag_grows_then_catches_up_nothing_lost(
    s3, primary, store, tmp_path, monkeypatch
):
    boto3.client("s3").create_bucket(Bucket="archive")
    proxy = TcpProxy(upstream_port=s3.port).up()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    target = S3Target("s3://archive/redis", S3Options(max_attempts=1, connect_timeout_s=1, read_timeout_s=2))
    archiver = make_archiver(primary, store, target, tmp_path, backoff_max_s=0.5)
    stop = threading.Event()
    loop = Loop(archiver, stop)
    thread = threading.Thread(target=loop.run, daemon=True)
    state = ArchiveState(store, INSTANCE)

    def lag() -> float:
        return archive_status(state, archiver.redis_now(), "redis")["lag_s"] or 0.0

    with Writer(primary.client()):
        thread.start()
        wait_for(
            lambda: state.current() is not None and state.current().safe_until is not None,
            what="first segment",
        )
        wait_for(lambda: lag() < 1.5, what="archive caught up")
        proxy.down()
        time.sleep(2.5)
        assert loop.failures > 0 and lag() > 2.0  # the position is kept: lag grows
        offset_while_down = state.current().offset
        proxy.up()
        wait_for(
            lambda: state.current().offset > offset_while_down and lag() < 1.5, timeout=15, what="catch-up"
        )
    wait_for(lambda: state.current().offset == live_incr(primary).stat().st_size, what="the last bytes")
    stop.set()
    thread.join(10)
    proxy.down()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    direct = S3Target("s3://archive/redis")
    gen = state.current()
    assert concatenated(direct, store, gen.generation, gen.incr_file) == live_incr(primary).read_bytes()


def archiver_process(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "archive", "run"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_kill_9_mid_loop_then_restart_no_gap_no_duplicate(primary, store, tmp_path):
    env = {**os.environ, "REDIS_MAINT_ARCHIVE__INTERVAL": "0.2s", "REDIS_MAINT_LOG_LEVEL": "WARNING"}
    state = ArchiveState(store, INSTANCE)
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    with Writer(primary.client()):
        for kill_after in (1.5, 0.7, 1.1):
            proc = archiver_process(env)
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        proc = archiver_process(env)
        time.sleep(1.0)
    size = live_incr(primary).stat().st_size
    try:
        wait_for(
            lambda: state.current() is not None and state.current().offset == size,
            timeout=20,
            what="catch-up",
        )
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"{state.current()}\n{proc.stderr.read().decode()[-3000:]}") from None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr.read().decode()[-2000:]
    gen = state.current()
    assert [g.generation for g in state.generations()] == [gen.generation]  # one generation: continuity kept
    assert concatenated(target, store, gen.generation, gen.incr_file) == live_incr(primary).read_bytes()
    # No second segment over the same bytes in the chain: what a killed archiver uploaded but never
    # recorded is off it (an older fencing token at a recorded offset); each kill leaves at most one.
    assert len(late_segments(target, store, gen.generation)) <= 3


def test_archive_status_json(primary, store, tmp_path, cli):
    write(primary.client(), 100)
    result = cli("archive", "run", "--once", "--json")
    assert result.exit_code == 0, result.output
    ran = json.loads(result.stdout)
    assert ran["segments"] >= 1 and ran["started"][0].startswith("first-start")
    result = cli("archive", "status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert {"generation", "lag_s", "last_segment_at", "window_start", "window_end"} <= set(status)
    assert status["generation"] == ran["generation"] and status["clock"] == "redis"
    assert 0 <= status["lag_s"] < 30
    assert status["window_start"] <= status["window_end"]
    assert status["offset"] == live_incr(primary).stat().st_size
    people = cli("archive", "status")
    assert people.exit_code == 0 and ran["generation"] in people.output


def test_doctor_and_health_say_when_timestamps_are_off_and_configure_redis_sets_them(
    redis_factory, store, cli, monkeypatch
):
    server = redis_factory("plain")  # appendonly yes, aof-timestamp-enabled no
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    monkeypatch.setenv("REDIS_MAINT_ARCHIVE__ENABLED", "true")
    doctor = {c["check"]: c for c in json.loads(cli("doctor", "--json").stdout)}
    assert not doctor["archive"]["ok"] and "aof-timestamp-enabled is no" in doctor["archive"]["detail"]
    health = json.loads(cli("run", "health", "--json").stdout)
    assert any("aof-timestamp-enabled is no" in r for r in health["summary"]["reasons"])
    assert health["summary"]["archive"]["timestamps"] is False
    monkeypatch.setenv("REDIS_MAINT_ARCHIVE__CONFIGURE_REDIS", "true")
    assert cli("archive", "run", "--once").exit_code == 0
    assert server.client().config_get("aof-timestamp-enabled") == {"aof-timestamp-enabled": "yes"}
    configured = json.loads(cli("history", "--job", "archive-configure", "--json").stdout)
    assert configured[0]["status"] == "succeeded" and configured[0]["summary"]["set"] == {
        "aof-timestamp-enabled": "yes"
    }
    doctor = {c["check"]: c for c in json.loads(cli("doctor", "--json").stdout)}
    assert doctor["archive"]["ok"] and "generation" in doctor["archive"]["detail"]


def test_the_lag_metric_is_exported(primary, store, tmp_path):
    from redis_maint.observe.metrics import Metrics

    metrics = Metrics(store, [], INSTANCE)
    assert b"redis_maint_archive_lag_seconds" not in metrics.exposition()  # no archive: no series
    archiver = make_archiver(primary, store, open_target(str(tmp_path / "target")), tmp_path)
    archiver.tick()
    archiver.close()
    metrics.archive_clock = archiver.redis_now
    line = [
        ln
        for ln in metrics.exposition().decode().splitlines()
        if ln.startswith("redis_maint_archive_lag_seconds")
    ]
    assert line and 0 <= float(line[0].split()[-1]) < 30


ARCHIVE_ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    # The target goes away for five minutes: the lag grows a minute a minute, then the archive catches up.
    input_series:
      - series: 'redis_maint_archive_lag_seconds'
        values: '5 5 70 130 190 250 310 5 5 5 5'
    alert_rule_test:
      - eval_time: 3m
        alertname: ArchiveLagging
        exp_alerts: []
      - eval_time: 5m
        alertname: ArchiveLagging
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: "The AOF archive is 4m 10s behind Redis"
              description: "Point-in-time recovery would lose the writes of that period. Check `redis-maint archive status` and the sidecar's log (target unreachable, Redis not the primary, lease held elsewhere)."
      - eval_time: 9m
        alertname: ArchiveLagging
        exp_alerts: []
"""


def test_the_archive_lag_alert_fires_while_the_target_is_away_and_clears_once_caught_up(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool not found (scripts/ensure-promtool.sh installs it)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    spec = tmp_path / "archive_alert_test.yml"
    spec.write_text(ARCHIVE_ALERT_TESTS.format(rules=ROOT / "infra" / "redis" / "alerts.yml"))
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
