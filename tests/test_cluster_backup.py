"""Redis Cluster backups on the local 3-primary Cluster: each node's sidecar backs up its own node;
the shards of one slot make one cluster backup, sealed by a cluster manifest when the last completes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.crc import key_slot

from redis_maint.backup import cluster, cluster_node
from redis_maint.history import cluster_backups
from redis_maint.history.catalog import BackupRecord, Catalog
from redis_maint.history.runs import HistoryStore, RunStatus
from tests.support.common import json_out

SLOT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
CLUSTER_ID = "20261201T030000Z-cluster"


def seed(redis_cluster, n: int = 300) -> dict[str, int]:
    """n session keys spread over the shards; returns {node id: keys it holds}."""
    client = redis_cluster.client()
    try:
        for i in range(n):
            client.set(f"session:{i:05d}", json.dumps({"createdAt": 1, "organisationId": f"org{i % 7}"}))
    finally:
        client.close()
    return {_myid(s): s.client().dbsize() for s in redis_cluster.servers}


def _myid(server) -> str:
    return server.client().execute_command("CLUSTER MYID").decode()


def back_up(node, monkeypatch, settings, *, scheduled_for=SLOT, **kwargs):
    """One shard sidecar's run: its redis_url and data_dir point at its own node. A scheduled one
    claims its slot as the daemon does: on a Cluster the backup's scope is the node, so every shard's
    sidecar gets the same slot."""
    from redis_maint.run.runner import execute

    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", node.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(node.dir))
    trigger = "scheduled" if scheduled_for else "manual"
    run = execute(
        settings(),
        "backup",
        trigger=trigger,
        requested_by="daemon",
        scheduled_for=scheduled_for,
        claim=scheduled_for is not None,
        **kwargs,
    )
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def listed(cli, *args: str) -> list[dict]:
    result = cli("backups", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json_out(result)


def test_three_shards_of_one_slot_make_one_complete_cluster_backup(
    redis_cluster, backup_env, settings, cli, monkeypatch, tmp_path
):
    keys = seed(redis_cluster)
    a, b, c = redis_cluster.servers
    first = back_up(a, monkeypatch, settings)
    assert first.summary["cluster"]["id"] == CLUSTER_ID
    assert first.summary["cluster"]["status"] == "incomplete"
    back_up(b, monkeypatch, settings)

    # Two of three: one entry, incomplete, the missing shard named.
    [entry] = listed(cli)
    assert (entry["id"], entry["kind"], entry["status"]) == (CLUSTER_ID, "cluster", "incomplete")
    assert (entry["cluster"]["shards_complete"], entry["cluster"]["shards_expected"]) == (2, 3)
    assert entry["cluster"]["manifest"] is None and _myid(c) in entry["cluster"]["waiting_for"][0]
    assert [e["id"] for e in listed(cli, "--status", "incomplete")] == [CLUSTER_ID]
    table = cli("backups", "list", "-o", "wide")
    assert "incomplete, cluster 2/3 shards" in table.output and table.output.count(CLUSTER_ID) == 1

    last = back_up(c, monkeypatch, settings)
    assert last.summary["cluster"]["status"] == "complete"
    assert last.summary["cluster"]["manifest_by"] == last.id  # the last shard wrote it
    [entry] = listed(cli)
    assert entry["status"] == "complete" and entry["cluster"]["slots_covered"] == 16384
    assert {s["shard"]["node_id"] for s in entry["shards"]} == set(keys)
    assert "complete, cluster 3/3 shards" in cli("backups", "list", "-o", "wide").output

    manifest = json.loads(Path(entry["target"]).read_text())
    assert manifest["id"] == CLUSTER_ID and manifest["slots_covered"] == 16384
    assert (
        cluster_node.count(cluster_node.merge(tuple(r) for s in manifest["shards"] for r in s["slots"]))
        == 16384
    )
    for shard in manifest["shards"]:
        where = tmp_path / "backups" / shard["location"]
        assert shard["manifest_sha256"] == hashlib.sha256((where / "manifest.json").read_bytes()).hexdigest()
        rdb = next(f for f in shard["files"] if f["path"] == "dump.rdb")
        assert rdb["sha256"] == hashlib.sha256((where / "dump.rdb").read_bytes()).hexdigest()
        assert shard["dbsize"] == keys[shard["node_id"]]
        shard_manifest = json.loads((where / "manifest.json").read_text())
        assert shard_manifest["cluster"]["node_id"] == shard["node_id"]
        assert shard_manifest["cluster"]["slots"] == shard["slots"]
    # The node ids and slot ranges are the live cluster's.
    live = {_myid(s): s.client().execute_command("CLUSTER SHARDS") for s in redis_cluster.servers}
    for shard in manifest["shards"]:
        mine = next(
            x for x in next(iter(live.values())) if x[b"nodes"][0][b"id"].decode() == shard["node_id"]
        )
        assert shard["slots"] == [list(mine[b"slots"])]

    # Restore one shard's files; without --shard the command names the shards and exits 2.
    refused = cli("backups", "restore", CLUSTER_ID, "--target", str(tmp_path / "r0"))
    assert refused.exit_code == 2
    assert all(node_id in refused.stderr for node_id in keys) and not (tmp_path / "r0").exists()
    unknown = cli("backups", "restore", CLUSTER_ID, "--shard", "f" * 40, "--target", str(tmp_path / "r0"))
    assert unknown.exit_code == 2 and "no shard of node" in unknown.stderr
    node_b = _myid(b)
    done = cli(
        "backups", "restore", CLUSTER_ID, "--shard", node_b, "--target", str(tmp_path / "rb"), "--json"
    )
    assert done.exit_code == 0, done.output
    shard_b = next(s for s in manifest["shards"] if s["node_id"] == node_b)
    rdb = next(f for f in shard_b["files"] if f["path"] == "dump.rdb")
    assert hashlib.sha256((tmp_path / "rb" / "dump.rdb").read_bytes()).hexdigest() == rdb["sha256"]
    assert json_out(done)["id"] == shard_b["backup_id"]
    by_prefix = cli(
        "backups", "restore", CLUSTER_ID, "--shard", node_b[:10], "--target", str(tmp_path / "rp")
    )
    assert by_prefix.exit_code == 0, by_prefix.output
    assert (tmp_path / "rp" / "dump.rdb").read_bytes() == (tmp_path / "rb" / "dump.rdb").read_bytes()


def test_shard_backups_of_different_slots_or_ad_hoc_runs_do_not_mix(
    redis_cluster, backup_env, settings, cli, monkeypatch
):
    seed(redis_cluster, 30)
    a, b, c = redis_cluster.servers
    back_up(a, monkeypatch, settings)
    back_up(b, monkeypatch, settings, scheduled_for=SLOT.replace(hour=4))  # the next slot
    lone = back_up(c, monkeypatch, settings, scheduled_for=None)  # ad hoc, no --cluster-id
    assert lone.summary["cluster"]["id"] == f"adhoc-{lone.summary['backup_id']}"
    entries = listed(cli)
    assert len(entries) == 3 and {e["status"] for e in entries} == {"incomplete"}
    # An ad hoc cluster backup: the same --cluster-id on every shard's sidecar.
    for node in (a, b, c):
        run = back_up(
            node, monkeypatch, settings, scheduled_for=None, params={"cluster_id": "before-upgrade"}
        )
    assert run.summary["cluster"]["status"] == "complete"
    assert [e["status"] for e in listed(cli) if e["id"] == "before-upgrade"] == ["complete"]


def test_run_backup_takes_a_cluster_id_and_refuses_a_bad_one(redis_cluster, backup_env, cli, monkeypatch):
    node = redis_cluster.servers[0]
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", node.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(node.dir))
    bad = cli("run", "backup", "--cluster-id", "../x", "--json")
    assert bad.exit_code == 2 and "not a cluster backup id" in bad.stderr
    ok = cli("run", "backup", "--cluster-id", "adhoc-1", "--json")
    assert ok.exit_code == 0, ok.output
    assert json_out(ok)["summary"]["cluster"]["id"] == "adhoc-1"


def test_verify_deep_loads_each_shard_in_its_own_server(
    redis_cluster, backup_env, settings, cli, monkeypatch, check_image, no_leftovers
):
    keys = seed(redis_cluster, 120)
    for node in redis_cluster.servers:
        back_up(node, monkeypatch, settings)
    result = cli("backups", "verify", CLUSTER_ID, "--deep", "--json")
    out = json_out(result)
    assert result.exit_code == 0, out["problems"]
    assert out["ok"] and out["manifest"]["ok"] and out["manifest"]["slots_covered"] == 16384
    assert {s["node_id"] for s in out["shards"]} == set(keys)
    for shard in out["shards"]:
        deep = shard["result"]["deep"]
        assert deep["keys"]["loaded"] == keys[shard["node_id"]] and deep["keys"]["missing"] == 0
        sampled = deep["server"]["shard_slots"]
        assert sampled["sampled"] == keys[shard["node_id"]] and sampled["outside"] == 0
    runs = json_out(cli("history", "--job", "backup-check", "--json"))
    assert len(runs) == 3 and {r["status"] for r in runs} == {"succeeded"}


def test_verify_fails_an_incomplete_cluster_backup(redis_cluster, backup_env, settings, cli, monkeypatch):
    seed(redis_cluster, 30)
    for node in redis_cluster.servers[:2]:
        back_up(node, monkeypatch, settings)
    result = cli("backups", "verify", CLUSTER_ID, "--json")
    out = json_out(result)
    assert result.exit_code == 1 and not out["ok"]
    assert "2 of 3 shards complete" in out["manifest"]["problems"][0]
    assert [s["ok"] for s in out["shards"]].count(True) == 2  # the two present shards check out
    human = cli("backups", "verify", CLUSTER_ID)
    assert human.exit_code == 1
    assert f"cluster backup {CLUSTER_ID}: FAILED · 2/3 shards" in human.output


# ---- the manifest claim: one writer, whatever the interleaving --------------------------------------
def test_only_one_run_claims_a_cluster_manifest_and_a_dead_claim_is_taken_over(history_url):
    store = HistoryStore(history_url)
    first = store.start_run("backup", "scheduled", "daemon")
    second = store.start_run("backup", "scheduled", "daemon")
    assert cluster_backups.claim(store, "default", CLUSTER_ID, first)
    assert not cluster_backups.claim(store, "default", CLUSTER_ID, second)  # the first is running
    store.finish_run(first, RunStatus.FAILED, {}, "upload failed")
    assert cluster_backups.claim(store, "default", CLUSTER_ID, second)  # gone without writing
    cluster_backups.written(
        store,
        "default",
        CLUSTER_ID,
        run_id=second,
        target_root="/t",
        location="k",
        sha256="0" * 64,
        shards=[],
    )
    third = store.start_run("backup", "scheduled", "daemon")
    assert not cluster_backups.claim(store, "default", CLUSTER_ID, third)  # written: nothing to do


# ---- pure logic ---------------------------------------------------------------------------------------
def _shard(node: str, slots, topology, status="complete") -> BackupRecord:
    return BackupRecord(
        id=f"20261201T030000Z-{node}",
        run_id=1,
        instance="default",
        target="t",
        target_root="/t",
        location="l",
        created_at=SLOT,
        status=status,
        cluster_id=CLUSTER_ID,
        shard={
            "node_id": node,
            "slots": slots,
            "topology": [{"primary_id": p, "slots": s} for p, s in topology],
        },
    )


THREE = [("a", [[0, 5460]]), ("b", [[5461, 10922]]), ("c", [[10923, 16383]])]


def test_a_cluster_backup_needs_every_shard_the_topology_had():
    shards = [_shard(p, s, THREE) for p, s in THREE[:2]]
    state = cluster.assess("default", CLUSTER_ID, shards, None)
    assert (state.shards_complete, state.shards_expected, state.slots_covered) == (2, 3, 10923)
    assert not state.all_shards_complete and state.missing() == ["c (slots 10923-16383)"]
    state = cluster.assess("default", CLUSTER_ID, [*shards, _shard("c", [[10923, 16383]], THREE)], None)
    assert state.all_shards_complete and state.status == "incomplete"  # until the manifest is written
    assert cluster.assess("default", CLUSTER_ID, state.shards, {"written_at": SLOT}).status == "complete"
    failed = [*shards, _shard("c", [[10923, 16383]], THREE, status="failed")]
    assert not cluster.assess("default", CLUSTER_ID, failed, None).all_shards_complete


def test_shards_that_saw_different_slot_layouts_never_make_a_complete_backup():
    moved = [("a", [[0, 6000]]), ("b", [[6001, 10922]]), ("c", [[10923, 16383]])]
    shards = [
        _shard("a", [[0, 5460]], THREE),
        _shard("b", [[6001, 10922]], moved),
        _shard("c", [[10923, 16383]], THREE),
    ]
    state = cluster.assess("default", CLUSTER_ID, shards, None)
    assert not state.all_shards_complete and "different slot layouts" in state.problems[0]


def test_a_backup_during_which_slots_moved_is_refused():
    before = {
        "node_id": "a",
        "primary_id": "a",
        "slots": [[0, 5460]],
        "topology": [{"primary_id": "a", "slots": [[0, 5460]]}],
    }
    after = {**before, "topology": [{"primary_id": "a", "slots": [[0, 5000]]}]}
    assert cluster_node.moved(before, dict(before)) is None
    assert "slots moved" in cluster_node.moved(before, after)
    assert "left cluster mode" in cluster_node.moved(before, None)


def test_cluster_nodes_text_gives_the_same_shards_as_cluster_shards():
    text = (
        "a1 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460\n"
        "b1 127.0.0.1:3@4 master - 0 0 2 connected 5461-10921 10922\n"
        "c1 127.0.0.1:5@6 master - 0 0 3 connected 10923-16383 [16383->-x]\n"
        "c2 127.0.0.1:7@8 slave c1 0 0 3 connected\n"
    )
    shards = {s["primary_id"]: s for s in cluster_node._parse_nodes(text)}
    assert shards["b1"]["slots"] == ((5461, 10922),) and shards["c1"]["nodes"] == {"c1", "c2"}
    assert shards["a1"]["slots"] == ((0, 5460),)


def test_the_drill_finds_keys_outside_a_shards_slots():
    from redis_maint.checks.restore_drill import slot_check

    inside = [k for k in (f"session:{i}" for i in range(200)) if key_slot(k.encode()) <= 5460][:5]
    outside = [k for k in (f"session:{i}" for i in range(200)) if key_slot(k.encode()) > 5460][:2]
    assert slot_check(inside, [[0, 5460]])["outside"] == 0
    found = slot_check(inside + outside, [[0, 5460]])
    assert (found["sampled"], found["outside"], found["examples"]) == (7, 2, outside)


@pytest.mark.parametrize("value", ["", "-x", "a/b", "x" * 65])
def test_a_cluster_id_is_a_safe_name(value):
    with pytest.raises(ValueError):
        cluster.check_cluster_id(value)


def test_the_listing_keeps_plain_backups_as_they_are(tmp_path):
    store = HistoryStore(f"sqlite:///{tmp_path}/h.db")
    catalog = Catalog(store)
    plain = BackupRecord(
        id="20261201T030000Z-aaaaaa",
        run_id=1,
        instance="default",
        target="t",
        target_root="/t",
        location="l",
        created_at=SLOT,
        status="complete",
    )
    catalog.add(plain)
    [row] = cluster.listing(catalog, catalog.list())
    assert row == catalog.get(plain.id).to_json() and "cluster_id" not in row


def test_retention_keeps_or_prunes_a_cluster_backups_shards_together():
    from datetime import timedelta

    from redis_maint.backup.retention import Policy

    def day(n: int, nodes=THREE, cid=None) -> list[BackupRecord]:
        when = SLOT + timedelta(days=n)
        return [
            BackupRecord(
                id=f"{when:%Y%m%dT%H%M%SZ}-{p}",
                run_id=1,
                instance="default",
                target="t",
                target_root="/t",
                location="l",
                created_at=when + timedelta(seconds=i),  # shards finish one after the other
                status="complete",
                cluster_id=cid or f"{when:%Y%m%dT%H%M%SZ}-cluster",
                shard={
                    "node_id": p,
                    "slots": s,
                    "topology": [{"primary_id": q, "slots": t} for q, t in THREE],
                },
            )
            for i, (p, s) in enumerate(nodes)
        ]

    days = [day(n) for n in range(5)]
    lone_old = day(1, THREE[:1], cid="adhoc-old")  # an ad hoc shard without the others
    lone_new = day(6, THREE[:1], cid="adhoc-new")
    records = [r for d in days for r in d] + lone_old + lone_new
    policy = Policy(keep_daily=2, keep_weekly=0, keep_monthly=0, keep_within=timedelta(0))
    decided = cluster.retention_plan(records, policy, UTC, SLOT + timedelta(days=6, hours=1))
    kept_days = [n for n, d in enumerate(days) if all(r.id in decided.keep for r in d)]
    pruned_days = [n for n, d in enumerate(days) if all(r.id in decided.prune for r in d)]
    assert (kept_days, pruned_days) == ([3, 4], [0, 1, 2])  # whole days, never one shard of three
    assert lone_old[0].id in decided.prune and "incomplete" in decided.why_pruned[lone_old[0].id]
    assert lone_new[0].id in decided.keep  # may still be waiting for its other shards


def test_shards_finishing_at_once_write_the_cluster_manifest_exactly_once(history_url, tmp_path):
    import threading

    from redis_maint.storage import open_target

    store = HistoryStore(history_url)
    catalog, target = Catalog(store), open_target(str(tmp_path / "t"))
    for p, s in THREE:
        record = _shard(p, s, THREE)
        catalog.add(
            BackupRecord(**{**record.__dict__, "target_root": target.uri, "location": f"default/{p}"})
        )
        target.put_bytes(f"default/{p}/manifest.json", b"{}")
    runs = [store.start_run("backup", "scheduled", "daemon") for _ in THREE]
    results: dict[int, dict] = {}
    start = threading.Barrier(len(runs))

    def finish(run_id: int) -> None:
        start.wait()
        results[run_id] = cluster.finish(
            catalog, target, instance="default", cluster_id=CLUSTER_ID, run_id=run_id
        )

    threads = [threading.Thread(target=finish, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writers = [r for r, out in results.items() if out.get("manifest_by") == r]
    assert len(writers) == 1  # the others name the writer
    assert {out["manifest_by"] for out in results.values()} == set(writers)
    keys = [o.key for o in target.list("clusters/")]
    assert keys == [cluster.manifest_key("default", CLUSTER_ID)]
    row = cluster_backups.get(store, "default", CLUSTER_ID)
    assert row["claimed_by_run"] == writers[0] and row["written_at"] is not None
