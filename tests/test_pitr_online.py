"""`backups restore (ID | --to-time T) --online --yes`: restore into the running Redis.

A real live redis-server (appendonly yes, aof-timestamp-enabled yes) with data takes the restored
dataset over by replication from a throwaway redis-server process on this host: after it, its
DEBUG DIGEST equals the dataset's, it is a primary again with its old masterauth, a restart from
its own AOF serves the same data, and no throwaway server is left. The refusals (a replica, a
Cluster node, Sentinel, an address the live Redis cannot reach, no --yes) change nothing and record
nothing. A throwaway server killed mid-sync leaves the live Redis a primary with its old data.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from redis_maint.archive import online_server
from redis_maint.archive.archiver import Archiver, ArchiverOptions
from redis_maint.archive.state import ArchiveState
from redis_maint.storage import open_target
from tests.support.builders.backups import fill_sessions, fill_types
from tests.support.common import ROOT, free_port, json_out, wait_for
from tests.support.history import current_store
from tests.support.services.redis import REDIS_SERVER, RedisServer

AOF_ARGS = {"aof-timestamp-enabled": "yes"}
OLD_MASTERAUTH = "old-masterauth-kept"
INSTANCE = "default"


@pytest.fixture
def live(redis_factory, monkeypatch, tmp_path, backup_env) -> RedisServer:
    """The live Redis the sidecar maintains, with a masterauth of its own and a snapshot dir for staging."""
    server = redis_factory("live", args=AOF_ARGS)
    server.client().config_set("masterauth", OLD_MASTERAUTH)
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    monkeypatch.setenv("REDIS_MAINT_DOCKER__SNAPSHOT_DIR", str(tmp_path / "check"))
    return server


def digest(server: RedisServer) -> str:
    return server.client().execute_command("DEBUG", "DIGEST").decode()


def throwaway_pids(snapshot_dir: Path) -> list[int]:
    """redis-server processes working in a staging dir under `snapshot_dir` (Redis chdirs to its `dir`
    and rewrites its command line, so the working directory is what tells)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if comm.startswith("redis-server") and cwd.startswith(str(snapshot_dir)):
            found.append(int(entry.name))
    return found


def backup(cli) -> str:
    run = json_out(cli("run", "backup", "--json"))
    assert run["status"] == "succeeded", run["error"]
    return run["summary"]["backup_id"]


def online_restore(cli, *args: str):
    return cli("backups", "restore", *args, "--online", "--yes", "--json")


def assert_primary_with_old_masterauth(server: RedisServer) -> None:
    client = server.client()
    assert client.info("replication")["role"] == "master"
    assert client.config_get("masterauth")["masterauth"] == OLD_MASTERAUTH


def restarted(server: RedisServer) -> RedisServer:
    """The same Redis stopped and started again on its own files (its AOF)."""
    server.stop()
    return server.start()


def refused_writes(server: RedisServer, counted: list[int]) -> None:
    """Once the sync runs, write (a DEL of a key that never exists: a no-op once it succeeds) until
    a write succeeds again; each READONLY refusal is counted."""
    import redis

    client = server.client()
    wait_for(lambda: client.info("replication").get("master_sync_in_progress") == 1, timeout=30)
    while True:
        try:
            client.delete("never-exists")
            return
        except redis.exceptions.ReadOnlyError:
            counted.append(1)
        except redis.exceptions.BusyLoadingError:
            pass  # LOADING while it loads the sync: not a READONLY refusal
        time.sleep(0.005)


