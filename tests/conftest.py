"""Fixtures that start real services (redis-server, moto_server) and isolate settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.services import MotoServer, RedisServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No REDIS_MAINT_* or AWS_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("REDIS_MAINT_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", f"sqlite:///{tmp_path}/history.db")
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", str(tmp_path / "backups"))
    # The AOF guard's note lives here: a test must never see another test's (or the checkout's).
    monkeypatch.setenv("REDIS_MAINT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("REDIS_MAINT_HTTP__PORT", "0")
    monkeypatch.setenv("USER", "tester")
    yield
    from redis_maint.history import db

    db.dispose_all()


@pytest.fixture
def redis_factory(tmp_path):
    """Start real redis-servers: redis_factory(name="r1", args={...}, password=None)."""
    started: list[RedisServer] = []

    def start(name: str = "redis", args: dict | None = None, password: str | None = None) -> RedisServer:
        server = RedisServer(dir=tmp_path / name, args=args or {}, password=password).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_factory, monkeypatch) -> RedisServer:
    """One real Redis 7 (AOF + RDB), with REDIS_MAINT_REDIS_URL and DATA_DIR pointing at it."""
    server = redis_factory()
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(server.dir))
    return server


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch):
    """A clean moto S3, with the standard AWS_* variables pointing boto3 at it."""
    moto_server.reset()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def settings():
    """Settings as the CLI would load them from the current environment."""
    from config import load_settings
    from jobs import REGISTRY

    return lambda: load_settings(jobs=REGISTRY)


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    from redis_maint.cli import cli as root

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(root, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def cli_process():
    """Run `python scheduler.py ARGS` in a real subprocess (for concurrency, signals, exit codes)."""

    def run(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "scheduler.py"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )

    return run


def json_out(result) -> object:
    return json.loads(result.stdout if hasattr(result, "stdout") else result.output)
