"""`redis-maint diagnose` against real processes put into each incident state: Redis stopped, hung
(DEBUG SLEEP), evicting at maxmemory, a prefix that grew tenfold, MISCONF after a failed BGSAVE,
a truncated AOF it will not load, and its container exited on the real Docker engine."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest
import redis

from redis_maint.incident.parts import Part, Skip, run_parts
from redis_maint.incident.thresholds import findings_from
from tests.support.common import free_port, wait_for
from tests.support.diagnose import (
    assert_commands_parse,
    codes,
    diagnose,
    exited_container,
    finding,
    running_redis_container,
)
from tests.support.history import current_store
from tests.support.loading import kill, restart_loading_slowly
from tests.support.pty_cli import run_in_pty
from tests.support.services.redis import RedisServer


@pytest.fixture
def quick(monkeypatch):
    """Short part bounds, and no container to look for unless a test names one."""
    monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__PART_TIMEOUT", "2s")
    monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__REDIS_CONTAINER", "")


def test_redis_stopped_is_named_with_the_runbook_step(quick, monkeypatch, tmp_path, cli):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path / "data"))
    code, report = diagnose(cli)
    assert code == 0  # the diagnosis was made: exit 0 whatever it found
    assert report["level"] == "critical"
    down = report["verdict"][0]
    assert down["code"] == "redis.refused" and down["severity"] == "critical"
    assert down["procedure"].startswith("Redis unresponsive")
    assert "docker-compose up -d redis" in down["next"] and "redis-maint diagnose" in down["next"]
    assert report["parts"]["reachability"]["state"] == "refused"
    # Redis not running: its data files are looked at instead of INFO
    assert set(report["parts"]) == {"reachability", "container", "host", "datafiles"}
    assert finding(report, "datafiles.none")["severity"] == "warning"
    assert report["parts"]["container"]["status"] == "skipped"
    assert "hunter2" not in json.dumps(report)
    assert_commands_parse(report)


def test_unresponsive_redis_is_named_and_diagnose_returns_within_its_bound(quick, redis_server, cli):
    sleeper = threading.Thread(
        target=lambda: redis_server.client(socket_timeout=30).execute_command("DEBUG", "SLEEP", 6)
    )
    sleeper.start()
    try:
        time.sleep(0.2)  # the sleep has begun
        t0 = time.monotonic()
        code, report = diagnose(cli)
        took = time.monotonic() - t0
    finally:
        sleeper.join()
    assert code == 0
    hung = finding(report, "redis.timeout")
    assert hung["severity"] == "critical" and "did not answer PING" in hung["title"]
    assert "redis-maint history --job health --status failed --since 1h" in hung["next"]
    # parts that need answers are not started against a Redis that gives none
    assert "memory" not in report["parts"] and "datafiles" not in report["parts"]
    assert took < 5.5, f"diagnose took {took:.1f}s against a Redis asleep for 6s (bound: 2s per part)"
    assert_commands_parse(report)


def test_evicting_at_maxmemory_names_the_sweep(quick, redis_factory, monkeypatch, cli):
    server = redis_factory(args={"maxmemory": "2mb", "maxmemory-policy": "allkeys-lru", "appendonly": "no"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    client = server.client()
    value = "x" * 1000
    for batch in range(20):
        client.mset({f"session:{batch}-{i}": value for i in range(200)})
    assert client.info("stats")["evicted_keys"] > 0
    code, report = diagnose(cli)
    assert code == 0
    evicting = finding(report, "memory.evicting")
    assert evicting["severity"] == "critical" and "sessions are being dropped" in evicting["title"]
    assert evicting["next"][0] == "redis-maint sessions sweep --older-than 12h --dry-run"
    assert evicting["procedure"].startswith("Memory")
    assert report["verdict"][0]["severity"] == "critical"
    assert finding(report, "threshold.memory")["part"] == "memory"  # the health job's ratio threshold
    memory = report["parts"]["memory"]
    assert memory["evicted_keys"] > 0 and memory["maxmemory"] == 2 * 1024 * 1024
    assert_commands_parse(report)


def test_a_prefix_that_grew_tenfold_since_the_last_diagnose(quick, redis_server, cli, monkeypatch):
    # Time for the whole scan even on a busy host: exact counts (a cut scan's are scaled estimates).
    monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__KEYS_BUDGET", "30s")
    client = redis_server.client()
    client.mset({f"cart:{i}": "item" * 20 for i in range(30)})
    client.mset({f"session:{i}": "{}" for i in range(30)})
    code, first = diagnose(cli)
    assert code == 0 and "memory.prefix_grew" not in codes(first)
    client.mset({f"cart:{i}": "item" * 20 for i in range(30, 300)})
    code, second = diagnose(cli)
    assert code == 0
    grew = finding(second, "memory.prefix_grew")
    assert "'cart:' grew 10." in grew["title"] and "30 -> 300 keys" in grew["title"]
    assert grew["next"] == [
        "redis-maint keys big --pattern 'cart:*'",
        "redis-maint sessions sweep --older-than 12h --dry-run",
    ]
    growth = second["parts"]["memory"]["growth"]
    assert growth["previous_run"] == first["run_id"]
    assert {r["prefix"]: r["growth"]["keys"] for r in growth["prefixes"]} == {"cart:": 10.0, "session:": 1.0}
    assert not any(r["estimated"] for r in growth["prefixes"]) and "scaled up" not in grew["title"]
    assert_commands_parse(second)


def test_growth_from_a_scan_cut_short_is_scaled_and_says_so():
    from redis_maint.incident.growth import compare, estimate

    whole = {
        "available": True,
        "complete": True,
        "scanned": 60,
        "by_prefix": [{"prefix": "cart:", "keys": 30, "bytes": 3000}],
    }
    cut = {
        "available": True,
        "complete": False,
        "scanned": 150,
        "by_prefix": [{"prefix": "cart:", "keys": 135, "bytes": 13500}],
    }
    before, now = estimate(whole, 60), estimate(cut, 330)
    assert now["cart:"]["keys"] == 297.0 and now["cart:"]["estimated"] and not before["cart:"]["estimated"]
    rows, found = compare(before, now, factor=3.0, since="2026-12-02 04:00 UTC")
    assert rows[0]["estimated"] and rows[0]["keys_now"] == 297
    assert "(30 -> 297 keys" in found[0].title and "scaled up from a scan cut short" in found[0].title


def test_misconf_after_a_failed_bgsave(quick, redis_factory, monkeypatch, cli):
    server = redis_factory(args={"save": "3600 1", "appendonly": "no"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    client = server.client()
    client.set("session:a", "{}")
    shutil.rmtree(server.dir)  # Redis's `dir` is gone: the next BGSAVE cannot write its file
    client.bgsave()
    wait_for(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err", what="the BGSAVE to fail")
    try:
        code, report = diagnose(cli)
    finally:
        client.config_set("save", "")  # so the server can shut down without the save it cannot write
    assert code == 0
    misconf = report["verdict"][0]
    assert misconf["code"] == "redis.misconf" and misconf["severity"] == "critical"
    assert misconf["procedure"].startswith("Data corruption")
    assert misconf["next"][0] == "redis-maint run backup --no-prune"
    assert finding(report, "persistence.bgsave_failed")["severity"] == "critical"
    assert finding(report, "host.data_dir_missing")["severity"] == "critical"  # the cause
    assert report["parts"]["persistence"]["rdb_last_bgsave_status"] == "err"
    assert_commands_parse(report)


@pytest.mark.docker
def test_a_truncated_aof_redis_will_not_load(quick, check_image, no_leftovers, tmp_path, monkeypatch, cli):
    server = RedisServer(dir=tmp_path / "redis", args={"aof-load-truncated": "no"}).start()
    server.client().mset({f"session:{i}": "{}" for i in range(100)})
    server.stop()
    incr = sorted((server.dir / "appendonlydir").glob("*.incr.aof"))[-1]
    with open(incr, "r+b") as f:
        f.truncate(incr.stat().st_size - 5)
    refused = subprocess.run(server.command(), timeout=30)  # Redis exits: it will not load the AOF
    assert refused.returncode != 0
    assert "Unexpected end of file" in (server.dir / "redis.log").read_text()
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    before = {p.name: p.read_bytes() for p in (server.dir / "appendonlydir").iterdir()}
    code, report = diagnose(cli)
    assert code == 0
    truncated = finding(report, "datafiles.aof_truncated")
    assert truncated["severity"] == "critical" and "truncated at offset" in truncated["title"]
    assert truncated["procedure"].startswith("Data corruption")
    assert "redis-maint backups list --status complete --limit 1" in truncated["next"]
    assert "redis-maint backups restore ID --target DIR" in truncated["next"]
    checks = {c["tool"]: c["verdict"] for c in report["parts"]["datafiles"]["checks"]}
    assert checks == {"redis-check-aof": "truncated"}
    # the live files were only read (the check ran on a copy)
    assert {p.name: p.read_bytes() for p in (server.dir / "appendonlydir").iterdir()} == before
    assert_commands_parse(report)


@pytest.mark.docker
def test_the_redis_container_exited(quick, docker_engine, local_image, monkeypatch, tmp_path, cli):
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path))
    line = "# Bad file format reading the append only file appendonly.aof.1.incr.aof"
    with exited_container(docker_engine, log_line=line, exit_code=1) as name:
        monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__REDIS_CONTAINER", name)
        code, report = diagnose(cli)
    assert code == 0
    exited = finding(report, "container.exited")
    assert exited["severity"] == "critical" and f"container {name} is exited (exit code 1)" == exited["title"]
    assert exited["procedure"].startswith("Data corruption")  # from its last log lines
    assert "redis-maint run aof-check" in exited["next"] and "docker-compose up -d redis" in exited["next"]
    part = report["parts"]["container"]
    assert part["status"] == "ok" and part["found"] and part["exit_code"] == 1
    assert part["logs"] == [line] and part["stats"] is None
    assert_commands_parse(report)


@pytest.mark.docker
def test_a_running_container_gives_its_stats_and_logs(
    quick, docker_engine, local_image, monkeypatch, redis_server, cli
):
    with running_redis_container(docker_engine) as name:
        monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__REDIS_CONTAINER", name)
        code, report = diagnose(cli)
    assert code == 0
    part = report["parts"]["container"]
    assert part["status"] == "ok" and part["state"] == "running" and part["restarts"] == 0
    assert part["stats"]["memory_bytes"] > 0 and part["stats"]["cpu_percent"] is not None
    assert any("Ready to accept connections" in line for line in part["logs"])
    assert not [c for c in codes(report) if c.startswith("container.")]


def test_an_absent_container_is_a_note_not_an_error(redis_server, docker_engine, monkeypatch, cli):
    monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__REDIS_CONTAINER", "no-such-redis-container")
    code, report = diagnose(cli)
    assert code == 0
    assert finding(report, "container.absent")["severity"] == "info"
    assert report["parts"]["container"] == {**report["parts"]["container"], "status": "ok", "found": False}


def test_out_file_history_row_and_nothing_changed(quick, redis_server, tmp_path, cli):
    client = redis_server.client()
    client.mset({f"session:{i}": "{}" for i in range(50)})
    config_before, dbsize_before = client.config_get("*"), client.dbsize()
    out = tmp_path / "incident.json"
    result = cli("diagnose", "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".incident")] == []  # no temp file left
    assert set(report) >= {"level", "verdict", "parts", "duration_s", "run_id"}
    for name, part in report["parts"].items():
        assert part["status"] in ("ok", "failed", "timeout", "skipped"), name
        assert "reason" in part and "duration_s" in part
    row = current_store().get(report["run_id"])
    assert row.job == "diagnose" and row.status == "succeeded" and row.requested_by == "tester"
    assert row.summary["verdict"] == report["verdict"] and row.summary["level"] == report["level"]
    # read-only: the keys and every setting are as they were
    assert client.dbsize() == dbsize_before and client.config_get("*") == config_before


def test_a_bad_out_path_exits_2_before_anything_runs(quick, redis_server, tmp_path, cli):
    bad = tmp_path / "missing-dir" / "report.json"
    result = cli("diagnose", "--out", str(bad))
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "does not exist" in result.stderr
    assert current_store().list(job="diagnose") == []
    result = cli("diagnose", "--out", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_a_backup_holding_its_lease_does_not_block_diagnose(quick, redis_server, settings, cli):
    from redis_maint.history.leases import Lease

    lease = Lease.acquire(current_store(), "backup", settings().lock.lease_ttl)
    try:
        code, report = diagnose(cli)
    finally:
        lease.release()
    assert code == 0 and report["parts"]["reachability"]["state"] == "ok"


def test_renders_the_verdict_first_then_the_parts_in_a_terminal(quick, redis_server):
    shown = run_in_pty("diagnose", columns=80, env={"NO_COLOR": "1"})
    assert shown.code == 0, shown.terminal
    text = shown.terminal.replace("\r\n", "\n")
    assert "diagnose: succeeded" in text
    verdict_at, level_at, parts_at = (
        text.index("diagnose: succeeded"),
        text.index("  level "),
        text.index("  parts "),
    )
    assert verdict_at < level_at < parts_at
    assert "reachability  ok: PING" in text and "memory        ok:" in text
    assert "Traceback" not in text


# ---- pure logic ----


def test_parts_run_side_by_side_each_within_its_bound():
    release = threading.Event()

    def hangs(probe):
        probe.doing("waiting for an answer that never comes")
        release.wait(30)
        return {}

    def fails(probe):
        raise RuntimeError("boom")

    def skips(probe):
        raise Skip("not configured")

    def works(probe):
        probe.findings.add("info", "x.y", "found", "somewhere", ["redis-maint doctor"])
        return {"figure": 1}

    t0 = time.monotonic()
    results = run_parts(
        [Part("hang", hangs, 0.3), Part("fail", fails, 5), Part("skip", skips, 5), Part("ok", works, 5)]
    )
    release.set()
    assert time.monotonic() - t0 < 5
    assert (
        results["hang"].status == "timeout"
        and "waiting for an answer that never comes" in results["hang"].reason
    )
    assert results["fail"].status == "failed" and "boom" in results["fail"].reason
    assert results["skip"].to_json() == {
        "status": "skipped",
        "reason": "not configured",
        "duration_s": results["skip"].duration_s,
    }
    assert results["ok"].to_json()["figure"] == 1 and results["ok"].findings[0].part == "ok"


def test_every_health_threshold_becomes_a_finding_of_its_part():
    from jobs.health import HealthSettings
    from jobs.health_rules import collect_figures, evaluate

    info = {
        "used_memory": 950,
        "maxmemory": 1000,
        "maxmemory_policy": "noeviction",
        "connected_clients": 600,
        "blocked_clients": 20,
        "keyspace_hits": 10,
        "keyspace_misses": 990,
        "aof_enabled": 0,
        "rdb_last_bgsave_status": "err",
        "aof_last_write_status": "err",
    }
    reasons = evaluate(collect_figures(info, 50.0), HealthSettings()).reasons
    reasons += evaluate(collect_figures({**info, "maxmemory": 0}, 0.1), HealthSettings()).reasons
    found = findings_from(reasons)
    assert len(found) == len(reasons) >= 10
    assert "threshold.other" not in {f.code for f in found}
    assert {f.part for f in found} == {"reachability", "memory", "load", "persistence"}
    assert not [f for f in findings_from(reasons, skip_topics={"persistence"}) if f.part == "persistence"]


# ---- LOADING and BUSY on real processes ----


def test_a_redis_loading_its_dataset_is_named_and_diagnose_returns_within_its_bound(
    quick, redis_factory, monkeypatch, cli
):
    server = redis_factory(args={"appendonly": "no"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    monkeypatch.setenv("REDIS_MAINT_JOBS__DIAGNOSE__KEYS_BUDGET", "1s")
    restart_loading_slowly(server)  # ~20 s of LOADING, far past diagnose's bounds
    try:
        t0 = time.monotonic()
        code, report = diagnose(cli)
        took = time.monotonic() - t0
        still_loading = server.client(socket_timeout=1).info("persistence")["loading"] == 1
    finally:
        kill(server)  # no need to wait for the load to end
    assert still_loading  # the state lasted the whole diagnosis
    assert code == 0
    loading = finding(report, "redis.loading")
    assert loading["severity"] == "warning" and "is loading its dataset" in loading["title"]
    assert "% done, eta " in loading["title"]  # INFO answers while loading: how far it is
    assert loading["procedure"].startswith("Redis unresponsive")
    assert loading["next"] == ["redis-maint diagnose"] and "run diagnose again" in loading["detail"]
    reach = report["parts"]["reachability"]
    assert reach["state"] == "loading" and reach["server"]["loading"] == 1
    # the memory part gives INFO's figures, and says why it samples no keys (SCAN answers LOADING)
    memory = report["parts"]["memory"]
    assert memory["status"] == "ok" and memory["used_memory"] > 0
    assert memory["keys"]["available"] is False and "loading its dataset" in memory["keys"]["reason"]
    assert report["parts"]["persistence"]["status"] == report["parts"]["load"]["status"] == "ok"
    # a Redis still loading is not also reported as a timeout or an unexplained failure
    assert not {"redis.timeout", "redis.error", "redis.refused"} & set(codes(report))
    # bounds: reachability 2 s, then host, memory (2 s + 1 s of key sampling), persistence, load side by side
    assert took < 2 + 3 + 1, f"diagnose took {took:.1f}s against a loading Redis"
    assert_commands_parse(report)


def test_a_busy_script_is_named_with_script_kill_and_diagnose_returns_within_its_bound(
    quick, redis_factory, monkeypatch, cli
):
    server = redis_factory(args={"busy-reply-threshold": "100"})  # BUSY after 100 ms (lua-time-limit)
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    ended: dict[str, BaseException] = {}

    def loop() -> None:
        try:
            server.client(socket_timeout=60).eval("while true do end", 0)
        except Exception as exc:
            ended["error"] = exc

    looping = threading.Thread(target=loop)
    looping.start()
    other = server.client(socket_timeout=2)
    try:
        wait_for(lambda: _answers_busy(other), what="Redis to answer BUSY")
        t0 = time.monotonic()
        code, report = diagnose(cli)
        took = time.monotonic() - t0
        still_busy = _answers_busy(other)
    finally:
        wait_for(lambda: _script_killed(other), what="SCRIPT KILL")
        looping.join(10)
    assert not looping.is_alive() and "Script killed" in str(ended["error"])
    assert still_busy
    assert code == 0
    busy = report["verdict"][0]
    assert busy["code"] == "redis.busy" and busy["severity"] == "critical"
    assert "is BUSY running a script" in busy["title"]
    assert busy["procedure"].startswith("Redis unresponsive")
    assert busy["next"][:2] == ["redis-cli SCRIPT KILL", "redis-cli FUNCTION KILL"]
    assert "SHUTDOWN NOSAVE" in busy["detail"]
    assert report["parts"]["reachability"]["state"] == "busy"
    # parts that need answers are not started against a Redis that answers only BUSY
    assert "memory" not in report["parts"] and "datafiles" not in report["parts"]
    assert took < 2 + 2 + 1, f"diagnose took {took:.1f}s against a BUSY Redis"
    assert_commands_parse(report)
    assert server.client().ping()  # the script is gone: Redis answers again


def _answers_busy(client) -> bool:
    try:
        client.ping()
    except redis.exceptions.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def _script_killed(client) -> bool:
    try:
        client.script_kill()
    except redis.exceptions.ResponseError as exc:
        if "NOTBUSY" not in str(exc):
            raise
    return client.ping()
