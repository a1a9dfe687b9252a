"""The one settings schema. Every field has a default and a description.

Sources, weakest first: these defaults, a TOML file, then REDIS_MAINT_* environment
variables (nested with `__`, e.g. REDIS_MAINT_JOBS__BACKUP__SCHEDULE). S3 credentials,
region and endpoint are not settings: boto3 reads them from the standard AWS sources.

This module knows no job. Each job brings its own settings model; `with_jobs(registry)` composes
them under [jobs.<job>] when a command needs them, so a command that only reads the history
never loads a job's module.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, PrivateAttr, create_model, field_validator, model_validator

from config.core_view import is_sqlalchemy_url
from config.secrets import CredentialUrl, EndpointUrl
from config.types import Duration, PositiveDuration, Section, section
from redis_maint.errors import MaintenanceError

if TYPE_CHECKING:
    from redis_maint.storage import Target
    from redis_maint.storage.base import ObjectLock
    from redis_maint.storage.s3 import S3Options


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
    heartbeat: PositiveDuration = Field(
        default=timedelta(seconds=5),
        description="how often the daemon renews its row in the history store (its host, pid and schedules); "
        "`jobs` and `doctor` count it gone after 3 missed beats",
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


MIB = 1024 * 1024
_ARCHIVE_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}


class S3Settings(Section):
    server_side_encryption: Literal["", "AES256", "aws:kms"] = Field(
        default="", description="SSE header on every object; empty leaves it to the bucket's default"
    )
    sse_kms_key_id: str = Field(default="", description="KMS key id/ARN with aws:kms; empty: the aws/s3 key")
    storage_class: str = Field(default="", description="S3 storage class (e.g. STANDARD_IA); empty: STANDARD")
    checksum_algorithm: Literal["SHA256", ""] = Field(
        default="SHA256", description="per-part checksum S3 verifies on upload; empty for stores without one"
    )
    request_checksum_calculation: Literal["when_supported", "when_required"] = Field(
        default="when_supported",
        description="botocore default checksums; when_required for S3-compatible stores that reject them",
    )
    response_checksum_validation: Literal["when_supported", "when_required"] = Field(
        default="when_supported", description="validate response checksums; when_required likewise"
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="bucket addressing; path for most S3-compatible stores (MinIO)"
    )
    multipart_chunk_mib: int = Field(default=8, ge=5, le=5120, description="multipart part size (MiB)")
    max_concurrency: int = Field(default=10, ge=1, le=64, description="parallel part uploads per file")
    connect_timeout: PositiveDuration = Field(default=timedelta(seconds=10), description="S3 connect timeout")
    read_timeout: PositiveDuration = Field(default=timedelta(seconds=60), description="S3 read timeout")
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="attempts per S3 request (standard retries)"
    )

    @field_validator("storage_class")
    @classmethod
    def _readable_class(cls, value: str) -> str:
        if value.upper() in _ARCHIVE_CLASSES:
            raise ValueError(
                "archive classes cannot be read without a restore request, so verify and restore would "
                "fail; use STANDARD_IA or GLACIER_IR, or a lifecycle rule to archive old backups"
            )
        return value

    def options(self) -> S3Options:
        from redis_maint.storage.s3 import S3Options  # boto3 loads only for S3 work

        chunk = self.multipart_chunk_mib * MIB
        return S3Options(
            server_side_encryption=self.server_side_encryption,
            sse_kms_key_id=self.sse_kms_key_id,
            storage_class=self.storage_class,
            checksum_algorithm=self.checksum_algorithm,
            request_checksum_calculation=self.request_checksum_calculation,
            response_checksum_validation=self.response_checksum_validation,
            addressing_style=self.addressing_style,
            multipart_threshold=chunk,
            multipart_chunksize=chunk,
            max_concurrency=self.max_concurrency,
            connect_timeout_s=self.connect_timeout.total_seconds(),
            read_timeout_s=self.read_timeout.total_seconds(),
            max_attempts=self.max_attempts,
        )


class TargetSettings(Section):
    """Where backups are stored: one URI, and the options of an S3 target."""

    uri: str = Field(default="./var/backups", description="s3://bucket/prefix, or a local directory")
    s3: S3Settings = section("S3 options (s3:// targets only)")

    @field_validator("uri")
    @classmethod
    def _target(cls, value: str) -> str:
        if "://" in value and not value.startswith("s3://"):
            raise ValueError("use s3://bucket/prefix or a local directory path")
        if value.startswith("s3://"):
            bucket = value[5:].split("/", 1)[0]
            if not (3 <= len(bucket) <= 63) or bucket != bucket.lower():
                raise ValueError("the bucket name must be 3-63 lowercase characters")
        return value

    def open(self, uri: str | None = None) -> Target:
        """The configured target, or `uri` (where an older backup went), with these S3 options."""
        from redis_maint.storage import open_target

        uri = uri or self.uri
        # S3 options only for S3: building them loads boto3, which a local target never needs.
        return open_target(uri, self.s3.options() if uri.startswith("s3://") else None)


class SessionsSettings(Section):
    """Where sessions live and how they are read: shared by sweep, delete and count."""

    key_pattern: str = Field(default="session:*", description="SCAN MATCH pattern of session keys")
    created_field: str = Field(
        default="createdAt", description="JSON field with the session's creation time (epoch ms)"
    )
    organisation_field: str = Field(
        default="organisationId", description="JSON field with the session's organisation id"
    )
    scan_count: int = Field(
        default=300, ge=10, le=5000, description="SCAN COUNT: keys Redis examines per SCAN call (~0.4 ms)"
    )
    read_batch: int = Field(
        default=300, ge=1, le=5000, description="keys per MGET (~0.3 ms); a command also stays under 12 KB"
    )
    act_batch: int = Field(
        default=100, ge=1, le=1000, description="keys per atomic check-and-delete script call (~0.4 ms)"
    )
    idle_cpu: bool = Field(
        default=True,
        description="sweep at the lowest CPU priority (SCHED_IDLE), so Redis and its clients always "
        "come first; a host with no idle CPU then slows the sweep down",
    )
    unreadable_samples: int = Field(
        default=5, ge=0, le=100, description="how many unreadable keys a sweep's summary names"
    )

    @field_validator("key_pattern", "created_field", "organisation_field")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class AuditSettings(Section):
    """Checkpoints of the history's evidence chain on the backup target (`audit verify` reads them)."""

    object_lock_mode: Literal["", "GOVERNANCE", "COMPLIANCE"] = Field(
        default="",
        description="S3 Object Lock mode for audit checkpoints (and backup manifests with "
        "jobs.backup.object_lock); the bucket must have Object Lock enabled; empty: no lock",
    )
    object_lock_days: int = Field(
        default=400,
        ge=1,
        le=36500,
        description="how long each locked object is retained (days); cover the audit period and then some",
    )

    def object_lock(self) -> ObjectLock | None:
        """The retention to write with now, or None when Object Lock is off."""
        if not self.object_lock_mode:
            return None
        from redis_maint.storage.base import ObjectLock
        from redis_maint.timeutil import utcnow

        return ObjectLock(self.object_lock_mode, utcnow() + timedelta(days=self.object_lock_days))


