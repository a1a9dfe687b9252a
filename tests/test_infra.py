"""infra/redis: the compose file validates, the alert rules are valid Prometheus rules and fire as meant."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from jobs import REGISTRY
from tests.support.common import ROOT, in_ci

INFRA = ROOT / "infra" / "redis"
RULES = INFRA / "alerts.yml"


def _tool(name: str, installer: str | None = None) -> str:
    path = shutil.which(name)
    if path is None and installer:
        subprocess.run(["bash", str(ROOT / "scripts" / installer)], capture_output=True, timeout=300)
        path = shutil.which(name)
    if path is None:
        message = f"{name} not found" + (f" (scripts/{installer} installs it)" if installer else "")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_compose_file_is_valid_and_wires_the_sidecar(tmp_path):
    compose = _tool("docker-compose")
    result = subprocess.run(
        [compose, "-f", str(INFRA / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    redis, sidecar = config["services"]["redis"], config["services"]["redis-maint"]
    assert redis["image"] == "redis:7-alpine" and "6379:6379" in redis["ports"][0]
    assert any(v.endswith(":/data:ro") for v in sidecar["volumes"]), "Redis's data read-only"
    assert "/var/run/docker.sock:/var/run/docker.sock" in " ".join(sidecar["volumes"])
    assert sidecar["depends_on"]["redis"]["condition"] == "service_healthy"
    assert sidecar["environment"]["REDIS_MAINT_DATA_DIR"] == "/data"
    drain = sidecar["environment"]["REDIS_MAINT_DAEMON__DRAIN_GRACE"]
    assert drain.endswith("s") and int(sidecar["stop_grace_period"].rstrip("s")) > int(drain.rstrip("s"))
    assert config["services"]["redis-exporter"]["profiles"] == ["exporter"]


def test_every_setting_in_the_compose_file_is_a_real_setting(monkeypatch):
    """A typo in an env name would be a config error at start: load them through the real schema."""
    from config import load_settings

    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    env = compose["services"]["redis-maint"]["environment"]
    ours = {k: "1d" if k.endswith("RPO") else "" for k in env if k.startswith("REDIS_MAINT_")}
    example = dict(
        line.split("=", 1)
        for line in (INFRA / ".env.example").read_text().splitlines()
        if line and line[0] != "#"
    )
    values = {k: example.get(k, "") for k in ours}
    values.update(
        REDIS_MAINT_REDIS_URL="redis://redis-maint:x@redis:6379/0",
        REDIS_MAINT_DATA_DIR="/data",
        REDIS_MAINT_HISTORY_URL="sqlite:////tmp/h.db",
        REDIS_MAINT_HTTP__PORT="9187",
        REDIS_MAINT_DOCKER__SNAPSHOT_DIR="/var/lib/redis-maint/check",
        REDIS_MAINT_DOCKER__SNAPSHOT_VOLUME="redis-maint-check",
        REDIS_MAINT_DAEMON__DRAIN_GRACE="25s",
    )
    values = {k: v for k, v in values.items() if v != ""}
    settings = load_settings(environ=values, jobs=REGISTRY)
    assert settings.job("backup-age").rpo.total_seconds() == 26 * 3600
    assert str(settings.job("backup").schedule) == "0 3 * * *"


def test_alert_rules_pass_promtool():
    promtool = _tool("promtool", "ensure-promtool.sh")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_the_runbook_table_and_the_backups():
    names = {
        rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    }
    assert {
        "RedisDown",
        "RedisMemoryHigh",
        "RedisMemoryCritical",
        "RedisTooManyClients",
        "RedisBlockedClients",
        "RedisHitRatioLow",
        "RedisLatencyHigh",
        "BackupTooOld",
        "BackupNotVerified",
        "MaintenanceJobFailing",
    } <= names
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]


ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'redis_maint_redis_up'
        values: '1 1 0 0 0 0'
      - series: 'redis_maint_job_failing{{job="backup"}}'
        values: '0 1x20'
      - series: 'redis_maint_job_failing{{job="health"}}'
        values: '1x20'
      - series: 'redis_maint_redis_memory_ratio'
        values: '0.5 0.95x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: RedisDown
        exp_alerts:
          - exp_labels: {{severity: critical}}
            exp_annotations:
              summary: "Redis does not answer the sidecar's health checks"
              description: "The last health run could not reach or authenticate to Redis. Sessions are unavailable (API 503)."
      - eval_time: 17m
        alertname: MaintenanceJobFailing
        exp_alerts:
          - exp_labels: {{severity: warning, job: backup}}
            exp_annotations:
              summary: "redis-maint job backup is failing"
              description: "Its last run failed. See `redis-maint history --job backup --status failed`."
      - eval_time: 4m
        alertname: RedisMemoryHigh
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: 'redis_maint_last_success_timestamp_seconds{{job="backup"}}'
        values: '0x1700'
    alert_rule_test:
      - eval_time: 25h
        alertname: BackupTooOld
        exp_alerts: []
      - eval_time: 28h
        alertname: BackupTooOld
        exp_alerts:
          - exp_labels: {{severity: critical, job: backup}}
            exp_annotations:
              summary: "No successful Redis backup in 26 hours"
              description: "Last success 1d 4h 0m 0s ago. Check `redis-maint history --job backup`."
"""


