"""The few settings that reading the history needs, checked without building the settings model.

Building and validating the pydantic settings models costs more start-up time than everything else
`history`, `backups list` and `jobs` do. These commands read the same sources as `load_settings`
(defaults, the file, the environment, old names moved) and check only the values they use, with
the schema's own rules. A value that does not pass is not reported here: `config.loader.load_core`
then takes the full path, whose error (exit 2) names it exactly as every other command does.
Settings these commands do not use are not checked by them (`doctor` and `config show` check all).

The defaults and the list of secret-bearing fields repeat the schema's; tests/test_cli_imports.py
keeps them equal to `config.schema.Settings`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

# Settings' defaults for the values this view holds (config.schema.Settings).
DEFAULTS = {
    "history_url": "sqlite:///var/redis-maint.db",
    "log_level": "INFO",
    "instance": "default",
    "timezone": "UTC",
    "state_dir": "./var",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Secret-bearing settings (config.secrets kinds): their secret parts are registered with redact()
# just as load_settings registers them, so a read command masks them in any text too.
CREDENTIAL_URLS = (("redis_url",), ("node_url",), ("history_url",), ("docker", "url"))
ENDPOINT_URLS = (("notify", "webhook_url"), ("notify", "slack_webhook_url"), ("notify", "ping_url"))


@dataclass(frozen=True)
class JobFacts:
    """What the view needs of a job to check its [jobs.<job>] table: see cli/job_catalog.py."""

    name: str
    description: str
    schedule_default: str  # as str(Schedule) prints it: a value equal to it needs no parsing
    on_demand: bool  # OnDemandSettings: its schedule must stay off
    fields: tuple[str, ...]  # the keys its settings model takes
    scope: str = "deployment"  # Job.scope: "deployment" or "node" (one run per slot per Redis node)


@dataclass(frozen=True)
class CoreSettings:
    history_url: str
    log_level: str
    instance: str
    timezone: str
    state_dir: str
    _data: dict[str, Any] = field(repr=False)
    _origins: dict[tuple[str, ...], str] = field(repr=False)
    _config_file: str = "none"

    @classmethod
    def checked(
        cls, data: dict[str, Any], sources: dict[tuple[str, ...], str], config_file: str
    ) -> CoreSettings | None:
        """The view of merged settings `data`, or None when one of its values breaks a rule."""
        values = {key: data.get(key, default) for key, default in DEFAULTS.items()}
        if not all(isinstance(v, str) for v in values.values()):
            return None
        if values["log_level"] not in LOG_LEVELS or not _known_zone(values["timezone"]):
            return None
        if not is_sqlalchemy_url(values["history_url"]):
            return None
        return cls(**values, _data=data, _origins=sources, _config_file=config_file)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def config_file(self) -> str:
        return self._config_file

    def origin(self, path: tuple[str, ...]) -> str:
        """Where the value at `path` came from: `default`, `file PATH` or `env NAME`."""
        for n in range(len(path), 0, -1):
            if path[:n] in self._origins:
                return self._origins[path[:n]]
        return "default"

    def register_secrets(self) -> None:
        from redis_maint.redact import endpoint_secrets, register_secrets, url_secrets

        parts: list[str] = []
        for paths, secret_parts in ((CREDENTIAL_URLS, url_secrets), (ENDPOINT_URLS, endpoint_secrets)):
            for value in _values(self._data, paths):
                parts += secret_parts(value)
        register_secrets(parts)

    def job_schedules(self, jobs: Iterable[JobFacts]) -> dict[str, str] | None:
        """Each job's schedule as the settings give it (`str(Schedule)`), checked like the jobs'
        settings models check it; None when a [jobs.*] table has anything those would refuse."""
        tables = self._data.get("jobs", {})
        if not isinstance(tables, Mapping):
            return None
        by_field = {job.name.replace("-", "_"): job for job in jobs}
        if any(key not in by_field for key in tables):
            return None
        out = {}
        for key, job in by_field.items():
            table = tables.get(key, {})
            if not isinstance(table, Mapping) or any(k not in job.fields for k in table):
                return None
            raw = table.get("schedule", job.schedule_default)
            if not isinstance(raw, str):
                return None
            if raw == job.schedule_default:
                out[job.name] = raw  # checked when the catalog was made (no cron parser loads)
                continue
            schedule = _schedule(raw)
            if schedule is None or (job.on_demand and schedule.kind != "off"):
                return None
            out[job.name] = str(schedule)
        return out


def _schedule(raw: str) -> Any:
    from redis_maint.schedules import parse_schedule

    try:
        return parse_schedule(raw)
    except Exception:  # the full path reports it as the jobs' settings models do
        return None


def _values(data: Mapping[str, Any], paths: Iterable[tuple[str, ...]]) -> Iterable[str]:
    for path in paths:
        value: Any = data
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value:
            yield value


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:  # any refusal: the full path reports it as the schema does
        return False
    return True


# SQLAlchemy's URL grammar up to the port (sqlalchemy.engine.url.make_url): a string is a URL to it
# when it starts `dialect[+driver]://` and a port, if given, is a number. Checked here without importing
# SQLAlchemy (~110 ms), which `config show` never needs; tests/test_config.py holds the two equal.
_URL_HEAD = re.compile(r"[\w+]+://(?:[^:/]*(?::[^@]*)?@)?(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?")


def is_sqlalchemy_url(url: str) -> bool:
    """Whether SQLAlchemy's make_url accepts `url`."""
    match = _URL_HEAD.match(url)
    if match is None:
        return False
    if match["port"] is None:
        return True
    try:
        int(match["port"])  # as SQLAlchemy reads it: ":" with no number is refused too
    except ValueError:
        return False
    return True
