"""The sidecar image and the compose stack, on a real Docker engine (make test-e2e).

Nothing can be pulled here: the image is built from a local Debian base with wheels from the
host (scripts/build-image.sh), and the stack's Redis is the local check image. The stack runs on
the shipped infra/redis settings (.env.example as .env): its S3 backup target is moto's server,
listening on the Docker bridge's gateway so the sidecar container can reach it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from subprocess import DEVNULL

import boto3
import pytest

from tests.support.common import ROOT, free_port, in_ci, wait_for
from tests.support.services.docker import CHECK_IMAGE

# Building the image from nothing (debootstrap, wheels) takes ~3 min on 2 cores.
pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(900)]
IMAGE = "redis-maint:test"
STACK_SECRET = "stack-secret-key-do-not-log"
# infra/redis/.env.example's backup target, used as shipped
SHIPPED_BUCKET, SHIPPED_PREFIX, SHIPPED_REGION = "my-redis-backups", "prospectflow", "eu-west-1"


def _run(*cmd: str, timeout: float = 120, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="session")
def sidecar_image(docker_engine):
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
def bridge_s3(docker_engine):
    """moto's S3 server on the Docker bridge's gateway address, so containers can reach it."""
    ipam = docker_engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", gateway, "-p", str(port)], stdout=DEVNULL, stderr=DEVNULL)
    endpoint = f"http://{gateway}:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(endpoint + "/moto-api/", timeout=1), what="moto_server")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def _dotenv(shipped: str, overrides: dict[str, str]) -> str:
    """.env.example with only the given variables changed (appended when the example lacks them)."""
    lines, left = [], dict(overrides)
    for line in shipped.splitlines():
        name = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and name in left:
            line = f"{name}={left.pop(name)}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in left.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def stack(sidecar_image, bridge_s3, tmp_path):
    """infra/redis copied to a temp dir and started as an operator would: `cp .env.example .env`, then
    only what this machine needs changed (local images, free ports, the socket's group, a private check
    volume, an S3 endpoint and dummy keys). The environment is built from scratch, so none of the
    test's own REDIS_MAINT_* settings (temp history and backup paths) reach compose."""
    compose = shutil.which("docker-compose")
    if compose is None:
        message = "docker-compose not found (Debian's docker-compose package)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    cwd = tmp_path / "redis"
    shutil.copytree(ROOT / "infra" / "redis", cwd)
    (cwd / "data").mkdir()
    project = f"rmtest{os.getpid()}"
    machine = {
        "REDIS_IMAGE": CHECK_IMAGE,  # nothing can be pulled here
        "REDIS_MAINT_IMAGE": sidecar_image,
        "REDIS_MAINT_CHECK_IMAGE": CHECK_IMAGE,
        "REDIS_MAINT_CHECK_VOLUME": f"{project}-check",
        "REDIS_PORT": str(free_port()),
        "REDIS_MAINT_METRICS_PORT": str(free_port()),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": STACK_SECRET,
        "AWS_ENDPOINT_URL_S3": bridge_s3,
    }
    (cwd / ".env").write_text(_dotenv((cwd / ".env.example").read_text(), machine))
    _s3(bridge_s3).create_bucket(
        Bucket=SHIPPED_BUCKET, CreateBucketConfiguration={"LocationConstraint": SHIPPED_REGION}
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "COMPOSE_PROJECT_NAME": project,
    }
    env.update({k: os.environ[k] for k in ("DOCKER_HOST", "DOCKER_CONFIG") if k in os.environ})
    up = [compose, "-f", "docker-compose.yml"]
    t0 = time.monotonic()
    started = _run(*up, "up", "-d", "--no-build", timeout=300, env=env, cwd=cwd)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield lambda *args, **kw: _run(*up, *args, env=env, cwd=cwd, **kw), machine, t0
    finally:
        logs = _run(*up, "logs", "--no-color", "redis-maint", env=env, cwd=cwd).stdout
        down = _run(*up, "down", "-v", "--timeout", "10", env=env, cwd=cwd, timeout=300)
        # Redis wrote ./data as root in the container: clean it up through a container, not the host user.
        shutil.rmtree(cwd / "data", ignore_errors=True)
        assert down.returncode == 0, down.stderr + logs[-3000:]


def _s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=SHIPPED_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key=STACK_SECRET,
    )


def _get(port: str, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def test_the_compose_stack_runs_health_and_a_backup_inside_the_sidecar(stack):
    compose, machine, t0 = stack
    port = machine["REDIS_MAINT_METRICS_PORT"]
    # The sidecar runs on the shipped settings: compose defaults and .env.example, nothing of this test's.
    shown = compose("exec", "-T", "redis-maint", "redis-maint", "config", "show", timeout=60)
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert config["history_url"] == "sqlite:////var/lib/redis-maint/history.db"
    assert config["target"]["uri"] == f"s3://{SHIPPED_BUCKET}/{SHIPPED_PREFIX}"
    assert config["instance"] == "sessions" and config["data_dir"] == "/data"
    assert config["jobs"]["backup"]["verify_before_upload"] is True
    assert "pytest" not in shown.stdout and str(ROOT) not in shown.stdout
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
    probe = json.loads(_run("docker", "image", "inspect", machine["REDIS_MAINT_IMAGE"]).stdout)[0]
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
    summary = rows[-1]["summary"]
    assert {c["verdict"] for c in summary["checks"]} == {"ok"} and len(summary["checks"]) >= 1
    listed = json.loads(
        compose("exec", "-T", "redis-maint", "redis-maint", "backups", "list", "--json").stdout
    )
    assert listed[0]["status"] == "complete" and {f["path"] for f in listed[0]["files"]} >= {"dump.rdb"}
    stored = _s3(machine["AWS_ENDPOINT_URL_S3"]).list_objects_v2(Bucket=SHIPPED_BUCKET)["Contents"]
    manifest = f"/{summary['backup_id']}/manifest.json"
    assert any(
        o["Key"].startswith(f"{SHIPPED_PREFIX}/sessions/") and o["Key"].endswith(manifest) for o in stored
    )

    # Restore online into the running Redis container: it replicates from a throwaway redis-server in
    # the sidecar (bound to the sidecar's address on the compose network), then is a primary again.
    online = compose(
        "exec", "-T", "redis-maint", "redis-maint", "backups", "restore", summary["backup_id"],
        "--online", "--yes", "--json", timeout=300,
    )  # fmt: skip
    assert online.returncode == 0, online.stdout + online.stderr
    restored = json.loads(online.stdout)
    assert restored["after"]["role"] == "master" and restored["keys_after"] == restored["throwaway"]["keys"]
    logs = compose("logs", "--no-color", "redis-maint").stdout
    assert STACK_SECRET not in logs + shown.stdout + online.stdout
    print(
        f"\ncompose stack: up, health, doctor, metrics, healthcheck, backup in {time.monotonic() - t0:.0f}s"
    )