def test_online_restore_of_a_backup_replaces_the_live_dataset(live, cli, tmp_path, monkeypatch):
    client = live.client()
    fill_sessions(client, 300)
    fill_types(client)
    backup_id = backup(cli)
    restored_digest, restored_keys = digest(live), client.dbsize()
    client.delete(*[f"session:{i:08d}" for i in range(100)])  # the mistake the restore undoes
    client.set("session:written-after", "x")
    before = client.dbsize()
    # A client writing during the sync is refused (READONLY), and the result counts each refusal. The
    # throwaway server writes its RDB a little slowly (2 ms a key) so that the window is visible.
    monkeypatch.setattr(online_server, "THROWAWAY_EXTRA", {"rdb-key-save-delay": "2000"})
    writer = threading.Thread(target=refused_writes, args=(live, counted := []))
    writer.start()

    result = online_restore(cli, backup_id)
    writer.join(30)

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["id"] == backup_id and body["online"] is True
    assert body["lost"]["writes_refused"] == len(counted) > 0
    assert digest(live) == restored_digest == body["throwaway"]["digest"] == body["after"]["digest"]
    assert body["digest_matches"] is True
    assert body["throwaway"]["host"] == "127.0.0.1"  # where the live Redis sees the sidecar: bound there only
    assert (body["keys_before"], body["keys_after"]) == (before, restored_keys) == (before, client.dbsize())
    assert body["aof_rewrite"]["status"] == "ok"
    assert body["lost"]["window"]["seconds"] >= 0 and "READONLY" in body["lost"]["note"]
    assert_primary_with_old_masterauth(live)
    assert throwaway_pids(tmp_path / "check") == []
    assert not list((tmp_path / "check").glob("online-*")), "the staging dir is removed"
    row = current_store().list(job="backup-restore")[0]
    assert row.status == "succeeded" and row.requested_by == "tester"
    assert (row.summary["keys_before"], row.summary["keys_after"]) == (before, restored_keys)
    assert row.summary["before"]["digest"] != row.summary["after"]["digest"] == restored_digest
    assert row.summary["params"]["online"] is True
    assert OLD_MASTERAUTH not in json.dumps(row.summary)
    # The live AOF holds the restored data: the same Redis restarted on its files serves it.
    assert digest(restarted(live)) == restored_digest


def test_online_restore_to_a_time_gives_the_dataset_of_that_second(live, cli, tmp_path, check_image):
    store, target = current_store(), open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    options = ArchiverOptions(
        instance=INSTANCE, data_dir=live.dir, staging_dir=tmp_path / "arch-staging", interval_s=0.2
    )
    archiver = Archiver(options, live.client(), target, ArchiveState(store, INSTANCE))
    instants = []
    try:
        archiver.tick()
        for i in range(3):
            sec = fresh_second(live, instants[-1][0] if instants else 0)
            pipe = live.client().pipeline(transaction=False)
            for k in range(5):
                pipe.set(f"session:{i}-{k}", f"v{i}")
            pipe.delete(f"session:{i - 1}-0")
            pipe.execute()
            assert live.client().time()[0] == sec, "the step straddled a second"
            instants.append((sec, digest(live), live.client().dbsize()))
            archiver.tick()
    finally:
        archiver.close()
    sec, want, keys = instants[1]
    when = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    result = online_restore(cli, "--to-time", when)

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["to_time"] == when and body["proof"]["digest"] == want
    assert digest(live) == want and live.client().dbsize() == keys == body["keys_after"]
    assert body["keys_before"] == instants[-1][2]
    assert_primary_with_old_masterauth(live)
    assert throwaway_pids(tmp_path / "check") == []


def fresh_second(server: RedisServer, last: int) -> int:
    while True:
        sec, micros = server.client().time()
        if sec > last and micros < 400_000:
            return sec
        time.sleep(0.02)


def refused(cli, live: RedisServer, *args: str, recorded: int = 0):
    result = cli("backups", "restore", *args, "--json")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert len(current_store().list(job="backup-restore")) == recorded, "a refusal records nothing"
    return result.stderr


def test_without_yes_it_says_what_happens_and_what_is_lost_and_changes_nothing(live, cli):
    fill_sessions(live.client(), 20)
    backup_id = backup(cli)
    live.client().set("session:later", "x")
    before = digest(live)
    message = refused(cli, live, backup_id, "--online")
    assert f"with backup {backup_id}" in message and "21 keys now" in message
    assert "writes made to the live Redis during the sync are refused with READONLY" in message
    assert "LOADING" in message and "--yes" in message and "bound to 127.0.0.1" in message
    assert digest(live) == before
    assert_primary_with_old_masterauth(live)


def test_a_replica_is_refused(live, redis_factory, cli):
    primary = redis_factory("primary")
    live.client().replicaof("127.0.0.1", primary.port)
    message = refused(cli, live, "20260101T000000Z-abcdef", "--online", "--yes")
    assert "is a replica (role:slave)" in message and f"127.0.0.1:{primary.port}" in message
    assert live.client().info("replication")["master_port"] == primary.port  # left as it was


