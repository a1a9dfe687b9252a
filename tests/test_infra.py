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
