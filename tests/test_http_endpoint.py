"""The daemon's /healthz and /metrics, over real HTTP, with a real Redis going away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.services import free_port, wait_for
from tests.test_metrics import scrape_text
from tests.webhook import WebhookServer


class Daemon:
    def __init__(self, **env: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "REDIS_MAINT_HTTP__PORT": str(self.port), **env},
        )
        wait_for(lambda: self.get("/healthz")[0] in (200, 503), timeout=15, what="the HTTP endpoint")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict:
        code, text = self.get("/metrics")
        assert code == 200
        return scrape_text(text)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def daemon_factory():
    started: list[Daemon] = []

    def start(**env: str) -> Daemon:
        started.append(Daemon(**env))
        return started[-1]

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop()


def _runs(sample: dict, job: str, status: str) -> float:
    return sample.get(("redis_maint_job_runs_total", (("job", job), ("status", status))), 0)


def test_healthz_is_ok_and_metrics_move_then_redis_down_shows_in_metrics_not_healthz(
    daemon_factory, redis_server, monkeypatch
):
    hook = WebhookServer().start()
    d = daemon_factory(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1s",
        REDIS_MAINT_REDIS_TIMEOUT="1s",
        REDIS_MAINT_NOTIFY__WEBHOOK_URL=hook.url,
    )
    assert d.get("/healthz") == (200, json.dumps({"status": "ok"}))
    wait_for(lambda: _runs(d.metrics(), "health", "succeeded") >= 1, timeout=15, what="a first run")
    before = _runs(d.metrics(), "health", "succeeded")
    wait_for(
        lambda: _runs(d.metrics(), "health", "succeeded") >= before + 2, timeout=15, what="counters moving"
    )
    sample = d.metrics()
    assert sample[("redis_maint_redis_up", ())] == 1
    assert sample[("redis_maint_redis_memory_ratio", ())] >= 0
    assert sample[("redis_maint_last_success_timestamp_seconds", (("job", "health"),))] > time.time() - 30

    redis_server.stop()
    wait_for(lambda: d.metrics()[("redis_maint_redis_up", ())] == 0, timeout=15, what="redis_up 0")
    time.sleep(2)  # a few more failing runs
    assert d.get("/healthz")[0] == 200, "an unreachable Redis does not make the sidecar unhealthy"
    assert d.metrics()[("redis_maint_job_failing", (("job", "health"),))] == 1
    health_calls = [c["event"] for c in hook.posted() if c["job"] == "health"]
    assert health_calls == ["failure"], "once per transition, not every run"
    code, err = d.stop()
    hook.stop()
    assert code == 0, err
    assert '"msg": "http endpoint stopped"' in err


def test_nothing_but_healthz_and_metrics_is_served(daemon_factory, redis_server):
    d = daemon_factory(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h")
    for path in ("/", "/debug", "/metrics/../config", "/healthz/x"):
        assert d.get(path)[0] == 404
    code, text = d.get("/metrics")
    assert code == 200 and "redis_maint_job_runs_total" in text
    assert redis_server.url.split("@")[-1] not in text and "sqlite" not in text


def test_a_run_stuck_past_its_timeout_makes_healthz_503_with_the_reason(daemon_factory, redis_server):
    sleeper = subprocess.Popen(
        ["redis-cli", "-p", str(redis_server.port), "DEBUG", "SLEEP", "5"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.2)
    d = daemon_factory(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h",
        REDIS_MAINT_JOBS__HEALTH__TIMEOUT="1s",
        REDIS_MAINT_HTTP__STUCK_GRACE="0s",
        REDIS_MAINT_REDIS_TIMEOUT="20s",
    )
    wait_for(lambda: d.get("/healthz")[0] == 503, timeout=10, what="healthz 503")
    _, body = d.get("/healthz")
    reason = json.loads(body)
    assert reason["status"] == "unhealthy" and "of health is past its timeout" in reason["reasons"][0]
    assert d.metrics()[("redis_maint_job_running", (("job", "health"),))] == 1
    sleeper.wait()
    wait_for(lambda: d.get("/healthz")[0] == 200, timeout=10, what="healthz back to 200")


def test_a_port_in_use_is_a_clear_startup_error(redis_server, cli_process):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli_process("daemon", env={"REDIS_MAINT_HTTP__PORT": str(port)}, timeout=30)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "REDIS_MAINT_HTTP__PORT" in result.stderr
