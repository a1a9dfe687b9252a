"""`redis-maint keys big` and scan_big_keys on real redis-servers: the largest keys by MEMORY USAGE,
the bytes per prefix, organisations of sessions, what a scan skips, the JSON contract and exit codes."""

from __future__ import annotations

import json
import re

import pytest

from redis_maint.keyspace import scan_big_keys
from redis_maint.keyspace.report import OTHER, PrefixTable, TopHeap
from tests.support.builders.sessions import DAY_MS, put, server_now_ms, session
from tests.support.common import json_out
from tests.support.pty_cli import run_in_pty

TOP_KEYS = {"key", "type", "bytes", "ttl_s", "org"}
PREFIX_KEYS = {"prefix", "keys", "bytes", "no_ttl"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _mixed(client) -> None:
    """Sessions of three organisations, a few big keys of several types, other prefixes."""
    now = server_now_ms(client)
    for i in range(40):
        put(client, f"session:s{i:02d}", session(now, f"org-{i % 3}", pad="p" * (i * 10)))
    put(client, "session:huge", session(now, "acme", pad="x" * 20_000), ttl_ms=None)
    client.rpush("queue:jobs", *[f"job-{i}" * 20 for i in range(500)])
    client.hset("cache:user:1", mapping={f"f{i}": "v" * 50 for i in range(300)})
    client.set("ratelimit:a", 5, px=60_000)
    client.set("ratelimit:b", 7)
    client.set("lonely", "y" * 5000)


def _scan(client, **kwargs):
    return scan_big_keys(client, idle_cpu=False, **kwargs)


def test_top_keys_are_the_largest_by_memory_usage_in_order(redis_server):
    client = redis_server.client()
    _mixed(client)
    usage = {k.decode(): client.memory_usage(k, samples=5) for k in client.scan_iter(count=1000)}

    report = _scan(client, top=5)

    expected = sorted(usage.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(k.key, k.bytes) for k in report.top] == expected
    assert report.scanned == len(usage) == 46
    assert report.complete and report.vanished == 0
    kinds = {k.key: k.type for k in report.top}
    assert kinds["queue:jobs"] == "list" and kinds["cache:user:1"] == "hash"
    assert kinds["session:huge"] == "string"


def test_prefix_rows_count_keys_bytes_and_keys_without_a_ttl(redis_server):
    client = redis_server.client()
    _mixed(client)

    rows = {r.prefix: r for r in _scan(client).by_prefix}

    sessions = [k for k in client.scan_iter(match="session:*")]
    assert rows["session:"].keys == 41
    assert rows["session:"].bytes == sum(client.memory_usage(k, samples=5) for k in sessions)
    assert rows["session:"].no_ttl == 1
    assert rows["session:"].mean == round(rows["session:"].bytes / 41)
    assert (rows["ratelimit:"].keys, rows["ratelimit:"].no_ttl) == (2, 1)
    assert rows["cache:"].keys == 1  # the first segment only: cache:user:1 is under cache:
    assert (rows["(no prefix)"].keys, rows["(no prefix)"].no_ttl) == (1, 1)
    assert set(rows) == {"session:", "queue:", "cache:", "ratelimit:", "(no prefix)"}
    assert [r.bytes for r in rows.values()] == sorted((r.bytes for r in rows.values()), reverse=True)


def test_top_sessions_name_their_organisation_and_other_keys_none(redis_server):
    client = redis_server.client()
    _mixed(client)
    # larger than the 64 KiB read for an organisation: found in the head of the value
    put(client, "session:giant", session(0, "globex", pad="z" * 100_000))
    put(client, "session:numeric", session(0, 42, pad="n" * 30_000))

    report = _scan(client, top=5)

    orgs = {k.key: k.org for k in report.top}
    assert orgs == {
        "session:giant": "globex",
        "session:numeric": "42",
        "session:huge": "acme",
        "queue:jobs": None,
        "cache:user:1": None,
    }
    ttl = {k.key: k.ttl_s for k in report.top}
    assert ttl["session:huge"] is None and ttl["session:giant"] > DAY_MS / 1000 - 60


def test_organisation_field_and_session_prefix_come_from_the_sessions_settings(
    redis_server, cli, monkeypatch
):
    client = redis_server.client()
    client.set("sess:1", json.dumps({"tenant": "initech", "pad": "x" * 500}))
    client.set("sess:2", json.dumps({"organisationId": "nope", "pad": "x" * 400}))
    monkeypatch.setenv("REDIS_MAINT_SESSIONS__KEY_PATTERN", "sess:*")
    monkeypatch.setenv("REDIS_MAINT_SESSIONS__ORGANISATION_FIELD", "tenant")

    out = json_out(cli("keys", "big", "--json"))

    assert [(k["key"], k["org"]) for k in out["top"]] == [("sess:1", "initech"), ("sess:2", None)]
    assert [r["prefix"] for r in out["by_prefix"]] == ["sess:"]


def test_pattern_restricts_the_scan(redis_server):
    client = redis_server.client()
    _mixed(client)

    report = _scan(client, pattern="ratelimit:*")

    assert report.scanned == 2
    assert {k.key for k in report.top} == {"ratelimit:a", "ratelimit:b"}
    assert [(r.prefix, r.keys) for r in report.by_prefix] == [("ratelimit:", 2)]


def test_a_key_deleted_between_scan_and_memory_usage_is_skipped(redis_server):
    client = redis_server.client()
    _mixed(client)
    other = redis_server.client()
    deleted: list[bytes] = []

    def delete_the_big_ones(keys: list[bytes]) -> None:
        doomed = [k for k in keys if k in (b"queue:jobs", b"session:huge")]
        if doomed:
            other.delete(*doomed)
            deleted.extend(doomed)

    report = _scan(client, top=3, after_scan=delete_the_big_ones)

    assert sorted(deleted) == [b"queue:jobs", b"session:huge"]
    assert report.vanished == 2
    assert report.scanned == 46
    assert "queue:jobs" not in {k.key for k in report.top} and report.top[0].key == "cache:user:1"
    rows = {r.prefix: r for r in report.by_prefix}
    assert "queue:" not in rows and rows["session:"].keys == 40


def test_a_time_budget_stops_the_scan_and_says_it_is_incomplete(redis_server):
    client = redis_server.client()
    client.execute_command("DEBUG", "POPULATE", "3000", "k")

    cut = _scan(client, time_budget_s=0, scan_count=100)
    full = _scan(client, time_budget_s=60, scan_count=100)

    assert not cut.complete and 0 < cut.scanned < 3000
    assert sum(r.keys for r in cut.by_prefix) == cut.scanned
    assert full.complete and full.scanned == 3000
    assert cut.to_json()["complete"] is False


def test_it_runs_at_maxmemory_when_redis_refuses_writes(redis_factory):
    """The scan's script is declared read-only (no-writes): Redis at maxmemory with noeviction
    refuses scripts that may write, which is when an operator needs this command."""
    server = redis_factory(args={"maxmemory": "2mb", "maxmemory-policy": "noeviction"})
    client = server.client()
    import redis

    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(10_000):
            client.set(f"fill:{i}", "x" * 1000)

    report = _scan(client, top=1)

    assert report.scanned > 100 and report.by_prefix[0].prefix == "fill:"


def test_the_tables_stay_bounded():
    table = PrefixTable(b"session:", limit=3)
    for key in (b"session:1", b"a:1", b"b:1", b"c:1", b"d:1", b"nocolon", b"a:2"):
        table.add(key, 10, no_ttl=False)
    rows = {r.prefix: r.keys for r in table.to_rows()}
    assert rows == {"session:": 1, "a:": 2, "b:": 1, OTHER: 3}
    assert table.to_rows()[-1].prefix == OTHER

    heap = TopHeap(2)
    for size, key in ((5, b"a"), (9, b"b"), (9, b"b"), (7, b"c"), (1, b"d")):
        heap.offer(size, key, -1, 0)
    assert [(c.key, c.size) for c in heap.largest()] == [(b"b", 9), (b"c", 7)]


def test_it_covers_every_primary_of_a_cluster(redis_cluster):
    client = redis_cluster.client()
    for i in range(300):
        client.set(f"session:{i:04d}", session(0, f"org-{i % 2}", pad="p" * i))
    client.set("blob", "b" * 10_000)

    report = _scan(redis_cluster.servers[0].client(), top=3, url=redis_cluster.url, batch=40)

    usage, per_node = {}, []
    for primary in client.get_primaries():
        node = primary.redis_connection
        mine = {k.decode(): node.memory_usage(k, samples=5) for k in node.scan_iter(count=500)}
        usage |= mine
        per_node.append(set(mine))
    assert report.nodes == 3
    assert report.scanned == 301 and report.moved == 0
    expected = sorted(usage.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [(k.key, k.bytes) for k in report.top] == expected
    assert report.top[0].key == "blob"
    assert {k.org for k in report.top[1:]} <= {"org-0", "org-1"} and report.top[1].org is not None
    assert sum(r.keys for r in report.by_prefix) == 301

    entry = redis_cluster.servers[0].client()
    cut = _scan(entry, url=redis_cluster.url, time_budget_s=0, scan_count=10, top=1000)
    assert not cut.complete and 0 < cut.scanned < 301 and len(cut.top) == cut.scanned
    seen = {k.key for k in cut.top}
    assert sum(bool(seen & keys) for keys in per_node) == 1  # the spent budget skipped the other nodes


# -- the CLI ------------------------------------------------------------------------------------------


def test_json_is_the_documented_contract(redis_server, cli):
    _mixed(redis_server.client())

    result = cli("keys", "big", "--top", "3", "--samples", "10", "--json")

    assert result.exit_code == 0, result.output
    out = json_out(result)
    assert {"scanned", "top", "by_prefix", "duration_s"} <= set(out)
    assert out["scanned"] == 46 and out["complete"] is True
    assert len(out["top"]) == 3 and all(set(k) == TOP_KEYS for k in out["top"])
    assert all(set(r) >= PREFIX_KEYS for r in out["by_prefix"])
    huge = next(k for k in out["top"] if k["key"] == "session:huge")
    assert huge == {
        "key": "session:huge",
        "type": "string",
        "bytes": redis_server.client().memory_usage("session:huge"),
        "ttl_s": None,
        "org": "acme",
    }
    assert isinstance(out["duration_s"], float)


@pytest.mark.parametrize(
    "args",
    [("--top", "0"), ("--samples", "0"), ("--top", "x"), ("--pattern", ""), ("--no-such-flag",)],
)
def test_bad_flags_exit_2(cli, args):
    result = cli("keys", "big", *args)
    assert result.exit_code == 2, result.output


def test_unreachable_redis_exits_1_with_a_clear_message(cli_process, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://:s3cret@127.0.0.1:1/0")

    done = cli_process("keys", "big", "--json")

    assert done.returncode == 1
    assert done.stdout == ""
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


def test_on_an_80_column_terminal_it_shows_progress_and_two_tables_that_fit(redis_server):
    client = redis_server.client()
    client.execute_command("DEBUG", "POPULATE", "400000", "key")  # a scan of seconds: the bar shows
    client.set("session:" + "long-name-" * 12, session(0, "acme", pad="q" * 3000))

    run = run_in_pty("keys", "big", "--top", "3", columns=80)

    assert run.code == 0, run.terminal
    shown = ANSI.sub("", run.terminal).replace("\r", "")
    assert re.search(r"scanning keys .*[\d,]+/400,001 keys [\d.]+k? keys/s", shown), shown
    final = shown.rsplit("keys big:", 1)[1]
    assert re.search(r"^ 400,001 keys, [\d.]+ MiB, in ", final), final
    lines = final.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "largest keys" in final and "memory by prefix" in final
    assert re.search(r"^session:long-name-\S*…\s+string\s+3\.\d KiB\s+none\s+acme$", final, re.M), final
    assert re.search(r"^key:\s+400,000\s", final, re.M), final


def test_a_loading_redis_exits_1_saying_it_is_loading(redis_factory, monkeypatch, cli):
    from tests.support.loading import kill, restart_loading_slowly

    server = redis_factory(args={"appendonly": "no"}, password="s3cret")
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    restart_loading_slowly(server)
    try:
        result = cli("keys", "big", "--json")
    finally:
        kill(server)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"Redis at redis://:***@127.0.0.1:{server.port}/0 is loading its dataset" in result.stderr
    assert "redis-maint diagnose" in result.stderr and "cannot reach" not in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
