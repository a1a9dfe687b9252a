"""The sweep engine against a real Redis: exactly the right keys go, get TTLs, or stay untouched."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_maint import sessions
from redis_maint.sessions import Mode, Plan
from tests.support.builders.sessions import DAY_MS, HOUR_MS, put, seed, server_now_ms, session, snapshot

TINY = sessions.Batching(scan_count=1000, read_batch=3, act_batch=2)
SMALL = sessions.Batching(scan_count=40, read_batch=25, act_batch=10)
SWEEP = Plan(mode=Mode.SWEEP)

UNREADABLE = [
    b"not json",
    b"[1, 2]",
    b'{"organisationId": "org-a"}',
    b'{"createdAt": null, "organisationId": "org-a"}',
    b'{"createdAt": "1700000000000"}',
    b'{"createdAt": true}',
    b"\xff\xfe\x00 binary",
    b"",
    "future",  # createdAt an hour ahead: beyond the 5 minute skew
]
KINDS = [
    "fresh",
    "near_future",
    "stale",
    "fresh_no_ttl",
    "expired_no_ttl",
    "unreadable",
    "unreadable_no_ttl",
    "other_key",
    "non_string",
]
ENTRY = st.tuples(
    st.sampled_from(KINDS),
    st.integers(min_value=HOUR_MS, max_value=22 * HOUR_MS),  # age of a fresh session
    st.integers(min_value=26 * HOUR_MS, max_value=90 * DAY_MS),  # age of a stale one
    st.sampled_from(["org-a", "org-b", 42, None]),
    st.sampled_from(UNREADABLE),
    st.booleans(),  # a float createdAt
)


def _build(client, entries) -> dict[bytes, tuple[str, int | None]]:
    """Write the entries; return key -> (kind, expected PEXPIRETIME for repaired sessions)."""
    now = server_now_ms(client)
    expected: dict[bytes, tuple[str, int | None]] = {}
    for i, (kind, young, old, org, bad, as_float) in enumerate(entries):
        key = f"session:{i}"
        created = now - (old if kind in ("stale", "expired_no_ttl") else young)
        created = created + 0.5 if as_float else created
        value = session(created, org)
        ttl = None if kind.endswith("no_ttl") else young
        if kind == "near_future":
            value = session(now + 60_000, org)
        elif kind.startswith("unreadable"):
            value = session(now + HOUR_MS, org) if bad == "future" else bad
        elif kind == "other_key":
            key = ("sessionx:", "user:", "Session:")[i % 3] + str(i)
        if kind == "non_string":
            key = f"session:h{i}"
            client.hset(key, mapping={"createdAt": created - 40 * DAY_MS})
        else:
            put(client, key, value, ttl)
        repair = int(created) + DAY_MS if kind == "fresh_no_ttl" else None
        expected[key.encode()] = (kind, repair)
    return expected


def _expected_counts(expected: dict, delete_unreadable: bool) -> dict:
    kinds = [kind for kind, _ in expected.values()]
    unreadable = sum(k.startswith("unreadable") for k in kinds)
    return {
        "scanned": sum(k not in ("other_key", "non_string") for k in kinds),
        "stale": kinds.count("stale"),
        "expired_no_ttl": kinds.count("expired_no_ttl"),
        "ttl_repaired": kinds.count("fresh_no_ttl"),
        "unreadable": unreadable,
        "deleted_unreadable": unreadable if delete_unreadable else 0,
    }


def _counts(report: sessions.SweepReport) -> dict:
    return {
        "scanned": report.scanned,
        "stale": report.deleted["stale"],
        "expired_no_ttl": report.deleted["expired_no_ttl"],
        "ttl_repaired": report.ttl_repaired,
        "unreadable": report.unreadable,
        "deleted_unreadable": report.deleted["unreadable"],
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(ENTRY, max_size=40), delete_unreadable=st.booleans())
def test_sweep_leaves_exactly_the_expected_keys_with_the_expected_ttls(
    redis_server, entries, delete_unreadable
):
    client = redis_server.client()
    client.flushall()
    expected = _build(client, entries)
    before = snapshot(client)
    plan = replace(SWEEP, delete_unreadable=delete_unreadable)

    dry = sessions.sweep(client, redis_server.url, replace(plan, dry_run=True), batching=TINY)
    assert snapshot(client) == before, "a dry run changed data"
    real = sessions.sweep(client, redis_server.url, plan, batching=TINY)

    after = snapshot(client)
    gone = {"stale", "expired_no_ttl"} | ({"unreadable", "unreadable_no_ttl"} if delete_unreadable else set())
    assert set(after) == {k for k, (kind, _) in expected.items() if kind not in gone}
    for key, (kind, repaired_expiry) in expected.items():
        if key not in after:
            continue
        if kind == "fresh_no_ttl":
            assert after[key][1] == before[key][1]
            assert after[key][2] == repaired_expiry, key
        else:
            assert after[key] == before[key], f"{kind} key {key!r} was touched"
    want = _expected_counts(expected, delete_unreadable)
    assert _counts(real) == want
    assert _counts(dry) == want
    assert real.changed == 0 and real.vanished == 0


def test_a_session_rewritten_between_read_and_delete_survives(redis_server):
    client = redis_server.client()
    now = server_now_ms(client)
    for i in range(60):
        put(client, f"session:{i:02d}", session(now - 30 * HOUR_MS, "org-a"))
    put(client, "session:no-ttl", session(now - 2 * HOUR_MS, "org-a"), ttl_ms=None)
    fresh = session(now, "org-a", note="signed in again")
    rewritten: list[bytes] = []

    def user_signs_in_again(keys: list[bytes]) -> None:
        # another client writes between our read and our check-and-delete
        if b"session:07" in keys:
            client.set("session:07", fresh, px=DAY_MS)
            rewritten.append(b"session:07")
        if b"session:no-ttl" in keys:
            client.pexpire("session:no-ttl", 5 * HOUR_MS)  # the application set a TTL meanwhile

    report = sessions.sweep(client, redis_server.url, SWEEP, batching=SMALL, after_read=user_signs_in_again)

    assert rewritten, "the hook never ran"
    assert client.get("session:07") == fresh
    assert 0 < client.pttl("session:07") <= DAY_MS
    assert 4 * HOUR_MS < client.pttl("session:no-ttl") <= 5 * HOUR_MS, "the sweep overwrote the app's TTL"
    assert report.deleted["stale"] == 59
    assert report.ttl_repaired == 0
    assert report.changed == 2
    assert client.dbsize() == 2


def test_keys_vanishing_mid_sweep_are_not_errors(redis_server):
    client = redis_server.client()
    seed(client, 400, stale_every=2)
    first: list[bytes] = []

    def someone_deletes_the_rest(keys: list[bytes]) -> None:
        if not first:
            first.extend(keys)
            rest = [k for k in client.scan_iter(match="session:*", count=1000) if k not in set(keys)]
            client.delete(*rest)

    report = sessions.sweep(
        client, redis_server.url, SWEEP, batching=SMALL, after_read=someone_deletes_the_rest
    )

    assert first
    assert report.vanished + report.changed > 0
    assert report.deleted["stale"] == sum(1 for k in first if int(k.split(b":")[1]) % 2 == 0)
    assert client.dbsize() == len(first) - report.deleted["stale"]


def test_sweep_over_many_scan_calls_counts_exactly(redis_server):
    client = redis_server.client()
    stale = seed(client, 3000, stale_every=2)
    put(client, "cache:x", session(0), ttl_ms=None)

    dry = sessions.sweep(client, redis_server.url, replace(SWEEP, dry_run=True), batching=SMALL)
    real = sessions.sweep(client, redis_server.url, SWEEP, batching=SMALL)

    assert real.scanned == dry.scanned == 3000
    assert real.deleted == dry.deleted
    assert real.deleted["stale"] == stale == 1500
    assert sum(real.by_org.values()) == 1500
    assert client.dbsize() == 1501 and client.get("cache:x") is not None
    assert real.persistent_keys == 1, "cache:x has no TTL"


def test_org_delete_removes_that_organisation_and_nothing_else(redis_server):
    client = redis_server.client()
    now = server_now_ms(client)
    for i in range(90):
        put(client, f"session:{i}", session(now - (i % 40) * HOUR_MS, ("acme", "globex", 7)[i % 3]))
    put(client, "session:broken", b"{oops")
    put(client, "user:acme", session(now, "acme"))
    plan = Plan(mode=Mode.ORG, org="acme")

    dry = sessions.sweep(client, redis_server.url, replace(plan, dry_run=True), batching=SMALL)
    report = sessions.sweep(client, redis_server.url, plan, batching=SMALL)

    assert report.deleted["organisation"] == dry.deleted["organisation"] == 30
    assert report.unreadable == 1 and report.unreadable_samples == ["session:broken"]
    left = {k: client.get(k) for k in client.scan_iter()}
    assert len(left) == 62
    assert all(b'"acme"' not in v for k, v in left.items() if k.startswith(b"session:"))
    assert dict(report.by_org) == {"globex": 30, "7": 30}


def test_delete_all_takes_every_session_but_no_other_key(redis_server):
    client = redis_server.client()
    seed(client, 500)
    put(client, "session:broken", b"\x00\x01")
    client.hset("session:a-hash", "k", "v")
    put(client, "other:1", session(0))

    report = sessions.sweep(client, redis_server.url, Plan(mode=Mode.ALL), batching=SMALL)

    assert report.deleted["all"] == 501
    assert sorted(client.scan_iter()) == [b"other:1", b"session:a-hash"]


def test_sweep_recovers_when_the_script_cache_is_flushed(redis_server):
    client = redis_server.client()
    seed(client, 200)
    sessions.sweep(client, redis_server.url, replace(SWEEP, dry_run=True), batching=SMALL)
    client.script_flush()

    report = sessions.sweep(client, redis_server.url, SWEEP, batching=SMALL)

    assert report.deleted["stale"] == 100 and client.dbsize() == 100


def test_unreadable_samples_are_capped_and_counted_once(redis_server):
    client = redis_server.client()
    for i in range(12):
        put(client, f"session:bad{i}", b"<html>")

    report = sessions.sweep(client, redis_server.url, SWEEP, batching=SMALL, sample_limit=3)

    assert report.unreadable == 12
    assert len(report.unreadable_samples) == 3
    assert all(s.startswith("session:bad") for s in report.unreadable_samples)
    assert client.dbsize() == 12


def test_count_by_org_reads_every_session(redis_server):
    client = redis_server.client()
    seed(client, 70, orgs=7)
    put(client, "session:broken", b"nope")

    assert sessions.count(client, redis_server.url, sessions.Layout()) == {"total": 71}
    by = sessions.count(client, redis_server.url, sessions.Layout(), by_org=True, batching=SMALL)
    assert by == {"total": 71, "by_org": {f"org-{i}": 10 for i in range(7)}, "no_org": 0, "unreadable": 1}


def test_layout_and_thresholds_are_configurable(redis_server):
    client = redis_server.client()
    now = server_now_ms(client)
    client.set("sess|a", b'{"born": %d, "tenant": "t1"}' % (now - 3 * HOUR_MS), px=DAY_MS)
    client.set("sess|b", b'{"born": %d, "tenant": "t2"}' % (now - 1 * HOUR_MS), px=DAY_MS)
    client.set("session:c", session(now - 30 * HOUR_MS))
    layout = sessions.Layout(pattern="sess|*", created_field="born", org_field="tenant")
    plan = Plan(mode=Mode.SWEEP, layout=layout, lifetime_ms=DAY_MS, stale_after_ms=2 * HOUR_MS)

    report = sessions.sweep(client, redis_server.url, plan, batching=SMALL)

    assert report.deleted["stale"] == 1 and report.scanned == 2
    assert set(client.scan_iter()) == {b"sess|b", b"session:c"}
    assert dict(report.by_org) == {"t2": 1}


def test_a_session_larger_than_one_command_budget_is_still_swept(redis_server):
    client = redis_server.client()
    now = server_now_ms(client)
    put(client, "session:huge", session(now - 30 * HOUR_MS, pad="x" * 100_000))
    put(client, "session:small", session(now - 30 * HOUR_MS))

    report = sessions.sweep(client, redis_server.url, SWEEP, batching=SMALL)

    assert report.deleted["stale"] == 2 and client.dbsize() == 0


@pytest.mark.parametrize("idle_cpu, policy", [(True, os.SCHED_IDLE), (False, os.SCHED_OTHER)])
def test_the_sweep_runs_at_idle_cpu_priority_unless_told_otherwise(redis_server, idle_cpu, policy):
    client = redis_server.client()
    seed(client, 50)
    seen = set()
    sessions.sweep(
        client,
        redis_server.url,
        SWEEP,
        batching=SMALL,
        idle_cpu=idle_cpu,
        after_read=lambda keys: seen.add(os.sched_getscheduler(0)),
    )
    assert seen == {policy}
