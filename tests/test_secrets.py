"""Secrets never reach any output: config show, doctor, jobs, runs, history, the SQLite file, logs,
/metrics and webhook bodies. Real redis-server, a real SQLite file, a real local HTTP receiver."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import load_settings
from jobs import REGISTRY
from redis_maint.history.runs import HistoryStore
from redis_maint.observe.metrics import Metrics
from redis_maint.redact import redact, redact_endpoint, redact_url
from tests.support.common import free_port
from tests.support.services.redis import RedisServer
from tests.support.services.webhook import WebhookServer

# One distinct secret per place a secret can hide, so a leak names its source.
SECRETS = {
    "redis userinfo password": "RedisUserinfo-Pw-7c1e9a",
    "redis ?password=": "RedisQuery-Pw-3f5b2d",
    "history ?password=": "HistoryQuery-Pw-9a4c6e",
    "docker user:password": "DockerUserinfo-Pw-2b8d0f",
    "webhook path token": "WebhookPathToken-a1b2c3d4e5f6",
    "webhook query token": "WebhookQueryToken-0f9e8d7c",
    "slack path token": "SlackPathToken-1122334455667788",
    "slack query token": "SlackQueryToken-99aabbccdd",
    "ping path token": "PingPathUuid-5e6f7a8b9c0d",
    "ping query token": "PingQueryToken-ddeeff0011",
}


def leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [name for name, secret in SECRETS.items() if secret.encode() in data]


@dataclass
class Seeded:
    redis: RedisServer
    hook: WebhookServer
    history_db: Path
    history_url: str


@pytest.fixture
def seeded(redis_factory, monkeypatch, tmp_path):
    s = SECRETS
    redis = redis_factory(password=s["redis userinfo password"])
    hook = WebhookServer().start()
    history_db = tmp_path / "history.db"
    history_url = f"sqlite:///{history_db}?password={s['history ?password=']}"
    env = {
        # redis-py takes the userinfo password over the query's: both are secrets all the same.
        "REDIS_MAINT_REDIS_URL": f"redis://:{s['redis userinfo password']}@127.0.0.1:{redis.port}/0"
        f"?password={s['redis ?password=']}",
        "REDIS_MAINT_DATA_DIR": str(redis.dir),
        "REDIS_MAINT_HISTORY_URL": history_url,
        "REDIS_MAINT_DOCKER__URL": f"tcp://maint:{s['docker user:password']}@127.0.0.1:{free_port()}",
        "REDIS_MAINT_NOTIFY__WEBHOOK_URL": f"{hook.url}/hooks/{s['webhook path token']}?c={s['webhook query token']}",
        "REDIS_MAINT_NOTIFY__SLACK_WEBHOOK_URL": f"{hook.url}/services/T0/B0/{s['slack path token']}"
        f"?channel={s['slack query token']}",
        "REDIS_MAINT_NOTIFY__PING_URL": f"{hook.url}/ping/{s['ping path token']}?rid={s['ping query token']}",
        "REDIS_MAINT_NOTIFY__BACKOFF": "0.01s",
        "REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD": "false",
        "REDIS_MAINT_JOBS__BACKUP__STAGING_DIR": str(tmp_path / "staging"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield Seeded(redis, hook, history_db, history_url)
    hook.stop()


def test_no_seeded_secret_reaches_any_output(cli, cli_process, seeded):
    outputs: dict[str, str] = {}

    def grab(name: str, *args: str, code: int | None = 0):
        result = cli(*args)
        outputs[name] = f"{result.stdout}\n{result.stderr}"
        if code is not None:
            assert result.exit_code == code, (name, result.output)
        return result

    shown = json.loads(grab("config show", "config", "show").stdout)
    port = seeded.redis.port
    assert shown["redis_url"] == f"redis://:***@127.0.0.1:{port}/0?password=***"
    assert shown["history_url"] == f"sqlite:///{seeded.history_db}?password=***"
    assert shown["docker"]["url"].startswith("tcp://maint:***@127.0.0.1:")
    for field in ("webhook_url", "slack_webhook_url", "ping_url"):
        assert shown["notify"][field] == f"{seeded.hook.url}/***"

    # doctor: the Docker URL with credentials is checked (aof-check is scheduled) and fails to parse.
    doctor = {c["check"]: c for c in json.loads(grab("doctor --json", "doctor", "--json", code=1).stdout)}
    assert doctor["redis"]["ok"] and doctor["history"]["ok"] and not doctor["docker"]["ok"]
    grab("doctor", "doctor", code=1)

    grab("run health --json", "run", "health", "--json")
    backup = json.loads(grab("run backup --json", "run", "backup", "--json").stdout)
    assert backup["status"] == "succeeded", backup["error"]
    seeded.redis.stop()
    grab("run health (Redis down)", "run", "health", code=1)
    failed = json.loads(grab("run health --json (Redis down)", "run", "health", "--json", code=1).stdout)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in failed["error"]
    seeded.redis.start()
    grab("run health (recovered)", "run", "health")
    grab("jobs --json", "jobs", "--json")
    grab("jobs", "jobs")
    grab("history --json", "history", "--json")
    grab("history --csv", "history", "--csv")
    grab("history", "history")
    # A fresh process: nothing registered before, logs on the real stderr.
    proc = cli_process("--log-format", "json", "run", "health", "--json")
    assert proc.returncode == 0, proc.stderr
    outputs["subprocess run health"] = proc.stdout + proc.stderr
    metrics = Metrics(HistoryStore(seeded.history_url), list(REGISTRY), "default").exposition()
    assert b"redis_maint_job_runs" in metrics

    # The receiver got what the transitions mean: failure, recovery, and the backup's ping.
    posted = [r for r in seeded.hook.requests if r.method == "POST"]
    events = {r.json().get("event") for r in posted if r.path.startswith("/hooks/")}
    assert {"failure", "recovery"} <= events
    assert any(r.path.startswith("/services/") for r in posted)
    assert any(r.method == "GET" and r.path.startswith("/ping/") for r in seeded.hook.requests)
    failure = next(
        r.json() for r in posted if r.path.startswith("/hooks/") and r.json()["event"] == "failure"
    )
    assert "cannot reach Redis at redis://:***@" in failure["error"]

    found = {name: leaks(text) for name, text in outputs.items()}
    found["/metrics"] = leaks(metrics)
    stored = b"".join(p.read_bytes() for p in seeded.history_db.parent.glob("history.db*"))
    assert b"cannot reach Redis" in stored  # the file holds the error rows we check
    found["SQLite file"] = leaks(stored)
    for request in seeded.hook.requests:
        headers = json.dumps(request.headers).encode()
        found[f"webhook {request.method} body+headers"] = leaks(request.body + headers)
    assert {name: hit for name, hit in found.items() if hit} == {}


def test_a_rejected_webhook_url_is_reported_with_its_host_only(cli):
    os.environ["REDIS_MAINT_NOTIFY__SLACK_WEBHOOK_URL"] = (
        f"ftp://hooks.example.com/services/{SECRETS['slack path token']}"
    )
    result = cli("config", "show")
    assert result.exit_code == 2
    assert "notify.slack_webhook_url" in result.stderr and "ftp://hooks.example.com/***" in result.stderr
    assert leaks(result.output) == []


def test_a_config_error_in_the_redis_url_masks_its_passwords(cli, monkeypatch):
    monkeypatch.setenv(
        "REDIS_MAINT_REDIS_URL",
        f"http://:{SECRETS['redis userinfo password']}@cache:6379/0?password={SECRETS['redis ?password=']}",
    )
    result = cli("doctor", "--json")
    assert result.exit_code == 2
    (config,) = json.loads(result.stdout)
    assert "redis_url" in config["detail"] and "http://:***@cache:6379/0?password=***" in config["detail"]
    assert leaks(result.output) == []


# -- the masking functions, one per kind of value --------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw-1@h:6379/0", "redis://user:***@h:6379/0"),
        ("rediss://:pw-1@h:6380/1", "rediss://:***@h:6380/1"),
        ("redis://h:6379/0?password=pw-2&db=1", "redis://h:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?db=0&Passwd=pw-3", "unix:///run/redis.sock?db=0&Passwd=***"),
        (
            "https://s3/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab12&versionId=3",
            "https://s3/b/k?X-Amz-Credential=***&X-Amz-Signature=***&versionId=3",
        ),
        (
            "postgresql://u@db/h?sslpassword=pw-4&sslmode=require",
            "postgresql://u@db/h?sslpassword=***&sslmode=require",
        ),
        (
            "http://h/x?pass=a&pwd=b&token=c&secret=d&key=e&auth=f&sig=g&signature=h&access_token=i",
            "http://h/x?pass=***&pwd=***&token=***&secret=***&key=***&auth=***&sig=***&signature=***&access_token=***",
        ),
        ("sqlite:////var/lib/redis-maint/history.db", "sqlite:////var/lib/redis-maint/history.db"),
    ],
)
def test_redact_url_masks_userinfo_passwords_and_password_like_parameters(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/***"),
        ("https://hc-ping.com/5e6f7a8b-uuid?rid=1", "https://hc-ping.com/***"),
        ("http://u:p@127.0.0.1:8080/hook", "http://***@127.0.0.1:8080/***"),
        ("https://example.com/", "https://example.com/"),
        ("", ""),
    ],
)
def test_redact_endpoint_keeps_scheme_and_host_only(url, shown):
    assert redact_endpoint(url) == shown


def test_free_text_masks_urls_key_values_and_the_loaded_settings_secrets():
    text = (
        "failed: redis://:pw-9@cache:6379/0?password=qp-9 then password=kv-9 and "
        "'aws_secret_access_key': 'sk-9'"
    )
    masked = redact(text)
    for secret in ("pw-9", "qp-9", "kv-9", "sk-9"):
        assert secret not in masked
    token = "Loaded-Webhook-Token-7777"
    load_settings(environ={"REDIS_MAINT_NOTIFY__WEBHOOK_URL": f"https://hooks.example.com/{token}"})
    masked = redact(f"posting to path /{token} failed")
    assert token not in masked and masked.startswith("posting to path ") and "***" in masked


def test_settings_repr_leaves_the_secret_fields_out(seeded):
    settings = load_settings(jobs=REGISTRY)
    assert settings.redis_url.startswith("redis://:RedisUserinfo")  # the code still reads the real value
    assert leaks(repr(settings)) == [] and leaks(str(settings)) == []
    assert "instance='default'" in repr(settings)


def test_a_json_log_line_masks_a_secret_that_json_escaping_would_change(capsys):
    import logging

    from redis_maint.logs import setup_logging

    secret = 'Quote"And\\Backslash-Pw-11'
    load_settings(environ={"REDIS_MAINT_REDIS_URL": f"redis://:{secret}@cache:6379/0"})
    setup_logging("json")
    logging.getLogger("redis_maint.test").warning("auth failed for %s", secret, extra={"detail": secret})
    line = capsys.readouterr().err
    assert "auth failed for ***" in line and json.loads(line)["detail"] == "***"
    assert json.dumps(secret)[1:-1] not in line