class ArchiveSettings(Section):
    """The AOF archiver (point-in-time recovery): Redis's incr files shipped to the target as they grow."""

    enabled: bool = Field(
        default=False,
        description="run the archiver in the daemon (needs Redis 7's multi-part AOF, appendonly yes)",
    )
    interval: PositiveDuration = Field(
        default=timedelta(seconds=5),
        description="how often the bytes appended to the incr file are uploaded as one segment (the RPO)",
    )
    window: PositiveDuration = Field(
        default=timedelta(days=7),
        description="how far back a restore to a time can go; older generations are pruned unless a "
        "retained backup still needs them",
    )
    configure_redis: bool = Field(
        default=False,
        description="set aof-timestamp-enabled yes on Redis (CONFIG SET, and CONFIG REWRITE when allowed)",
    )


class JobSpec(Protocol):
    """What the schema needs of a job to compose its settings (jobs.base.Job has it)."""

    description: str
    settings_model: type[BaseModel]


class Settings(Section):
    redis_url: CredentialUrl = Field(
        default="redis://localhost:6379/0",
        description="the maintained Redis; password and rediss:// TLS come through the URL",
    )
    redis_timeout: PositiveDuration = Field(
        default=timedelta(seconds=5), description="connect and command timeout for Redis"
    )
    node_url: CredentialUrl = Field(
        default="",
        description="the Redis node beside this sidecar, whose files data_dir holds (redis://…), when "
        "redis_url goes through Sentinel (redis+sentinel://…); empty: the node redis_url reaches",
    )
    data_dir: str = Field(
        default="/data",
        description="where this process sees Redis's data directory (dump.rdb, appendonlydir/)",
    )
    history_url: CredentialUrl = Field(
        default="sqlite:///var/redis-maint.db",
        description="SQLAlchemy URL of the job history (SQLite by default, PostgreSQL for several sidecars)",
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
    http: HttpSettings = section("metrics and health endpoint")
    lock: LockSettings = section("per-job leases")
    daemon: DaemonSettings = section("the scheduler process")
    notify: NotifySettings = section("webhooks and dead-man's switch")
    docker: DockerSettings = section("throwaway check containers")
    target: TargetSettings = section("where backups are stored")
    audit: AuditSettings = section("evidence checkpoints on the backup target, Object Lock")
    sessions: SessionsSettings = section("the session keys: layout, JSON fields, batching")
    archive: ArchiveSettings = section("the AOF archiver: point-in-time recovery")
    # Without the jobs' models (with_jobs) this holds the raw [jobs.*] tables, unvalidated.
    jobs: Any = Field(default_factory=dict, description="per-job settings")
    # Where each value came from, set by the loader: ("jobs", "backup", "schedule") -> "env REDIS_MAINT_...".
    _origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)
    _config_file: str = PrivateAttr(default="none")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value.startswith("redis+sentinel://"):
            from redis_maint.topology.sentinel import parse

            parse(value)  # ValueError: what is wrong with it, never the secret
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
        return value

    @field_validator("node_url")
    @classmethod
    def _node_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty or start with redis://, rediss:// or unix:// (one node)")
        return value

    @property
    def node_redis_url(self) -> str:
        """The node whose files data_dir holds: node_url, else redis_url (through Sentinel: the primary)."""
        return self.node_url or self.redis_url

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
        if not is_sqlalchemy_url(value):
            raise ValueError("not a SQLAlchemy URL (e.g. sqlite:////var/lib/redis-maint/history.db)")
        return value

    @property
    def aof_guard_note(self) -> Path:
        """One note for every job that pauses AOF rewrites, so a SIGKILLed run is repaired by any next run."""
        return Path(self.state_dir) / "aof-rewrite-percentage.note"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def origin(self, path: tuple[str, ...]) -> str:
        """Where the value at `path` came from: `default`, `file PATH` or `env NAME`."""
        for n in range(len(path), 0, -1):
            if path[:n] in self._origins:
                return self._origins[path[:n]]
        return "default"

    @property
    def config_file(self) -> str:
        """The settings file that was read, and why that one."""
        return self._config_file

    def job(self, name: str) -> Any:
        """A job's settings; only settings loaded with the jobs' models (`with_jobs`) have them."""
        if isinstance(self.jobs, dict):
            raise MaintenanceError(
                f"the settings of job {name!r} were not loaded: load settings with the jobs' models "
                "(config.load_settings(jobs=REGISTRY))"
            )
        return getattr(self.jobs, _job_field_name(name))


@cache
def _with_jobs(specs: tuple[tuple[str, JobSpec], ...]) -> type[Settings]:
    jobs_model = create_model(
        "JobsSettings",
        __base__=Section,
        **{
            _job_field_name(name): (
                spec.settings_model,
                section(spec.description),
            )
            for name, spec in specs
        },
    )
    return create_model(
        "Settings",
        __base__=Settings,
        jobs=(jobs_model, section("per-job settings")),
    )


def with_jobs(registry: Mapping[str, JobSpec]) -> type[Settings]:
    """The settings model with every job's own settings under [jobs.<job>], validated like the rest."""
    return _with_jobs(tuple(registry.items()))
