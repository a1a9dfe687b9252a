"""The throwaway-container runner: host-path mapping (pure), then real containers on a real engine."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from config.schema import DockerSettings
from redis_maint.checks.containers import (
    LABEL_EXPIRES,
    LABEL_MANAGED,
    LABEL_RUN,
    ContainerSpec,
    Engine,
    Finished,
    MountPlan,
    plan_mount,
)
from redis_maint.checks.integrity import CheckTarget, hand_over, split_sections, verdicts
from redis_maint.checks.verdicts import Verdict
from redis_maint.errors import ContainerError, JobCancelledError
from tests.support.services.docker import TEST_RUN_ID, managed_containers, own_containers

# -- where the daemon finds a snapshot: the sidecar trap (pure) --------------------------------


def test_without_mapping_the_local_path_is_the_host_path(tmp_path):
    plan = plan_mount(tmp_path / "snap", DockerSettings())
    assert plan == MountPlan("bind", str(tmp_path / "snap"), "/check", "/check")


def test_relative_snapshot_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plan_mount(Path("var/check/x"), DockerSettings()).source == str(tmp_path / "var/check/x")


def test_host_dir_mapping_swaps_the_sidecars_prefix_for_the_hosts():
    docker = DockerSettings(snapshot_dir="/var/lib/redis-maint/check", snapshot_host_dir="/srv/maint/check")
    plan = plan_mount(Path("/var/lib/redis-maint/check/aof-check-7"), docker)
    assert plan == MountPlan("bind", "/srv/maint/check/aof-check-7", "/check", "/check")


def test_volume_mapping_mounts_the_volume_and_works_in_the_subdirectory():
    docker = DockerSettings(snapshot_dir="/check-vol", snapshot_volume="redis-maint-check")
    plan = plan_mount(Path("/check-vol/backup-3/staging"), docker)
    assert plan == MountPlan("volume", "redis-maint-check", "/check", "/check/backup-3/staging")


def test_a_snapshot_outside_the_mapped_dir_is_refused_with_the_fix():
    docker = DockerSettings(snapshot_dir="/check-vol", snapshot_volume="v")
    with pytest.raises(ContainerError, match=r"outside docker.snapshot_dir \(/check-vol\)"):
        plan_mount(Path("/tmp/elsewhere"), docker)


def test_mapping_settings_are_validated():
    with pytest.raises(ValueError, match="not both"):
        DockerSettings(snapshot_host_dir="/srv/x", snapshot_volume="v")
    with pytest.raises(ValueError, match="absolute path on the Docker host"):
        DockerSettings(snapshot_host_dir="srv/x")


# -- output of the one check container (pure) --------------------------------------------------


def test_sections_split_at_markers_and_an_unfinished_tool_is_an_error():
    targets = [CheckTarget("redis-check-aof", "a/m.manifest"), CheckTarget("redis-check-rdb", "dump.rdb")]
    output = "@@redis-maint-check@@ begin 0\nStart checking Multi Part AOF\n@@redis-maint-check@@ begin 1\n"
    sections = split_sections(output)
    assert sections[0] == ("Start checking Multi Part AOF", None)
    results = verdicts(Finished(None, output, True, 30.0), targets, 30)
    assert [r.verdict for r in results] == [Verdict.ERROR, Verdict.ERROR]
    assert results[0].output.endswith("killed: still running after 30s")


def test_hand_over_opens_the_copy_to_the_container_user_when_not_root(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    (tmp_path / "d" / "f").chmod(0o600)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    hand_over(tmp_path / "d", "999:1000")
    assert (tmp_path / "d" / "f").stat().st_mode & 0o666 == 0o666


def test_unreachable_engine_is_a_container_error(tmp_path):
    engine = Engine(DockerSettings(url=f"unix://{tmp_path}/none.sock"), run_id=1)
    with pytest.raises(ContainerError, match="cannot reach the Docker engine at unix://"):
        engine.ensure_image("redis:7-alpine")


# -- real containers ---------------------------------------------------------------------------


SERVER = ["redis-server", "--port", "0", "--unixsocket", "/tmp/redis.sock", "--save", ""]  # runs until killed


def _engine(**overrides) -> Engine:
    # The run id tells this test process's containers from those of other processes on the engine.
    return Engine(DockerSettings(**{"pull_policy": "never", **overrides}), run_id=TEST_RUN_ID)


IMAGE = "redis-maint-check:7"  # built by the docker_engine fixture (tests/support/fixtures/docker.py)


def _spec(command: list[str], mount: MountPlan | None = None) -> ContainerSpec:
    return ContainerSpec(image=IMAGE, command=command, purpose="test", mount=mount)


@pytest.mark.docker
def test_run_returns_exit_code_and_output_and_removes_the_container(no_leftovers):
    engine = _engine()
    finished = engine.run(_spec(["sh", "-c", "echo out; echo err >&2; exit 3"]), timeout_s=30)
    assert (finished.exit_code, finished.timed_out) == (3, False)
    # stdout and stderr arrive on two streams: their order is not kept (integrity merges with 2>&1)
    assert sorted(finished.output.split()) == ["err", "out"]


@pytest.mark.docker
def test_containers_are_hardened_and_labelled(no_leftovers):
    engine = _engine()
    with engine.started(_spec(SERVER), timeout_s=30) as container:
        attrs = engine.client.api.inspect_container(container.id)
    host, config = attrs["HostConfig"], attrs["Config"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == 1 << 30
    assert host["PidsLimit"] == 64
    assert "/tmp" in host["Tmpfs"]
    assert config["User"] == "999:1000"
    assert config["Labels"][LABEL_MANAGED] == "1"
    assert config["Labels"][LABEL_RUN] == TEST_RUN_ID


@pytest.mark.docker
def test_inside_the_container_root_is_read_only_and_there_is_no_network(no_leftovers):
    probe = (
        "( : > /probe ) 2>/dev/null && echo rootfs-writable || echo rootfs-read-only; "
        ": > /tmp/probe && echo tmp-writable; "
        "for n in /sys/class/net/*; do echo net=${n##*/}; done; "
        "while read k v rest; do case $k in Uid:|CapEff:) echo $k$v;; esac; done < /proc/self/status"
    )
    finished = _engine().run(_spec(["sh", "-c", probe]), timeout_s=30)
    lines = finished.output.split()
    assert "rootfs-read-only" in lines and "tmp-writable" in lines
    assert [line for line in lines if line.startswith("net=")] == ["net=lo"]
    assert "Uid:999" in lines and "CapEff:0000000000000000" in lines


@pytest.mark.docker
def test_a_container_past_its_deadline_is_killed_and_removed(no_leftovers, tmp_path):
    t0 = time.monotonic()
    finished = _engine().run(_spec(SERVER), timeout_s=1.5)
    assert finished.timed_out and finished.exit_code is None
    assert 1.5 <= time.monotonic() - t0 < 10
    assert own_containers(no_leftovers, tmp_path) == []


@pytest.mark.docker
def test_sigterm_cancel_kills_and_removes_the_container(no_leftovers):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(JobCancelledError, match="was killed"):
        _engine().run(_spec(SERVER), timeout_s=60, cancel=cancel)


@pytest.mark.docker
def test_missing_image_is_named_with_how_to_get_it(docker_engine):
    with pytest.raises(
        ContainerError, match=r"image nope/missing:1 is not on the Docker engine.*build-check-image"
    ):
        _engine().ensure_image("nope/missing:1")
    with pytest.raises(ContainerError, match=r"image nope/missing:1 could not be pulled"):
        Engine(DockerSettings(pull_policy="missing"), run_id="t").ensure_image("nope/missing:1")


@pytest.mark.docker
def test_pull_policy_always_pulls_even_a_present_image(docker_engine, local_image):
    # Nothing can be pulled here, so `always` fails where `missing` would use the local image.
    _engine(pull_policy="missing").ensure_image(local_image)
    with pytest.raises(ContainerError, match=rf"image {local_image} could not be pulled"):
        _engine(pull_policy="always").ensure_image(local_image)


@pytest.mark.docker
def test_leftovers_past_their_deadline_are_reaped(docker_engine, local_image, caplog):
    # Every process's Engine reaps before it starts a container: on an engine shared with other test
    # processes one of them may remove the stale container first. Then try again with a new one.
    for _ in range(5):
        stale = docker_engine.containers.create(
            local_image, ["redis-server"], labels={LABEL_MANAGED: "1", LABEL_EXPIRES: "1", LABEL_RUN: "old"}
        )
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING, logger="redis_maint.checks.containers"):
                _engine().reap()
            assert stale.id not in {c.id for c in managed_containers(docker_engine)}
        finally:
            for c in managed_containers(docker_engine):
                if c.id == stale.id:
                    c.remove(force=True)
        if any(getattr(r, "container", None) == stale.name for r in caplog.records):
            return  # this reap removed it
    pytest.fail("five stale containers in a row were reaped by other processes first")


@pytest.mark.docker
def test_reaping_while_other_processes_remove_their_containers_is_not_an_error(docker_engine, local_image):
    """Listing inspects each container: one removed in between (another run finishing) is skipped."""
    stop = threading.Event()

    def churn() -> None:  # fresh (not stale) managed containers, created and removed at once
        while not stop.is_set():
            c = docker_engine.containers.create(
                local_image, ["true"], labels={LABEL_MANAGED: "1", LABEL_EXPIRES: "9999999999"}
            )
            c.remove(force=True)

    churners = [threading.Thread(target=churn) for _ in range(3)]
    for t in churners:
        t.start()
    try:
        engine = _engine()
        for _ in range(40):
            engine.reap()
    finally:
        stop.set()
        for t in churners:
            t.join(30)


@pytest.mark.docker
def test_host_dir_mapping_works_for_a_sidecar_that_sees_the_host_dir_elsewhere(tmp_path, no_leftovers):
    host_dir = tmp_path / "host-view"
    (host_dir / "snap").mkdir(parents=True)
    (host_dir / "snap" / "hello").write_text("from the host")
    sidecar_view = tmp_path / "sidecar-view"
    sidecar_view.symlink_to(host_dir)  # the same directory, under another path
    engine = _engine(snapshot_dir=str(sidecar_view), snapshot_host_dir=str(host_dir))
    mount = plan_mount(sidecar_view / "snap", engine.settings)
    assert mount.source == str(host_dir / "snap")
    finished = engine.run(_spec(["sh", "-c", "read line < hello; echo $line"], mount), timeout_s=30)
    assert finished.output.strip() == "from the host"


@pytest.mark.docker
def test_named_volume_mapping_reaches_the_snapshot(docker_engine, no_leftovers):
    volume = docker_engine.volumes.create(name=f"redis-maint-test-{time.time_ns()}")
    try:
        local = Path(volume.attrs["Mountpoint"])  # what a sidecar with the volume mounted would see
        (local / "backup-1").mkdir()
        (local / "backup-1" / "hello").write_text("in the volume")
        engine = _engine(snapshot_dir=str(local), snapshot_volume=volume.name)
        mount = plan_mount(local / "backup-1", engine.settings)
        finished = engine.run(_spec(["sh", "-c", "read line < hello; echo $line"], mount), timeout_s=30)
        assert finished.output.strip() == "in the volume"
    finally:
        volume.remove(force=True)