def test_alerts_fire_on_the_series_the_sidecar_exports(tmp_path):
    promtool = _tool("promtool", "ensure-promtool.sh")
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(ALERT_TESTS.format(rules=RULES))
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


HA = INFRA / "docker-compose.ha.yml"
HA_SIDECARS = {"redis-maint-primary": "redis-primary", "redis-maint-replica": "redis-replica"}


def _compose_config(path) -> dict:
    result = subprocess.run(
        [_tool("docker-compose"), "-f", str(path), "config"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_ha_compose_file_puts_a_sidecar_beside_each_node_behind_sentinel():
    config = _compose_config(HA)
    services = config["services"]
    assert {"redis-primary", "redis-replica", "sentinel", "postgres", *HA_SIDECARS} <= set(services)
    assert "--replicaof" in services["redis-replica"]["command"]
    assert "--sentinel" in services["sentinel"]["command"][-1]
    for name, node in HA_SIDECARS.items():
        sidecar, redis = services[name], services[node]
        env = sidecar["environment"]
        assert (
            env["REDIS_MAINT_REDIS_URL"].startswith("redis+sentinel://")
            and "@sentinel:26379/sessions/" in env["REDIS_MAINT_REDIS_URL"]
        )
        # its own node, and that node's data dir (read-only) under /data
        assert f"@{node}:6379/" in env["REDIS_MAINT_NODE_URL"]
        (data,) = [v for v in redis["volumes"] if v.endswith(":/data:rw") or v.endswith(":/data")]
        assert f"{data.split(':')[0]}:/data:ro" in sidecar["volumes"]
        assert (
            env["REDIS_MAINT_HISTORY_URL"].startswith("postgresql+psycopg://")
            and "@postgres:5432/" in env["REDIS_MAINT_HISTORY_URL"]
        )
        assert sidecar["depends_on"]["sentinel"]["condition"] == "service_healthy"
        assert sidecar["depends_on"]["postgres"]["condition"] == "service_healthy"
        drain = env["REDIS_MAINT_DAEMON__DRAIN_GRACE"]
        assert int(sidecar["stop_grace_period"].rstrip("s")) > int(drain.rstrip("s"))
    volumes = {
        name: services[name]["environment"]["REDIS_MAINT_DOCKER__SNAPSHOT_VOLUME"] for name in HA_SIDECARS
    }
    assert len(set(volumes.values())) == len(volumes), "each sidecar checks snapshots in a volume of its own"


def test_every_setting_in_the_ha_compose_file_is_a_real_setting():
    """Each sidecar's REDIS_MAINT_* values, interpolated with the defaults, load through the real schema."""
    from config import load_settings

    config = _compose_config(HA)
    for name, node in HA_SIDECARS.items():
        env = config["services"][name]["environment"]
        values = {k: v for k, v in env.items() if k.startswith("REDIS_MAINT_") and v not in ("", None)}
        settings = load_settings(environ=values, jobs=REGISTRY)
        assert settings.redis_url.startswith("redis+sentinel://") and node in settings.node_url
        assert settings.job("backup").source == "auto"
        assert settings.job("backup").max_replica_lag.total_seconds() == 10
        assert settings.history_url.startswith("postgresql+psycopg://")
        assert str(settings.job("backup").schedule) == "0 3 * * *"
