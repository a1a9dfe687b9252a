"""A command loads what it needs when it needs it: reading the history never imports a job,
the Redis client, the Docker SDK, boto3 or APScheduler (each costs start-up time in every call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.common import ROOT

HEAVY = ("docker", "boto3", "botocore", "apscheduler", "redis")
# Runs the real CLI in a fresh interpreter and reports which modules it loaded.
PROBE = """
import json, sys
from redis_maint.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="redis-maint", standalone_mode=False)
finally:
    sys.stdout.flush()
    print("\\n@@MODULES@@" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*args: str, env: dict[str, str] | None = None) -> set[str]:
    env = {**os.environ, **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert "@@MODULES@@" in out.stderr, out.stderr[-2000:]
    return set(json.loads(out.stderr.rsplit("@@MODULES@@", 1)[1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m == "jobs" or m.startswith("jobs."))


@pytest.mark.parametrize("args", [("history", "--json"), ("backups", "list", "--json")])
def test_reading_the_history_imports_no_job_and_no_service_client(args):
    modules = loaded_by(*args)
    assert "redis_maint.history.runs" in modules  # it did read the history
    assert heavy(modules) == []


def test_listing_jobs_loads_their_settings_but_not_redis_docker_or_boto3():
    modules = loaded_by("jobs", "--json")
    assert "jobs.backup" in modules
    assert [m for m in heavy(modules) if m.split(".")[0] in ("redis", "docker", "boto3", "botocore")] == []


@pytest.mark.parametrize("args", [("config", "show"), ("config", "sample")])
def test_the_settings_commands_load_every_jobs_settings_but_none_of_their_machinery(args):
    """Every job's settings model, but not the history store, the clients or the scheduler: job
    modules import what a run needs inside the run, and cron defaults are checked without APScheduler."""
    modules = loaded_by(*args)
    assert {"config.schema", "jobs.backup", "jobs.backup_restore", "jobs.audit_report"} <= modules
    assert [m for m in modules if m.split(".")[0] in (*HEAVY, "sqlalchemy")] == []


# -- the read path builds no settings model and loads no renderer (start-up time: bench/cli_speed.py) -

# What only the full settings or a renderer bring: pydantic builds its models in pydantic.main, the
# schema builds every settings model, rich.console is for people (tables, runs), never for --json.
MODEL_AND_RENDERERS = ("pydantic.main", "config.schema", "config.types", "rich.console")


@pytest.mark.parametrize("args", [("history", "--json"), ("backups", "list", "--json")])
def test_json_reads_build_no_settings_model_and_load_no_renderer(args):
    modules = loaded_by(*args)
    assert "redis_maint.history.runs" in modules
    assert [m for m in MODEL_AND_RENDERERS if m in modules] == []


def test_jobs_json_uses_the_job_catalog_once_it_is_written(tmp_path):
    env = {"REDIS_MAINT_STATE_DIR": str(tmp_path / "state")}
    first = loaded_by("jobs", "--json", env=env)
    assert "jobs.backup" in first  # no catalog yet: the registry is imported, and the catalog written
    assert (tmp_path / "state" / "job-catalog.json").exists()
    again = loaded_by("jobs", "--json", env=env)
    assert "redis_maint.history.daemons" in again  # it did read the history
    assert heavy(again) == []
    assert [m for m in MODEL_AND_RENDERERS if m in again] == []


def test_jobs_json_from_the_catalog_is_what_the_full_settings_say(cli, monkeypatch):
    """Schedules as the jobs' settings models print them (an odd spacing normalised), descriptions
    from the registry, whether the catalog is cold or warm."""
    from config import load_settings
    from jobs import REGISTRY

    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__SCHEDULE", "15  2 * * 1-5")
    monkeypatch.setenv("REDIS_MAINT_JOBS__HEALTH__SCHEDULE", "every 90s")
    monkeypatch.setenv("REDIS_MAINT_TIMEZONE", "Europe/London")
    full = load_settings(jobs=REGISTRY)
    expected = [
        {
            "name": n,
            "description": j.description,
            "schedule": str(full.job(n).schedule),
            "timezone": full.timezone,
        }
        for n, j in REGISTRY.items()
    ]
    for _cold_then_warm in range(2):
        rows = json.loads(cli("jobs", "--json").stdout)
        assert [{k: r[k] for k in ("name", "description", "schedule", "timezone")} for r in rows] == expected
    by_name = {r["name"]: r for r in rows}
    assert by_name["backup"]["schedule"] == "15 2 * * 1-5"
    assert by_name["health"]["schedule"] == "every 1m30s"


def test_a_stale_or_damaged_job_catalog_is_rebuilt(tmp_path):
    from redis_maint.cli.job_catalog import CACHE_NAME, fingerprint, from_registry, job_catalog

    path = tmp_path / CACHE_NAME
    current = from_registry()
    lying = [{**vars(f), "fields": list(f.fields), "description": "from the cache"} for f in current]
    path.write_text(json.dumps({"key": fingerprint(), "jobs": lying}))
    assert {f.description for f in job_catalog(str(tmp_path))} == {"from the cache"}  # current key: used
    path.write_text(json.dumps({"key": "another version of the code", "jobs": lying}))
    assert job_catalog(str(tmp_path)) == current  # stale key: rebuilt from the registry
    assert json.loads(path.read_text())["key"] == fingerprint()
    path.write_text("{not json")
    assert job_catalog(str(tmp_path)) == current
    (tmp_path / "a-file").write_text("")  # a state dir that cannot be made: no cache, no error
    assert job_catalog(str(tmp_path / "a-file" / "x")) == current


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_MAINT_HISTORY_URL", "not a url at all"),
        ("REDIS_MAINT_LOG_LEVEL", "LOUD"),
        ("REDIS_MAINT_TIMEZONE", "Mars/Olympus_Mons"),
        ("REDIS_MAINT_INSTANCE", '["a", "list"]'),
    ],
)
@pytest.mark.parametrize("args", [("history", "--json"), ("backups", "list", "--json"), ("jobs", "--json")])
def test_a_bad_value_the_read_path_uses_exits_2_with_the_full_message(cli_process, name, value, args):
    full = cli_process("config", "show", env={name: value})
    read = cli_process(*args, env={name: value})
    assert full.returncode == read.returncode == 2
    assert read.stdout == ""
    assert read.stderr == full.stderr
    assert name in read.stderr and "Traceback" not in read.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_MAINT_JOBS__BACKUP__SCHEDULE", "0 3 31 2 *"),  # can never fire
        ("REDIS_MAINT_JOBS__BACKUP_CHECK__SCHEDULE", "0 3 * * *"),  # an on-demand job, scheduled
        ("REDIS_MAINT_JOBS__BACKUP__TYPO", "1"),  # unknown setting of a job
        ("REDIS_MAINT_JOBS__NO_SUCH_JOB__SCHEDULE", "off"),  # unknown job
    ],
)
def test_a_bad_job_setting_makes_jobs_exit_2_with_the_full_message(cli_process, name, value):
    full = cli_process("config", "show", env={name: value})
    read = cli_process("jobs", "--json", env={name: value})
    assert full.returncode == read.returncode == 2
    assert read.stderr == full.stderr and read.stdout == ""