def test_a_cluster_node_is_refused(redis_cluster, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_MAINT_DOCKER__SNAPSHOT_DIR", str(tmp_path / "check"))
    message = refused(cli, None, "--to-time", "latest", "--online", "--yes")
    assert "Redis Cluster node" in message and "--shard NODE_ID --target DIR" in message


def test_sentinel_and_an_unreachable_address_are_refused(live, cli, monkeypatch):
    message = refused(cli, live, "--to-time", "latest", "--online", "--yes", "--online-host", "192.0.2.7")
    assert "--online-host 192.0.2.7 is not an address of this host" in message
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis+sentinel://127.0.0.1:1/mymaster")
    monkeypatch.setenv("REDIS_MAINT_NODE_URL", live.url)
    message = refused(cli, live, "--to-time", "latest", "--online", "--yes")
    assert "refused behind Sentinel" in message and "reconfigures it or fails over" in message
    assert_primary_with_old_masterauth(live)


def test_online_takes_no_target(live, cli, tmp_path):
    result = cli("backups", "restore", "--to-time", "latest", "--online", "--target", str(tmp_path / "x"))
    assert result.exit_code == 2 and "no --target" in result.output
    missing = cli("backups", "restore", "--to-time", "latest")
    assert missing.exit_code == 2 and "--target" in missing.output and "--online" in missing.output


def test_a_throwaway_server_killed_mid_sync_leaves_the_live_redis_a_primary(live, cli, tmp_path, monkeypatch):
    client = live.client()
    fill_sessions(client, 200)
    backup_id = backup(cli)
    client.set("session:after-the-backup", "kept")
    before = digest(live)
    # The throwaway server writes its RDB slowly (20 ms a key): the sync is still running when it dies.
    monkeypatch.setattr(online_server, "THROWAWAY_EXTRA", {"rdb-key-save-delay": "20000"})
    killed: list[int] = []

    def kill_mid_sync() -> None:
        watcher = live.client()
        wait_for(lambda: watcher.info("replication").get("master_sync_in_progress") == 1, timeout=30)
        killed.extend(throwaway_pids(tmp_path / "check"))
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill_mid_sync)
    thread.start()
    result = online_restore(cli, backup_id)
    thread.join(30)

    assert killed, "the throwaway server was found and killed mid-sync"
    assert result.exit_code == 1, result.output
    assert "the throwaway redis-server exited during the sync" in result.stderr
    assert "put back to REPLICAOF NO ONE" in result.stderr and "unchanged" in result.stderr
    assert_primary_with_old_masterauth(live)
    assert digest(live) == before and client.get("session:after-the-backup") == b"kept"
    assert throwaway_pids(tmp_path / "check") == []
    row = current_store().list(job="backup-restore")[0]
    assert row.status == "failed" and "exited during the sync" in row.error
    assert row.summary["keys_before"] == row.summary["keys_after"] == 201
    assert row.summary["data"].startswith("unchanged")


@pytest.fixture
def shipped(tmp_path, monkeypatch, backup_env):
    """A redis-server on infra/redis/redis.conf (port, bind and dir moved), maintained as its
    redis-maint ACL user: DEBUG is off there, so digests are None and keys are compared instead."""
    port = free_port()
    moved = {"port": str(port), "bind": "127.0.0.1", "dir": str(tmp_path)}
    lines = []
    for line in (ROOT / "infra" / "redis" / "redis.conf").read_text().splitlines():
        word = line.split()[0] if line.split() else ""
        lines.append(f"{word} {moved[word]}" if word in moved else line)
    conf = tmp_path / "shipped.conf"
    conf.write_text("\n".join([*lines, f"logfile {tmp_path}/redis.log"]) + "\n")
    server = RedisServer(dir=tmp_path, port=port)
    server.command = lambda: [str(REDIS_SERVER), str(conf)]
    server.start()
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://redis-maint:change-me@127.0.0.1:{port}/0")
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_MAINT_DOCKER__SNAPSHOT_DIR", str(tmp_path / "check"))
    yield server
    server.stop()


def test_the_shipped_acl_user_can_restore_online(shipped, cli, tmp_path):
    admin = shipped.client()
    fill_sessions(admin, 30)
    backup_id = backup(cli)
    admin.delete(*[f"session:{i:08d}" for i in range(10)])

    result = online_restore(cli, backup_id)

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["keys_before"], body["keys_after"]) == (20, 30) and admin.exists("session:00000000")
    assert body["digest_matches"] is None and "refuses DEBUG DIGEST" in " ".join(body["warnings"])
    assert (
        admin.info("replication")["role"] == "master" and admin.config_get("masterauth")["masterauth"] == ""
    )
    assert throwaway_pids(tmp_path / "check") == []
