"""The health job against a real Redis: figures, thresholds, and failures that name the cause."""

from __future__ import annotations

import json

from jobs.health import HealthSettings, collect_figures, evaluate
from tests.support.common import json_out


def test_health_reports_the_runbook_figures(redis_server, cli):
    redis_server.client().set("session:abc", "{}")
    result = cli("run", "health", "--json")
    assert result.exit_code == 0, result.output
    row = json_out(result)
    assert row["job"] == "health" and row["status"] == "succeeded" and row["trigger"] == "manual"
    assert row["requested_by"] == "tester"
    summary = row["summary"]
    assert summary["level"] == "ok", summary["reasons"]
    assert summary["memory"]["maxmemory"] == 256 * 1024 * 1024
    assert summary["memory"]["maxmemory_policy"] == "allkeys-lru"
    assert summary["persistence"]["aof_enabled"] == 1
    assert summary["keyspace"]["keys"] == 1
    assert summary["clients"]["connected"] >= 1
    assert 0 < summary["ping_ms"] < 1000


def test_health_flags_config_drift(redis_factory, monkeypatch, cli):
    server = redis_factory(args={"maxmemory-policy": "noeviction", "appendonly": "no"})
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    summary = json_out(cli("run", "health", "--json"))["summary"]
    assert summary["level"] == "warning"
    assert any("maxmemory-policy is noeviction" in r for r in summary["reasons"])
    assert any("appendonly is off" in r for r in summary["reasons"])


def test_slowlog_reports_new_entries_by_command_name_only(redis_server, cli):
    client = redis_server.client()
    client.config_set("slowlog-log-slower-than", 0)
    client.set("session:secret-sub", '{"token": "very-private"}')
    first = json_out(cli("run", "health", "--json"))["summary"]["slowlog"]
    assert first["new_entries"] >= 1
    assert {e["command"] for e in first["entries"]} >= {"SET"}
    assert "very-private" not in json.dumps(first) and "secret-sub" not in json.dumps(first)
    client.config_set("slowlog-log-slower-than", 10_000_000)
    second = json_out(cli("run", "health", "--json"))["summary"]["slowlog"]
    # only entries newer than the first run's: the SET is not reported twice
    assert second["entries"], "the first run's own SLOWLOG GET was logged after it read the log"
    assert all(e["id"] > first["last_id"] for e in second["entries"])
    assert "SET" not in {e["command"] for e in second["entries"]}


def test_health_fails_clearly_when_redis_is_down(monkeypatch, cli):
    from tests.support.common import free_port

    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("REDIS_MAINT_REDIS_TIMEOUT", "1s")
    result = cli("run", "health", "--json")
    assert result.exit_code == 1
    row = json_out(result)
    assert row["status"] == "failed"
    assert "cannot reach Redis at redis://:***@127.0.0.1" in row["error"]
    assert "REDIS_MAINT_REDIS_URL" in row["error"]
    assert "hunter2" not in result.output


def test_health_fails_when_auth_is_refused(redis_factory, monkeypatch, cli):
    server = redis_factory(password="right-password")
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url.replace("right-password", "wrong-password"))
    result = cli("run", "health", "--json")
    assert result.exit_code == 1
    row = json_out(result)
    assert "refused" in row["error"] and "credentials" in row["error"]
    assert "wrong-password" not in result.output and "right-password" not in result.output


def test_malformed_schedule_exits_2_before_running(redis_server, monkeypatch, cli_process):
    result = cli_process("run", "health", "--json", env={"REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "*/5 * * *"})
    assert result.returncode == 2
    assert "jobs.health.schedule" in result.stderr and "REDIS_MAINT_JOBS__HEALTH__SCHEDULE" in result.stderr
    assert result.stdout == ""


def _figures(**overrides):
    info = {
        "used_memory": 100,
        "maxmemory": 1000,
        "maxmemory_policy": "allkeys-lru",
        "connected_clients": 5,
        "blocked_clients": 0,
        "keyspace_hits": 950,
        "keyspace_misses": 50,
        "aof_enabled": 1,
        "rdb_last_bgsave_status": "ok",
        "aof_last_write_status": "ok",
    }
    info.update(overrides)
    return collect_figures(info, overrides.pop("ping", 0.5))


def test_thresholds_map_to_levels():
    s = HealthSettings()
    assert evaluate(_figures(), s).level == "ok"
    assert evaluate(_figures(used_memory=750), s).level == "warning"
    assert evaluate(_figures(used_memory=950), s).level == "critical"
    assert evaluate(_figures(connected_clients=101), s).level == "warning"
    assert evaluate(_figures(connected_clients=501), s).level == "critical"
    assert evaluate(_figures(blocked_clients=1), s).level == "warning"
    assert evaluate(_figures(blocked_clients=11), s).level == "critical"
    assert evaluate(_figures(keyspace_hits=85, keyspace_misses=15), s).level == "warning"
    assert evaluate(_figures(keyspace_hits=60, keyspace_misses=40), s).level == "critical"
    assert evaluate(_figures(rdb_last_bgsave_status="err"), s).level == "critical"
    assert evaluate(collect_figures({**_raw(), "maxmemory": 0}, 0.5), s).level == "warning"
    assert evaluate(collect_figures(_raw(), 6.0), s).level == "warning"
    assert evaluate(collect_figures(_raw(), 25.0), s).level == "critical"


def _raw():
    return {"used_memory": 1, "maxmemory": 1000, "maxmemory_policy": "allkeys-lru", "aof_enabled": 1}


def test_hit_ratio_ignored_until_enough_lookups():
    s = HealthSettings()
    assert evaluate(_figures(keyspace_hits=1, keyspace_misses=9), s).level == "ok"


def test_thresholds_are_configurable():
    s = HealthSettings(memory_warning=0.05, memory_critical=0.5)
    v = evaluate(_figures(used_memory=100), s)
    assert v.level == "warning" and "memory used/max 0.1 > 0.05" in v.reasons[0]
