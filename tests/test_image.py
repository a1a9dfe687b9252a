"""The sidecar image and the compose stack, on a real Docker engine (make test-e2e).

Nothing can be pulled here: the image is built from a local Debian base with wheels from the
host (scripts/build-image.sh), and the stack's Redis is the local check image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.docker_fixtures import CHECK_IMAGE, docker_engine  # noqa: F401 (fixture)
from tests.services import free_port, in_ci, wait_for

# Building the image from nothing (debootstrap, wheels) takes ~3 min on 2 cores.
pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(900)]
IMAGE = "redis-maint:test"


def _run(*cmd: str, timeout: float = 120, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="session")
def sidecar_image(docker_engine):  # noqa: F811
    t0 = time.monotonic()
    result = _run("bash", str(ROOT / "scripts" / "build-image.sh"), IMAGE, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"\nbuild-image.sh {IMAGE}: {time.monotonic() - t0:.0f}s")
    return IMAGE


def test_the_image_runs_the_cli_as_a_non_root_user(sidecar_image):
    help_ = _run("docker", "run", "--rm", sidecar_image, "--help")
    assert help_.returncode == 0 and "maintenance sidecar" in help_.stdout
    ident = _run("docker", "run", "--rm", "--entrypoint", "id", sidecar_image)
    assert ident.returncode == 0 and "uid=10001(redis-maint)" in ident.stdout and "gid=1000" in ident.stdout
    no_tools = _run(
        "docker", "run", "--rm", "--entrypoint", "sh", sidecar_image, "-c", "command -v pip gcc cc || true"
    )
    assert no_tools.stdout.strip() == "", f"build tools in the final stage: {no_tools.stdout}"
    config = json.loads(_run("docker", "image", "inspect", sidecar_image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["redis-maint"] and config["Cmd"] == ["daemon"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert "/var/lib/redis-maint" in config["Volumes"]
    assert "REDIS_MAINT_HTTP__BIND=0.0.0.0" in config["Env"]


@pytest.fixture
def stack(sidecar_image, tmp_path):
    """infra/redis copied to a temp dir and started with the local images, on free host ports."""
    compose = shutil.which("docker-compose")
    if compose is None:
        message = "docker-compose not found (Debian's docker-compose package)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    shutil.copytree(ROOT / "infra" / "redis", tmp_path / "redis")
    (tmp_path / "redis" / "data").mkdir()
    project = f"rmtest{os.getpid()}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "REDIS_IMAGE": CHECK_IMAGE,
        "REDIS_MAINT_IMAGE": sidecar_image,
        "REDIS_MAINT_CHECK_IMAGE": CHECK_IMAGE,
        "REDIS_MAINT_CHECK_VOLUME": f"{project}-check",
        "REDIS_PORT": str(free_port()),
        "REDIS_MAINT_METRICS_PORT": str(free_port()),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
    }
    up = [compose, "-f", "docker-compose.yml"]
    cwd = tmp_path / "redis"
    t0 = time.monotonic()
    started = _run(*up, "up", "-d", "--no-build", timeout=300, env=env, cwd=cwd)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield lambda *args, **kw: _run(*up, *args, env=env, cwd=cwd, **kw), env, t0
    finally:
        logs = _run(*up, "logs", "--no-color", "redis-maint", env=env, cwd=cwd).stdout
        down = _run(*up, "down", "-v", "--timeout", "10", env=env, cwd=cwd, timeout=300)
        # Redis wrote ./data as root in the container: clean it up through a container, not the host user.
        shutil.rmtree(tmp_path / "redis" / "data", ignore_errors=True)
        assert down.returncode == 0, down.stderr + logs[-3000:]


def _get(port: str, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def test_the_compose_stack_runs_health_and_a_backup_inside_the_sidecar(stack):
    compose, env, t0 = stack
    port = env["REDIS_MAINT_METRICS_PORT"]
    wait_for(lambda: _get(port, "/healthz")[0] == 200, timeout=90, what="the sidecar's /healthz")
    run = compose("exec", "-T", "redis-maint", "redis-maint", "run", "health", "--json", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    row = json.loads(run.stdout)
    assert row["status"] == "succeeded" and row["requested_by"]
    assert row["summary"]["memory"]["maxmemory"] == 256 * 1024 * 1024  # the shipped redis.conf
    doctor = compose("exec", "-T", "redis-maint", "redis-maint", "doctor", timeout=120)
    assert "redis" in doctor.stdout and "NOPERM" not in doctor.stdout, doctor.stdout
    wait_for(lambda: "redis_maint_redis_up 1.0" in _get(port, "/metrics")[1], timeout=60, what="redis_up 1")
    # The image's own HEALTHCHECK command, as Docker runs it in the container.
    probe = json.loads(_run("docker", "image", "inspect", env["REDIS_MAINT_IMAGE"]).stdout)[0]
    check = compose("exec", "-T", "redis-maint", *probe["Config"]["Healthcheck"]["Test"][1:], timeout=60)
    assert check.returncode == 0, check.stderr

    # A backup reads the read-only data mount, checks the snapshot in a container through the
    # Docker socket and the named check volume. The daemon's catch-up backup may hold the lock (75).
    def backup() -> dict:
        run = compose("exec", "-T", "redis-maint", "redis-maint", "run", "backup", "--json", timeout=300)
        return json.loads(run.stdout)

    rows = [backup()]
    wait_for(lambda: rows[-1]["status"] != "skipped" or rows.append(backup()), timeout=120, what="the lock")
    assert rows[-1]["status"] == "succeeded", rows[-1]["error"]
    listed = json.loads(
        compose("exec", "-T", "redis-maint", "redis-maint", "backups", "list", "--json").stdout
    )
    assert listed[0]["status"] == "complete" and {f["path"] for f in listed[0]["files"]} >= {"dump.rdb"}
    print(
        f"\ncompose stack: up, health, doctor, metrics, healthcheck, backup in {time.monotonic() - t0:.0f}s"
    )
