"""The one settings schema. Every field has a default and a description.

Sources, weakest first: these defaults, a TOML file, then REDIS_MAINT_* environment
variables (nested with `__`, e.g. REDIS_MAINT_JOBS__BACKUP__SCHEDULE). S3 credentials,
region and endpoint are not settings: boto3 reads them from the standard AWS sources.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, create_model, field_validator, model_validator

from config.secrets import CredentialUrl, EndpointUrl
from config.types import Duration, PositiveDuration, Section
from jobs import REGISTRY


class HttpSettings(Section):
    port: int = Field(default=9187, ge=0, le=65535, description="metrics/health port; 0 turns it off")
    bind: str = Field(default="127.0.0.1", description="address the HTTP endpoint binds to")
    stuck_grace: Duration = Field(
        default=timedelta(minutes=1),
        description="/healthz turns 503 when a run is still going this long past its job's timeout",
    )


class NotifySettings(Section):
    webhook_url: EndpointUrl = Field(
        default="", description="generic JSON POST on failures, health level changes and recoveries"
    )
    slack_webhook_url: EndpointUrl = Field(
        default="", description='Slack-compatible incoming webhook ({"text": ...})'
    )
    ping_url: EndpointUrl = Field(
        default="", description="dead-man's switch (healthchecks.io style) hit after each successful backup"
    )
    backup_rpo: Duration = Field(
        default=timedelta(hours=26),
        description="the backup-age job fails (and notifies) when the newest complete backup is older",
    )
    timeout: PositiveDuration = Field(
        default=timedelta(seconds=5), description="timeout of one webhook request"
    )
    retries: int = Field(default=3, ge=0, le=10, description="extra attempts after a failed webhook request")
    backoff: Duration = Field(
        default=timedelta(seconds=1), description="wait before the first retry; doubles after each attempt"
    )

    @field_validator("webhook_url", "slack_webhook_url", "ping_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, or empty to turn it off")
        return value


class LockSettings(Section):
    lease_ttl: PositiveDuration = Field(
        default=timedelta(seconds=60),
        description="a job's lease lapses this long after its holder's last heartbeat",
    )


class DaemonSettings(Section):
    drain_grace: Duration = Field(
        default=timedelta(seconds=25),
        description="on SIGTERM, how long running jobs may take to finish before they are marked interrupted",
    )
    catch_up: bool = Field(
        default=True, description="on start, run a job whose last success is older than its period"
    )


class DockerSettings(Section):
    """The Docker engine that runs throwaway check containers (integrity checks, deep verification)."""

    url: CredentialUrl = Field(
        default="",
        description="engine URL (unix:///var/run/docker.sock, tcp://host:2376); empty: $DOCKER_HOST or the default socket",
    )
    pull_policy: Literal["never", "missing", "always"] = Field(
        default="missing",
        description="pull check_image never, only when it is missing locally, or before every run",
    )
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="a throwaway container still running after this long is killed",
    )
    mem_limit: str = Field(
        default="1g", description="memory limit of a throwaway container (Docker syntax: 512m, 1g)"
    )
    pids_limit: int = Field(default=64, ge=8, description="process limit of a throwaway container")
    user: str = Field(
        default="999:1000",
        description="uid:gid throwaway containers run as (redis in redis:7-alpine); empty: the image's default",
    )
    snapshot_dir: str = Field(
        default="./var/check",
        description="where this process writes the snapshots that containers check (see snapshot_host_dir)",
    )
    snapshot_host_dir: str = Field(
        default="",
        description="sidecar in a container: snapshot_dir as the Docker host sees it (bind mounts resolve on the host)",
    )
    snapshot_volume: str = Field(
        default="",
        description="sidecar in a container: named volume mounted at snapshot_dir (instead of snapshot_host_dir)",
    )

    @field_validator("snapshot_host_dir")
    @classmethod
    def _absolute_host_dir(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("must be an absolute path on the Docker host (e.g. /srv/redis-maint/check)")
        return value

    @model_validator(mode="after")
    def _one_mapping(self) -> DockerSettings:
        if self.snapshot_host_dir and self.snapshot_volume:
            raise ValueError("set snapshot_host_dir or snapshot_volume, not both")
        return self


def _job_field_name(job_name: str) -> str:
    return job_name.replace("-", "_")


JobsSettings = create_model(
    "JobsSettings",
    __base__=Section,
    **{
        _job_field_name(name): (
            job.settings_model,
            Field(default_factory=job.settings_model, description=job.description),
        )
        for name, job in REGISTRY.items()
    },
)


class Settings(Section):
    redis_url: CredentialUrl = Field(
        default="redis://localhost:6379/0",
        description="the maintained Redis; password and rediss:// TLS come through the URL",
    )
    redis_timeout: PositiveDuration = Field(
        default=timedelta(seconds=5), description="connect and command timeout for Redis"
    )
    data_dir: str = Field(
        default="/data",
        description="where this process sees Redis's data directory (dump.rdb, appendonlydir/)",
    )
    history_url: CredentialUrl = Field(
        default="sqlite:///var/redis-maint.db",
        description="SQLAlchemy URL of the job history (SQLite by default, PostgreSQL for several sidecars)",
    )
    backup_target: str = Field(
        default="./var/backups", description="s3://bucket/prefix, or a local directory"
    )
    check_image: str = Field(
        default="redis:7-alpine", description="image for throwaway redis-check-aof/rdb containers"
    )
    timezone: str = Field(default="UTC", description="timezone of cron schedules")
    state_dir: str = Field(
        default="./var",
        description="small state files shared by every redis-maint process (e.g. the saved AOF-rewrite setting)",
    )
    instance: str = Field(
        default="default", description="name of the maintained Redis in backup keys and metrics"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="log level")
    http: HttpSettings = Field(default_factory=HttpSettings, description="metrics and health endpoint")
    lock: LockSettings = Field(default_factory=LockSettings, description="per-job leases")
    daemon: DaemonSettings = Field(default_factory=DaemonSettings, description="the scheduler process")
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="webhooks and dead-man's switch"
    )
    docker: DockerSettings = Field(default_factory=DockerSettings, description="throwaway check containers")
    jobs: JobsSettings = Field(default_factory=JobsSettings, description="per-job settings")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA timezone (e.g. UTC, Europe/London)") from None
        return value

    @field_validator("history_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a SQLAlchemy URL (e.g. sqlite:////var/lib/redis-maint/history.db)"
            ) from None
        return value

    @field_validator("backup_target")
    @classmethod
    def _target(cls, value: str) -> str:
        if "://" in value and not value.startswith("s3://"):
            raise ValueError("use s3://bucket/prefix or a local directory path")
        if value.startswith("s3://"):
            bucket = value[5:].split("/", 1)[0]
            if not (3 <= len(bucket) <= 63) or bucket != bucket.lower():
                raise ValueError("the bucket name must be 3-63 lowercase characters")
        return value

    @property
    def aof_guard_note(self) -> Path:
        """One note for every job that pauses AOF rewrites, so a SIGKILLed run is repaired by any next run."""
        return Path(self.state_dir) / "aof-rewrite-percentage.note"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def job(self, name: str) -> Any:
        return getattr(self.jobs, _job_field_name(name))