def test_the_read_path_repeats_the_schemas_defaults_and_secret_fields():
    from config import core_view
    from config.schema import Settings
    from config.secrets import CREDENTIAL_URL, ENDPOINT_URL, secret_fields

    assert {k: Settings.model_fields[k].default for k in core_view.DEFAULTS} == core_view.DEFAULTS
    kinds = {name: kind for name, kind, _ in secret_fields(Settings())}
    assert {".".join(p) for p in core_view.CREDENTIAL_URLS} == {
        n for n, k in kinds.items() if k is CREDENTIAL_URL
    }
    assert {".".join(p) for p in core_view.ENDPOINT_URLS} == {
        n for n, k in kinds.items() if k is ENDPOINT_URL
    }


def test_the_read_path_registers_the_secrets_for_masking():
    from config.loader import load_core
    from redis_maint.redact import redact

    env = {
        "REDIS_MAINT_HISTORY_URL": "sqlite:////tmp/h.db?password=HistPw-read-path-1",
        "REDIS_MAINT_REDIS_URL": "redis://:RedisPw-read-path-2@localhost:6379/0",
        "REDIS_MAINT_NOTIFY__WEBHOOK_URL": "https://hooks.example/T0/ReadPathToken-0123456789abcdef",
    }
    core = load_core(environ=env)
    assert core.history_url == env["REDIS_MAINT_HISTORY_URL"]
    assert not hasattr(core, "model_fields")  # the light view, not the full model
    text = redact("HistPw-read-path-1 RedisPw-read-path-2 ReadPathToken-0123456789abcdef")
    assert "HistPw" not in text and "RedisPw" not in text and "ReadPathToken" not in text


def test_the_catalog_key_changes_with_any_file_of_the_jobs_or_config_packages(tmp_path, monkeypatch):
    import importlib.util
    import types

    from redis_maint.cli.job_catalog import fingerprint

    dirs = {name: tmp_path / name for name in ("jobs", "config")}
    for directory in dirs.values():
        directory.mkdir()
        (directory / "__init__.py").write_text("")
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: types.SimpleNamespace(submodule_search_locations=[str(dirs[name])]),
    )
    before = fingerprint()
    (dirs["jobs"] / "new_job.py").write_text("JOB = 1\n")
    added = fingerprint()
    (dirs["config"] / "__init__.py").write_text("# edited\n")
    edited = fingerprint()
    os.utime(dirs["jobs"] / "new_job.py", ns=(1, 1))  # same size, another modification time
    touched = fingerprint()
    assert len({before, added, edited, touched}) == 4
    assert fingerprint() == touched  # and nothing else moves it
