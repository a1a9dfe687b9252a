"""Settings: defaults -> TOML -> env, every error named with its value and source."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config import load_settings
from config.loader import SHIPPED_CONFIG
from config.sample import render_sample
from config.schema import with_jobs
from jobs import REGISTRY
from redis_maint.durations import format_duration, parse_duration
from redis_maint.errors import ConfigError, MaintenanceError
from redis_maint.schedules import parse_schedule


def test_shipped_config_is_the_schema_defaults():
    assert SHIPPED_CONFIG.read_text() == render_sample(with_jobs(REGISTRY)), (
        "run: redis-maint config sample > config/redis-maint.toml"
    )
    shipped = load_settings(jobs=REGISTRY, environ={})
    assert shipped.redis_url == "redis://localhost:6379/0"
    assert shipped.timezone == "UTC"


def test_env_overrides_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'instance = "from-file"\ncheck_image = "img:file"\n[jobs.health]\nschedule = "*/5 * * * *"\n'
    )
    s = load_settings(
        path,
        environ={"REDIS_MAINT_CHECK_IMAGE": "img:env", "REDIS_MAINT_JOBS__HEALTH__PING_WARNING_MS": "7"},
        jobs=REGISTRY,
    )
    assert s.instance == "from-file"
    assert s.check_image == "img:env"
    assert str(s.job("health").schedule) == "*/5 * * * *"
    assert s.job("health").ping_warning_ms == 7.0
    assert s.job("health").ping_critical_ms == 20.0


def test_public_env_names_map_to_settings():
    env = {
        "REDIS_MAINT_REDIS_URL": "rediss://:pw@cache:6380/1",
        "REDIS_MAINT_DATA_DIR": "/srv/redis",
        "REDIS_MAINT_HISTORY_URL": "postgresql://u@db/maint",
        "REDIS_MAINT_TARGET__URI": "s3://my-bucket/redis",
        "REDIS_MAINT_CHECK_IMAGE": "redis:7.2-alpine",
        "REDIS_MAINT_TIMEZONE": "Europe/London",
        "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "every 30s",
    }
    s = load_settings(jobs=REGISTRY, environ=env)
    assert (s.redis_url, s.data_dir, s.history_url) == (
        env["REDIS_MAINT_REDIS_URL"],
        "/srv/redis",
        env["REDIS_MAINT_HISTORY_URL"],
    )
    assert (s.target.uri, s.check_image, s.timezone) == (
        "s3://my-bucket/redis",
        "redis:7.2-alpine",
        "Europe/London",
    )
    assert s.job("health").schedule.interval == timedelta(seconds=30)


def test_every_bad_field_is_reported_at_once_with_value_and_source(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('timezone = "Mars/Olympus"\nbogus_key = 1\n')
    env = {
        "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": "61 * * * *",
        "REDIS_MAINT_REDIS_URL": "http://nope",
        "REDIS_MAINT_JOBS__HEALTH__TIMEOUT": "ten minutes",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env, jobs=REGISTRY)
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert (
        f"timezone: not a known IANA timezone (e.g. UTC, Europe/London) (got 'Mars/Olympus', from file {path})"
        in text
    )
    assert f"bogus_key: unknown setting (from file {path})" in text
    assert (
        "jobs.health.schedule" in text
        and "'61 * * * *'" in text
        and "env REDIS_MAINT_JOBS__HEALTH__SCHEDULE" in text
    )
    assert "redis_url" in text and "env REDIS_MAINT_REDIS_URL" in text
    assert "jobs.health.timeout" in text and "'ten minutes'" in text
    assert info.value.exit_code == 2


def test_unknown_env_setting_is_an_error():
    with pytest.raises(
        ConfigError, match=r"jobs\.helth: unknown setting \(from env REDIS_MAINT_JOBS__HELTH__SCHEDULE\)"
    ):
        load_settings(jobs=REGISTRY, environ={"REDIS_MAINT_JOBS__HELTH__SCHEDULE": "off"})


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(jobs=REGISTRY, environ={"REDIS_MAINT_CONFIG": str(tmp_path / "nope.toml")})


def test_password_in_a_bad_value_is_masked():
    with pytest.raises(ConfigError) as info:
        load_settings(jobs=REGISTRY, environ={"REDIS_MAINT_REDIS_URL": "http://user:s3cret@host/"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 604800),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("0.5s", 0.5),
    ],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "ten", "5x", "1h 30", "-5s", "500ms", "1M", "2H", "1y"])
def test_bad_durations_are_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", ["2", "90", "1.5", 2, 0.5])
def test_a_bare_number_is_not_a_duration_and_the_error_suggests_units(value):
    with pytest.raises(ValueError, match=rf'"{value}" has no unit; did you mean {value}h or {value}d\?'):
        parse_duration(value)


def test_an_upper_case_unit_is_refused_with_the_lower_case_spelling():
    with pytest.raises(ValueError, match="did you mean 1m"):
        parse_duration("1M")


def test_duration_round_trip():
    for secs in (0.25, 1, 59, 60, 3600, 5400, 86400, 90061):
        td = timedelta(seconds=secs)
        assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("REDIS_MAINT_JOBS__SESSION_SWEEP__MAX_AGE", "2"),
        ("REDIS_MAINT_LOCK__LEASE_TTL", "60"),
        ("REDIS_MAINT_JOBS__BACKUP__TIMEOUT", "7200"),
    ],
)
def test_a_duration_setting_without_a_unit_exits_2_naming_field_and_source(env, value):
    with pytest.raises(ConfigError) as info:
        load_settings(jobs=REGISTRY, environ={env: value})
    assert info.value.exit_code == 2
    assert "has no unit" in str(info.value)
    assert f"env {env}" in str(info.value)


def test_a_duration_without_a_unit_in_toml_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[jobs.session_sweep]\nmax_age = 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(jobs=REGISTRY, config_path=path, environ={})
    assert "jobs.session_sweep.max_age" in str(info.value)
    assert "did you mean 2h or 2d?" in str(info.value)


@pytest.mark.parametrize("env", ["REDIS_MAINT_JOBS__HEALTH__TIMEOUT", "REDIS_MAINT_REDIS_TIMEOUT"])
def test_a_timeout_of_zero_is_a_config_error(env):
    with pytest.raises(ConfigError) as info:
        load_settings(jobs=REGISTRY, environ={env: "0s"})
    assert "must be longer than 0s" in str(info.value)


@pytest.mark.parametrize("expr", ["0 3 31 2 *", "0 3 30 2 *", "0 3 31 4 *"])
def test_a_schedule_that_can_never_fire_is_a_config_error(expr):
    with pytest.raises(ConfigError) as info:
        load_settings(jobs=REGISTRY, environ={"REDIS_MAINT_JOBS__BACKUP__SCHEDULE": expr})
    assert "can never fire" in str(info.value)


def test_a_leap_day_schedule_is_accepted():
    settings = load_settings(jobs=REGISTRY, environ={"REDIS_MAINT_JOBS__BACKUP__SCHEDULE": "0 3 29 2 *"})
    assert str(settings.job("backup").schedule) == "0 3 29 2 *"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("0 3 * * *", "cron"),
        ("*/15 * * * *", "cron"),
        ("0 4 * * sun", "cron"),
        ("every 30s", "every"),
        ("off", "off"),
    ],
)
def test_schedules_parse(text, kind):
    assert parse_schedule(text).kind == kind


@pytest.mark.parametrize("text", ["0 3 * *", "every", "every 0s", "60 * * * *", "daily"])
def test_bad_schedules_are_rejected(text):
    with pytest.raises(ValueError):
        parse_schedule(text)


@pytest.mark.parametrize(
    ("old", "value", "read"),
    [
        ("REDIS_MAINT_BACKUP_TARGET", "s3://old-name/x", lambda s: s.target.uri),
        ("REDIS_MAINT_JOBS__BACKUP__S3__STORAGE_CLASS", "STANDARD_IA", lambda s: s.target.s3.storage_class),
        ("REDIS_MAINT_NOTIFY__BACKUP_RPO", "30h", lambda s: format_duration(s.job("backup-age").rpo)),
        ("REDIS_MAINT_JOBS__SESSION_SWEEP__KEY_PATTERN", "sess:*", lambda s: s.sessions.key_pattern),
        ("REDIS_MAINT_JOBS__SESSION_SWEEP__SCAN_COUNT", "500", lambda s: s.sessions.scan_count),
    ],
)
def test_a_setting_under_its_old_name_still_works_and_warns(old, value, read, caplog):
    with caplog.at_level("WARNING", logger="config"):
        s = load_settings(environ={old: value}, jobs=REGISTRY)
    assert str(read(s)) in (value, "1d6h")  # 30h is shown as 1d6h
    assert any("rename it" in str(r.__dict__.get("setting")) for r in caplog.records)


def test_an_old_name_in_the_environment_beats_the_new_name_in_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[target]\nuri = "./from-file"\n')
    s = load_settings(path, environ={"REDIS_MAINT_BACKUP_TARGET": "./from-env"})
    assert s.target.uri == "./from-env"


def test_old_and_new_name_from_the_same_source_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('backup_target = "./a"\n[target]\nuri = "./b"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "backup_target" in str(info.value) and "keep only target.uri" in str(info.value)


def test_without_the_jobs_models_job_tables_are_not_read():
    s = load_settings(environ={"REDIS_MAINT_JOBS__HEALTH__BOGUS": "1"})
    assert s.target.uri == "./var/backups"
    with pytest.raises(MaintenanceError, match="were not loaded"):
        s.job("health")
    with pytest.raises(ConfigError):
        load_settings(environ={"REDIS_MAINT_JOBS__HEALTH__BOGUS": "1"}, jobs=REGISTRY)


def test_config_show_origin_names_the_file_and_where_each_value_came_from(cli, tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text('instance = "from-file"\n[jobs.health]\nschedule = "every 30s"\n')
    monkeypatch.setenv("REDIS_MAINT_CONFIG", str(path))
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://:origin-secret-77@cache:6380/0")

    lines = cli("config", "show", "--origin").stdout.splitlines()

    assert lines[0] == f"# config file: {path} ($REDIS_MAINT_CONFIG)"
    assert 'instance = "from-file"  # file ' + str(path) in lines
    assert 'jobs.health.schedule = "every 30s"  # file ' + str(path) in lines
    assert 'redis_url = "redis://:***@cache:6380/0"  # env REDIS_MAINT_REDIS_URL' in lines
    assert 'timezone = "UTC"  # default' in lines
    assert not any("origin-secret-77" in line for line in lines)


def test_an_old_setting_name_shows_its_true_origin(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_MAINT_CONFIG", str(tmp_path / "empty.toml"))
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.delenv("REDIS_MAINT_TARGET__URI")  # the test's own target, under the new name
    monkeypatch.setenv("REDIS_MAINT_BACKUP_TARGET", "./old-name")

    lines = cli("config", "show", "--origin").stdout.splitlines()

    assert 'target.uri = "./old-name"  # env REDIS_MAINT_BACKUP_TARGET' in lines


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///history.db",
        "sqlite:////var/lib/redis-maint/history.db",
        "sqlite://",
        "postgresql+psycopg://maint:s3cret@db:5432/history",
        "postgresql://maint:a:b@[::1]:5432/history?sslmode=require",
        "postgresql://db: 5/history",
        "history.db",
        "/var/lib/history.db",
        "sqlite:/history.db",
        "://db/history",
        "postgres ql://db/history",
        "postgresql://db:5432x/history",
        "postgresql://db:/history",
    ],
)
def test_the_history_url_check_agrees_with_sqlalchemy(url):
    # `config show` checks history_url without importing SQLAlchemy; it must accept what make_url does.
    from sqlalchemy.engine import make_url

    from config.core_view import is_sqlalchemy_url

    try:
        make_url(url)
        accepted = True
    except Exception:
        accepted = False
    assert is_sqlalchemy_url(url) is accepted


def test_a_history_url_sqlalchemy_cannot_read_is_a_config_error():
    with pytest.raises(ConfigError, match=r"history_url.*not a SQLAlchemy URL"):
        load_settings(jobs=REGISTRY, environ={"REDIS_MAINT_HISTORY_URL": "postgresql://db:5432x/history"})
