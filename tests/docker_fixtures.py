"""A real Docker engine and the local check image, for tests that run containers.

`docker_engine` (session) runs scripts/ensure-dockerd.sh (installs docker.io, starts dockerd)
and scripts/build-check-image.sh (Debian's redis-server as an image: nothing can be pulled
here). Without an engine a test fails under CI=true and skips elsewhere: never silently green.
Import the fixtures into a test module: `from tests.docker_fixtures import check_image, ...`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.services import in_ci

ROOT = Path(__file__).resolve().parents[1]
CHECK_IMAGE = "redis-maint-check:7"  # the tag scripts/build-check-image.sh builds by default
MANAGED = "redis-maint.managed=1"


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"Docker is required under CI=true: {reason}")
    pytest.skip(f"no Docker engine: {reason}")


def _script(name: str, *args: str) -> None:
    try:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / name), *args],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"{name}: {exc}")
        return
    if proc.returncode != 0:
        _unavailable(f"{name} exited {proc.returncode}: {proc.stderr[-2000:]}")


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker SDK client on an engine that answers, with the local check image built."""
    import docker

    _script("ensure-dockerd.sh")
    _script("build-check-image.sh", CHECK_IMAGE)
    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def local_image(docker_engine) -> str:
    """The tag of the locally built check image."""
    return CHECK_IMAGE


@pytest.fixture
def check_image(docker_engine, monkeypatch, tmp_path) -> str:
    """REDIS_MAINT_CHECK_IMAGE at the local image; snapshots under tmp_path; never pull."""
    monkeypatch.setenv("REDIS_MAINT_CHECK_IMAGE", CHECK_IMAGE)
    monkeypatch.setenv("REDIS_MAINT_DOCKER__PULL_POLICY", "never")
    monkeypatch.setenv("REDIS_MAINT_DOCKER__SNAPSHOT_DIR", str(tmp_path / "check"))
    return CHECK_IMAGE


def managed_containers(client) -> list:
    """Every container redis-maint made that still exists, running or not (`docker ps -a`)."""
    return client.containers.list(all=True, filters={"label": MANAGED})


@pytest.fixture
def no_leftovers(docker_engine):
    """Fails the test if it leaves any redis-maint container behind."""
    before = {c.id for c in managed_containers(docker_engine)}
    yield docker_engine
    left = [c.name for c in managed_containers(docker_engine) if c.id not in before]
    assert not left, f"containers left behind: {left}"
