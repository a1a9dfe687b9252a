"""Point-in-time recovery, proven: exactness at 10 random instants, and the weekly drill.

Exactness: one workload on a real redis-server whose seconds the test knows (each step waits for a
fresh second on Redis's clock), with a few keys on short TTLs. The archive is downloaded once; for
each of 10 seeded random instants the restore's own steps cut and truncate it (redis-check-aof
--truncate-to-timestamp in a real container), and a redis-server loads it as a replica (nothing
expires): its DEBUG DIGEST must equal the one recorded at that instant. Promoted, the keys that
are still alive must be the recorded ones minus those whose TTL has passed since.

The drill: `run backup-verify` with archive.enabled restores the archive to `latest` and checks the
keys it loaded against the source's count (summary `archive: {to, keys, source_keys, expired, ok}`);
a corrupt segment fails the drill with the segment named.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from redis_maint.archive import drill
from redis_maint.archive import restore as pitr
from redis_maint.archive.loop import Loop
from redis_maint.archive.state import ArchiveState
from redis_maint.history.runs import HistoryStore
from redis_maint.storage import open_target
from tests.support.archive_faults import AOF_ARGS, INSTANCE, digest, make_archiver, write
from tests.support.common import json_out, wait_for
from tests.support.services.redis import RedisServer

SEED = int(os.environ.get("PITR_EXACTNESS_SEED", "20261201"))


def test_keys_match_allows_for_expired_keys_and_writes_between_the_counts():
    assert drill.keys_match(100, 100, 100, 0)
    assert drill.keys_match(103, 100, 105, 0)  # writes between the two counts
    assert drill.keys_match(107, 100, 105, 2)  # 2 keys gone from the source by TTL, still archived
    assert not drill.keys_match(108, 100, 105, 2)
    assert not drill.keys_match(90, 100, 105, 5)  # lost writes


# -- exactness ---------------------------------------------------------------------------------------
def fresh_second(client, after: int) -> int:
    while True:
        sec, micros = client.time()
        if sec > after and micros < 300_000:
            return sec
        time.sleep(0.02)


def record(client) -> dict:
    """What the dataset is now: its digest, and each key with its value's digest and expire time."""
    keys = sorted(k.decode() for k in client.keys("*"))
    values = [v.decode() for v in client.execute_command("DEBUG", "DIGEST-VALUE", *keys)] if keys else []
    expires = [client.pexpiretime(k) for k in keys]
    return {"digest": digest(client), "keys": dict(zip(keys, zip(values, expires, strict=True), strict=True))}


def test_a_restore_to_each_of_10_random_instants_is_exactly_that_instant(
    redis_factory, tmp_path, settings, check_image
):
    server = redis_factory("source", args={**AOF_ARGS, "appendfsync": "always"})
    client = server.client()
    store = HistoryStore(os.environ["REDIS_MAINT_HISTORY_URL"])
    target = open_target(str(tmp_path / "target"))
    archiver = make_archiver(server, store, target, tmp_path)
    archiver.tick()
    instants: dict[int, dict] = {}
    last = 0
    for i in range(12):
        sec = fresh_second(client, last)
        with_ttl = i % 3 == 1
        pipe = client.pipeline(transaction=False)
        pipe.set(f"session:{i}", f"v{i}")
        if with_ttl:  # expires in the middle of the next second, which no instant is recorded in
            pipe.set(f"ttl:{i}", f"short {i}", pxat=(sec + 1) * 1000 + 500)
        pipe.incr("counter")
        if i:
            pipe.delete(f"session:{i - 1}") if i % 3 == 0 else pipe.append(f"session:{i - 1}", "+")
        pipe.execute()
        assert client.time()[0] == sec, "a step straddled a second; the machine is too slow for this test"
        instants[sec] = record(client)
        last = sec + 1 if with_ttl else sec
        archiver.tick()
    archiver.close()
    rng = random.Random(SEED)
    chosen = sorted(rng.sample(sorted(instants), 10))
    assert any(k.startswith("ttl:") for sec in chosen for k in instants[sec]["keys"])  # TTL keys in play
    print(f"exactness: seed {SEED}, instants {chosen}")

    # The archive once, as a restore downloads it (every segment of the one generation).
    env = settings().docker, settings().check_image
    from redis_maint.checks.containers import CheckEnv

    check_env = CheckEnv(*env)
    plan = pitr.plan(ArchiveState(store, INSTANCE), None)
    pitr.check_continuity(plan)
    downloaded = tmp_path / "download"
    req = pitr.Request(directory=tmp_path / "unused", force=False, to_ts=None, run_id="exact", timeout_s=120)
    pitr._fetch(target, INSTANCE, plan, downloaded / "appendonlydir", req)

    for sec in chosen:
        work = Path(check_env.docker.snapshot_dir) / f"exact-{sec}"
        shutil.copytree(downloaded, work)
        incr = work / "appendonlydir" / "appendonly.aof.1.incr.aof"
        req_at = pitr.Request(directory=work, force=False, to_ts=sec, run_id="exact", timeout_s=120)
        cut = pitr._cut_tail(incr, sec)
        pitr._truncate(check_env, work, incr, req_at, cut, time.monotonic() + 120)
        want = instants[sec]
        restored = RedisServer(dir=work, args={**AOF_ARGS, "replicaof": "127.0.0.1 1"}).start()
        try:
            r = restored.client()
            assert digest(r) == want["digest"], f"the restore to {sec} is not the dataset of that second"
            r.execute_command("REPLICAOF", "NO", "ONE")
            now_ms = int(r.time()[0] * 1000 + r.time()[1] / 1000)
            alive = {k.decode() for k in r.keys("*")}
            expected = {k for k, (_, exp) in want["keys"].items() if exp < 0 or exp > now_ms + 200}
            unsure = {k for k, (_, exp) in want["keys"].items() if exp >= 0 and abs(exp - now_ms) <= 200}
            assert alive - unsure == expected - unsure, f"at {sec}"
        finally:
            restored.stop()
            shutil.rmtree(work, ignore_errors=True)


