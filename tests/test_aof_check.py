"""The aof-check job against a real Redis 7 (appendonly yes) and a real Docker engine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.common import ROOT, wait_for
from tests.support.services.docker import own_containers
from tests.support.services.redis import wait_aof_rewrite

pytestmark = pytest.mark.docker

LAST_VALUE = "v" * 40


def populated(server) -> Path:
    """Sessions in an AOF base (after a rewrite), more in the incr file, and a dump.rdb."""
    client = server.client()
    client.mset({f"session:{i}": json.dumps({"sub": i, "org": "o1"}) for i in range(300)})
    client.bgrewriteaof()
    wait_aof_rewrite(client)
    for i in range(20):
        client.set(f"session:late:{i}", "x", ex=3600)
    client.save()
    client.set("lastkey", LAST_VALUE)
    return server.dir / "appendonlydir"


def _last_incr(aof_dir: Path) -> Path:
    return sorted(aof_dir.glob("*.incr.aof"), key=lambda p: int(p.name.split(".")[2]))[-1]


def _base(aof_dir: Path) -> Path:
    return next(aof_dir.glob("*.base.rdb"))


def _fingerprint(data_dir: Path) -> dict[str, tuple[bytes, int, int]]:
    """Bytes, mtime and owner of every file Redis has, to prove the check left them alone."""
    return {
        str(p.relative_to(data_dir)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_uid)
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.name != "redis.log"
    }


def _run(cli) -> tuple[int, dict]:
    result = cli("run", "aof-check", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_aof_check_reports_ok_for_the_aof_set_and_the_rdb(redis_server, check_image, no_leftovers, cli):
    populated(redis_server)
    code, run = _run(cli)
    assert code == 0, run["error"]
    checks = {c["tool"]: c for c in run["summary"]["checks"]}
    assert checks["redis-check-aof"] == {
        "file": "appendonlydir/appendonly.aof.manifest",
        "tool": "redis-check-aof",
        "verdict": "ok",
        "offset": None,
        "output": checks["redis-check-aof"]["output"],
    }
    assert checks["redis-check-aof"]["output"].endswith("All AOF files and manifest are valid")
    assert checks["redis-check-rdb"]["file"] == "dump.rdb"
    assert checks["redis-check-rdb"]["verdict"] == "ok"
    assert run["summary"]["image"] == check_image


def test_truncated_last_incr_is_reported_with_file_and_offset_and_live_files_untouched(
    redis_server, check_image, no_leftovers, cli
):
    aof_dir = populated(redis_server)
    incr = _last_incr(aof_dir)
    full = incr.stat().st_size
    last_command = f"*3\r\n$3\r\nSET\r\n$7\r\nlastkey\r\n${len(LAST_VALUE)}\r\n{LAST_VALUE}\r\n".encode()
    assert incr.read_bytes().endswith(last_command)
    with open(incr, "r+b") as f:  # a crash in the middle of the last command
        f.truncate(full - 10)
    before = _fingerprint(redis_server.dir)

    code, run = _run(cli)

    assert code == 1
    aof = next(c for c in run["summary"]["checks"] if c["tool"] == "redis-check-aof")
    assert aof["verdict"] == "truncated"
    assert aof["file"] == f"appendonlydir/{incr.name}"
    assert aof["offset"] == full - len(last_command)
    assert "truncated" in run["error"] and incr.name in run["error"]
    assert _fingerprint(redis_server.dir) == before


def test_flipped_bytes_in_the_base_are_corrupt(redis_server, check_image, no_leftovers, cli):
    aof_dir = populated(redis_server)
    base = _base(aof_dir)
    with open(base, "r+b") as f:
        f.seek(base.stat().st_size // 2)
        f.write(b"\xde\xad\xbe\xef")

    code, run = _run(cli)

    assert code == 1
    aof = next(c for c in run["summary"]["checks"] if c["tool"] == "redis-check-aof")
    assert (aof["verdict"], aof["file"]) == ("corrupt", f"appendonlydir/{base.name}")
    assert isinstance(aof["offset"], int)
    rdb = next(c for c in run["summary"]["checks"] if c["tool"] == "redis-check-rdb")
    assert rdb["verdict"] == "ok"  # dump.rdb is a different file


def test_no_container_is_left_after_runs(redis_server, check_image, docker_engine, cli, tmp_path):
    populated(redis_server)
    _run(cli)
    # Its own containers: other test processes share the engine (tests/support/services/docker.py).
    assert own_containers(docker_engine, tmp_path) == []


def test_missing_image_fails_the_run_naming_the_image_and_how_to_build_it(
    redis_server, check_image, no_leftovers, cli, monkeypatch
):
    populated(redis_server)
    monkeypatch.setenv("REDIS_MAINT_CHECK_IMAGE", "redis-maint-missing:nope")
    code, run = _run(cli)
    assert code == 1
    assert "image redis-maint-missing:nope is not on the Docker engine" in run["error"]
    assert "scripts/build-check-image.sh redis-maint-missing:nope" in run["error"]

    monkeypatch.setenv("REDIS_MAINT_DOCKER__PULL_POLICY", "missing")
    code, run = _run(cli)
    assert code == 1
    assert "image redis-maint-missing:nope could not be pulled" in run["error"]


def test_unreachable_engine_fails_the_run_cleanly(redis_server, monkeypatch, tmp_path, cli):
    monkeypatch.setenv("REDIS_MAINT_DOCKER__URL", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("REDIS_MAINT_DOCKER__SNAPSHOT_DIR", str(tmp_path / "check"))
    redis_server.client().save()
    code, run = _run(cli)
    assert code == 1
    assert run["status"] == "failed"
    assert run["error"].startswith("cannot reach the Docker engine at unix://")
    assert not list((tmp_path / "check").glob("aof-check-*")), "the snapshot must be removed"


@pytest.fixture(scope="module")
def hanging_image(docker_engine, local_image, tmp_path_factory):
    """The check image with a redis-check-aof that never finishes (a hung tool), first on PATH."""
    context = tmp_path_factory.mktemp("hanging-image")
    tool = context / "redis-check-aof"
    tool.write_text("#!/bin/sh\nwhile :; do :; done\n")
    tool.chmod(0o755)
    (context / "Dockerfile").write_text(
        f"FROM {local_image}\nCOPY redis-check-aof /hang/\nENV PATH=/hang:/usr/local/bin:/usr/bin:/bin\n"
    )
    tag = "redis-maint-check:hanging-test"
    docker_engine.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
    yield tag
    docker_engine.images.remove(tag, force=True)


def test_a_hung_check_is_killed_at_its_timeout_and_no_container_is_left(
    redis_server, check_image, hanging_image, no_leftovers, cli, monkeypatch, tmp_path
):
    populated(redis_server)
    monkeypatch.setenv("REDIS_MAINT_CHECK_IMAGE", hanging_image)
    monkeypatch.setenv("REDIS_MAINT_DOCKER__TIMEOUT", "2s")
    t0 = time.monotonic()

    code, run = _run(cli)

    assert code == 1
    assert 2 <= time.monotonic() - t0 < 15
    checks = run["summary"]["checks"]
    assert [(c["tool"], c["verdict"]) for c in checks] == [
        ("redis-check-aof", "error"),
        ("redis-check-rdb", "error"),
    ]
    assert checks[0]["output"].endswith("killed: still running after 2s")
    assert own_containers(no_leftovers, tmp_path) == []


def test_sigterm_during_a_check_kills_and_removes_the_container(
    redis_server, check_image, hanging_image, docker_engine, monkeypatch, tmp_path
):
    populated(redis_server)
    monkeypatch.setenv("REDIS_MAINT_CHECK_IMAGE", hanging_image)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "run", "aof-check", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        wait_for(lambda: _running_checks(docker_engine, tmp_path), timeout=60, what="the check container")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    run = json.loads(out)
    assert (proc.returncode, run["status"]) == (1, "interrupted")
    assert own_containers(docker_engine, tmp_path) == []
    assert not list((tmp_path / "check").glob("aof-check-*"))
    assert redis_server.client().config_get("auto-aof-rewrite-percentage") == {
        "auto-aof-rewrite-percentage": "100"
    }


def _running_checks(client, scope) -> list:
    """This test's check containers that are running (not another test process's)."""
    return own_containers(client, scope, label="redis-maint.purpose=check", status="running")
