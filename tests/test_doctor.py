"""doctor: checks Docker only when an enabled job needs it, names the config file it loaded, and
exits 0 when every check it ran passed. Real redis-server, SQLite file, local backup dir, dockerd."""

from __future__ import annotations

import json

import pytest

from config import loader
from tests.support.common import free_port

NO_DOCKER_JOBS = {
    "REDIS_MAINT_JOBS__AOF_CHECK__SCHEDULE": "off",
    "REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD": "false",
    "REDIS_MAINT_JOBS__BACKUP_VERIFY__SCHEDULE": "off",
}


@pytest.fixture
def no_engine(monkeypatch):
    """A Docker URL where nothing listens: a check that reaches for Docker fails."""
    monkeypatch.setenv("REDIS_MAINT_DOCKER__URL", f"tcp://127.0.0.1:{free_port()}")


def checks(result) -> dict[str, dict]:
    return {c["check"]: c for c in json.loads(result.stdout)}


def test_docker_is_skipped_with_the_reasons_when_no_enabled_job_needs_it(
    cli, redis_server, no_engine, monkeypatch
):
    for name, value in NO_DOCKER_JOBS.items():
        monkeypatch.setenv(name, value)
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    docker = checks(result)["docker"]
    assert docker["ok"] is True and docker["detail"].startswith("skipped: no enabled job needs Docker")
    for reason in (
        "aof-check: schedule off",
        "backup: verify_before_upload = false",
        "backup-verify: schedule off",
    ):
        assert reason in docker["detail"]
    text = cli("doctor", "-o", "table")  # piped, the default is tsv
    assert text.exit_code == 0
    assert any(line.startswith("skip docker") for line in text.stdout.splitlines()), text.stdout


@pytest.mark.parametrize(
    ("enabled", "named"),
    [
        ({"REDIS_MAINT_JOBS__AOF_CHECK__SCHEDULE": "30 3 * * *"}, "aof-check (30 3 * * *)"),
        (
            {"REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD": "true"},
            "backup (0 3 * * *): verify_before_upload",
        ),
        ({"REDIS_MAINT_JOBS__BACKUP_VERIFY__SCHEDULE": "0 4 * * 0"}, "backup-verify (0 4 * * 0)"),
    ],
)
def test_each_job_that_starts_containers_makes_doctor_check_docker(
    cli, redis_server, no_engine, monkeypatch, enabled, named
):
    for name, value in {**NO_DOCKER_JOBS, **enabled}.items():
        monkeypatch.setenv(name, value)
    result = cli("doctor", "--json")
    assert result.exit_code == 1, result.output
    docker = checks(result)["docker"]
    assert docker["ok"] is False and "cannot reach the Docker engine" in docker["detail"]
    assert all(c["ok"] for name, c in checks(result).items() if name != "docker")


def test_backup_with_verify_before_upload_but_no_schedule_needs_no_docker(
    cli, redis_server, no_engine, monkeypatch
):
    for name, value in NO_DOCKER_JOBS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "true")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__SCHEDULE", "off")
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    assert "backup: schedule off" in checks(result)["docker"]["detail"]


@pytest.mark.docker
def test_the_defaults_check_a_real_engine_and_pass_when_it_answers(cli, redis_server, check_image):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    docker = checks(result)["docker"]
    assert docker["ok"] is True and f"image {check_image} present" in docker["detail"]
    assert "needed by aof-check (30 3 * * *)" in docker["detail"]


def test_doctor_names_the_config_file_given_with_config(cli, redis_server, tmp_path, monkeypatch):
    for name, value in NO_DOCKER_JOBS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "maint.toml"
    path.write_text('instance = "from-file"\n')
    result = cli("--config", str(path), "doctor", "--json")
    assert result.exit_code == 0, result.output
    assert checks(result)["config"]["detail"].startswith(f"valid; file {path} (--config)")


def test_doctor_names_the_config_file_from_the_environment(cli, redis_server, tmp_path, monkeypatch):
    path = tmp_path / "env.toml"
    path.write_text('[jobs.aof_check]\nschedule = "off"\n')
    monkeypatch.setenv("REDIS_MAINT_CONFIG", str(path))
    result = cli("doctor", "-o", "table")
    assert f"config     valid; file {path} ($REDIS_MAINT_CONFIG)" in result.stdout


def test_doctor_names_the_shipped_file_and_says_none_without_one(cli, redis_server, monkeypatch, tmp_path):
    result = cli("doctor", "--json")
    assert f"file {loader.SHIPPED_CONFIG} (the shipped file)" in checks(result)["config"]["detail"]
    monkeypatch.setattr(loader, "SHIPPED_CONFIG", tmp_path / "absent.toml")
    result = cli("doctor", "--json")
    assert "file none (built-in defaults and environment only)" in checks(result)["config"]["detail"]


def test_an_invalid_config_names_the_file_and_exits_2(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('timezone = "Mars/Olympus"\n')
    result = cli("--config", str(path), "doctor", "--json")
    assert result.exit_code == 2
    (config,) = json.loads(result.stdout)
    assert config["ok"] is False and f"file {path} (--config)" in config["detail"]
    assert "timezone" in config["detail"]
