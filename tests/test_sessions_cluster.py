"""The sweep on a real 3-primary Redis Cluster: it runs on every primary and batches by slot."""

from __future__ import annotations

from redis_maint import sessions
from tests.support.builders.sessions import DAY_MS, HOUR_MS, server_now_ms, session
from tests.support.common import json_out

SMALL = sessions.Batching(scan_count=50, read_batch=40, act_batch=30)


def _seed(cluster, n: int) -> dict[str, int]:
    cluster_client = cluster.client()
    now = server_now_ms(cluster.servers[0].client())
    expected = {"stale": 0, "expired_no_ttl": 0, "ttl_repaired": 0, "fresh": 0}
    for i in range(n):
        key = f"session:{i:05d}"
        kind = ("stale", "fresh", "fresh", "expired_no_ttl", "ttl_repaired")[i % 5]
        created = now - (30 if kind in ("stale", "expired_no_ttl") else 2) * HOUR_MS
        ttl = None if kind in ("expired_no_ttl", "ttl_repaired") else DAY_MS
        cluster_client.set(key, session(created, f"org-{i % 3}"), px=ttl)
        expected[kind] += 1
    cluster_client.set("user:keep-me", session(now - 40 * HOUR_MS))
    return expected


def test_sweep_covers_every_primary_of_a_cluster(redis_cluster):
    client = redis_cluster.client()
    expected = _seed(redis_cluster, 600)
    per_node = [n.redis_connection.dbsize() for n in client.get_primaries()]
    assert len(per_node) == 3 and all(k > 0 for k in per_node)
    entry = redis_cluster.servers[0].client()

    dry = sessions.sweep(
        entry, redis_cluster.url, sessions.Plan(mode=sessions.Mode.SWEEP, dry_run=True), batching=SMALL
    )
    report = sessions.sweep(entry, redis_cluster.url, sessions.Plan(mode=sessions.Mode.SWEEP), batching=SMALL)

    assert report.nodes == 3
    assert report.scanned == 600
    assert report.deleted["stale"] == expected["stale"]
    assert report.deleted["expired_no_ttl"] == expected["expired_no_ttl"]
    assert report.ttl_repaired == expected["ttl_repaired"]
    assert (dry.deleted, dry.ttl_repaired) == (report.deleted, report.ttl_repaired)
    remaining = sorted(k for k in client.scan_iter(match="session:*"))
    assert len(remaining) == expected["fresh"] + expected["ttl_repaired"]
    assert all(client.pttl(k) > 0 for k in remaining)
    assert client.get("user:keep-me") is not None


def test_sessions_delete_org_on_a_cluster_through_the_cli(redis_cluster, cli):
    _seed(redis_cluster, 300)
    counts = json_out(cli("sessions", "count", "--by-org", "--json"))
    assert counts["total"] == 300 and counts["by_org"]["org-1"] == 100

    row = json_out(cli("sessions", "delete", "--org", "org-1", "--yes", "--json"))

    assert row["status"] == "succeeded", row["error"]
    assert row["summary"]["deleted"]["organisation"] == 100
    assert row["summary"]["nodes"] == 3
    after = json_out(cli("sessions", "count", "--by-org", "--json"))
    assert "org-1" not in after["by_org"] and after["total"] == 200
