"""infra/redis/redis.conf: a real Redis 7 loads it, and its redis-maint ACL user is enough for every job."""

from __future__ import annotations

import json
import subprocess

import pytest
import redis

from tests.support.common import ROOT, free_port, wait_for
from tests.support.services.redis import REDIS_SERVER

CONF = ROOT / "infra" / "redis" / "redis.conf"
EXAMPLE_PASSWORD = "change-me"  # .env.example's; its hash is the one shipped in redis.conf


@pytest.fixture
def shipped_redis(tmp_path, monkeypatch):
    """redis-server started on the shipped redis.conf (port, bind and dir moved to the test's)."""
    port = free_port()
    moved = {"port": str(port), "bind": "127.0.0.1", "dir": str(tmp_path)}
    lines = [
        f"{line.split()[0]} {moved[line.split()[0]]}" if line.split() and line.split()[0] in moved else line
        for line in CONF.read_text().splitlines()
    ]
    conf = tmp_path / "test.conf"
    conf.write_text("\n".join([*lines, f"logfile {tmp_path}/redis.log"]) + "\n")
    # Config errors go to stderr; the server's own log goes to the logfile.
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        wait_for(
            lambda: proc.poll() is not None or client.ping(), what="redis-server on the shipped redis.conf"
        )
    finally:
        assert proc.poll() is None, f"redis-server refused the shipped redis.conf:\n{proc.stderr.read()}"
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", f"redis://redis-maint:{EXAMPLE_PASSWORD}@127.0.0.1:{port}/0")
    monkeypatch.setenv("REDIS_MAINT_DATA_DIR", str(tmp_path))
    yield client
    proc.terminate()
    proc.wait(10)


def test_the_shipped_config_matches_the_runbook(shipped_redis):
    cfg = shipped_redis.config_get("*")
    assert cfg["maxmemory"] == str(256 * 1024 * 1024) and cfg["maxmemory-policy"] == "allkeys-lru"
    assert cfg["appendonly"] == "yes" and cfg["save"]
    assert cfg["slowlog-log-slower-than"] == "10000" and cfg["slowlog-max-len"] == "128"
    assert cfg["protected-mode"] == "no"


def test_the_sidecar_user_cannot_do_what_it_does_not_need(shipped_redis):
    sidecar = redis.Redis(
        port=shipped_redis.connection_pool.connection_kwargs["port"],
        username="redis-maint",
        password=EXAMPLE_PASSWORD,
    )
    assert sidecar.ping()
    shipped_redis.set("other:key", "x")
    for forbidden in (
        lambda: sidecar.get("other:key"),
        lambda: sidecar.keys("*"),
        sidecar.flushall,
        lambda: sidecar.acl_list(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def _seed_sessions(client: redis.Redis, n: int = 50) -> None:
    import time

    now_ms = int(time.time() * 1000)
    for i in range(n):
        age_h = 30 if i % 2 else 1  # half are stale
        value = json.dumps({"createdAt": now_ms - age_h * 3600_000, "organisationId": f"org-{i % 3}"})
        client.set(f"session:{i}", value, ex=None if i % 5 == 0 else 86400)


def test_every_job_runs_as_the_sidecar_user(shipped_redis, cli, monkeypatch):
    _seed_sessions(shipped_redis)
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "false")  # containers: other tests
    for job in ("health", "backup", "session-sweep"):
        result = cli("run", job, "--json")
        run = json.loads(result.stdout)
        assert result.exit_code == 0, f"{job} as redis-maint: {run['error']}"
    assert cli("doctor").output.count("NOPERM") == 0
    assert shipped_redis.dbsize() < 50, "the sweep deleted stale sessions"
    count = cli("sessions", "count", "--by-org", "--json")
    assert count.exit_code == 0, count.output
    deleted = cli("sessions", "delete", "--org", "org-1", "--yes", "--json")
    assert deleted.exit_code == 0, deleted.output