# -- the drill ---------------------------------------------------------------------------------------
@pytest.fixture
def archived(redis_factory, monkeypatch, backup_env, check_image, tmp_path):
    """A real Redis, archive.enabled, and the archiver's loop running in a thread."""
    server = redis_factory("source", args={**AOF_ARGS, "appendfsync": "always"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    monkeypatch.setenv("REDIS_MAINT_ARCHIVE__ENABLED", "true")
    monkeypatch.setenv("REDIS_MAINT_ARCHIVE__INTERVAL", "0.2s")
    store = HistoryStore(os.environ["REDIS_MAINT_HISTORY_URL"])
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    archiver = make_archiver(server, store, target, tmp_path)
    stop = threading.Event()
    thread = threading.Thread(target=Loop(archiver, stop).run, daemon=True)
    thread.start()
    try:
        yield server, store, target
    finally:
        stop.set()
        thread.join(10)


def test_the_weekly_drill_restores_the_archive_to_latest_and_counts_its_keys(archived, cli):
    server, store, target = archived
    client = server.client()
    write(client, 300)
    client.set("ttl:gone-soon", "x", px=300)
    backup = json_out(cli("run", "backup", "--json"))
    assert backup["status"] == "succeeded", backup
    gen = ArchiveState(store, INSTANCE).current()
    manifest_key = f"{backup['summary']['target'].split('/backups/', 1)[-1]}/manifest.json"
    manifest = json.loads(b"".join(target.read_chunks(manifest_key)))
    assert manifest["archive"]["generation"] == gen.generation  # the backup names its archive position
    assert manifest["archive"]["offset"] > 0
    write(client, 50, prefix="later:")
    time.sleep(0.4)  # the short TTL runs out: archived, gone from the source
    # Reading an expired key removes it, so DBSIZE no longer waits on Redis's active expiry (slow on a busy host).
    assert client.exists("ttl:gone-soon") == 0
    result = cli("run", "backup-verify", "--json")
    assert result.exit_code == 0, result.output
    part = json_out(result)["summary"]["archive"]
    assert part["ok"] is True and part["to_time"] == "latest"
    assert part["source_keys"] == part["source_keys_after"] == client.dbsize() == 350
    assert part["keys"] - part["expired"] == 350 and part["expired"] in (0, 1)
    assert part["to"] and part["generation"] == gen.generation
    assert set(part) >= {"to", "keys", "source_keys", "expired", "ok"}


def test_a_corrupt_archive_fails_the_drill_naming_the_segment(archived, cli):
    server, store, _ = archived
    write(server.client(), 100)
    wait_for(
        lambda: (
            (ArchiveState(store, INSTANCE).current() or None)
            and ArchiveState(store, INSTANCE).current().segments
        ),
        what="a segment",
    )
    seg = ArchiveState(store, INSTANCE).segments(ArchiveState(store, INSTANCE).current().generation)[0]
    path = Path(os.environ["REDIS_MAINT_TARGET__URI"]) / seg.key(INSTANCE)
    path.write_bytes(b"not the segment")
    result = cli("run", "backup-verify", "--json")
    assert result.exit_code == 1, result.output
    row = json_out(result)
    assert row["summary"]["archive"]["ok"] is False
    assert seg.key(INSTANCE) in row["error"] and "AOF archive failed its restore drill" in row["error"]
