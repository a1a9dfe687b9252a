"""The shape every job has: a name, a settings model and `run(context) -> summary`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from config.types import JobSettings
from redis_maint.errors import JobCancelledError, JobTimeoutError, LeaseLostError, UsageError
from redis_maint.progress import Progress
from redis_maint.timeutil import utcnow

if TYPE_CHECKING:
    import redis

    from config.schema import Settings
    from redis_maint.checks.containers import CheckEnv
    from redis_maint.checks.restore_drill import DrillOptions
    from redis_maint.history.runs import HistoryStore
    from redis_maint.snapshot.take import Snapshot


class Params(BaseModel):
    """A job's run parameters (the CLI's flags). Validated once, before the lease is taken, so a
    typo is a usage error (exit 2) and never a failed run in history."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built when a run is asked for

    def before_lease(self, settings: Settings, store: HistoryStore) -> None:
        """Checks of the request against the world, before the lease (the backup exists, no Redis
        runs on the directory). A UsageError here is exit 2 with nothing recorded."""

    def recorded(self) -> dict[str, Any]:
        """What the run's summary records as `params`: only what was set."""
        return self.model_dump(mode="json", exclude_defaults=True)


class NoParams(Params):
    pass


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    settings_model: type[JobSettings]
    run: Callable[[JobContext], dict[str, Any]]
    params_model: type[Params] = NoParams
    # Whether a run starts throwaway containers, from the job's settings: (it does, why). None: never.
    containers: Callable[[Any], tuple[bool, str]] | None = None
    # Whether this sidecar may take a scheduled slot (see `eligible`). None: always.
    eligibility: Callable[[Settings], str | None] | None = None
    # "deployment": one run per slot across every sidecar; "node": one per slot for each Redis node,
    # run by the sidecar beside it (history/slots.py). The lease is per scope too.
    scope: str = "deployment"
    # A job whose scope depends on where it runs (backup: per node on a Redis Cluster). None: `scope`.
    scope_for: Callable[[Settings], str] | None = None

    def scope_in(self, settings: Settings) -> str:
        """The scope in force on this sidecar: "deployment" or "node"."""
        return self.scope if self.scope_for is None else self.scope_for(settings)

    def eligible(self, settings: Settings) -> str | None:
        """None when this sidecar may run the job's scheduled slot, else why not (e.g. its Redis node
        is not the backup's source). The daemon asks before each scheduled or catch-up run; a sidecar
        that is not eligible records nothing."""
        return None if self.eligibility is None else self.eligibility(settings)

    def parse_params(self, raw: Params | dict[str, Any] | None) -> Params:
        if isinstance(raw, self.params_model):
            return raw
        try:
            return self.params_model.model_validate(raw or {})
        except ValidationError as exc:
            raise UsageError(f"{self.name}: " + "; ".join(_param_problem(e) for e in exc.errors())) from None


def _param_problem(err: Any) -> str:
    name = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"it takes no parameter {name!r}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{name}: {message}" if name else message


@dataclass
class JobContext:
    """Everything a run may use. Jobs reach infrastructure only through this and its modules."""

    job: Job
    settings: Settings
    store: HistoryStore
    run_id: int
    trigger: str
    requested_by: str | None
    dry_run: bool = False
    params: Any = field(default_factory=NoParams)  # the job's own Params model
    started_at: datetime = field(default_factory=utcnow)
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress = field(default_factory=Progress)
    lease_lost: threading.Event = field(default_factory=threading.Event)  # set by the lease heartbeat
    # Fencing (history/leases.py): this run's token, and the check that the store's lease row still
    # carries it (renewing it); None outside the run path.
    fence: int | None = None
    fence_check: Callable[[], bool] | None = None
    _redis: Any = None
    _node_redis: Any = None

    @property
    def job_settings(self) -> Any:
        return self.settings.job(self.job.name)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"jobs.{self.job.name}")

    @property
    def deadline(self) -> datetime:
        return self.started_at + self.job_settings.timeout

    def remaining(self) -> timedelta:
        return self.deadline - utcnow()

    def checkpoint(self) -> None:
        """Raise if the daemon is stopping, the lease was lost or the run is past its timeout. Call it often."""
        if self.lease_lost.is_set():
            raise LeaseLostError(
                f"{self.job.name}: another process took over this job's lease after it lapsed "
                "(this process could not renew it in time: history store unreachable, or the process was paused); "
                "stopped so two runs do not work side by side. Check `redis-maint history --status running`"
            )
        if self.cancel.is_set():
            raise JobCancelledError(
                f"{self.job.name}: stopped on request (SIGTERM/SIGINT or daemon shutdown)"
            )
        if utcnow() >= self.deadline:
            raise JobTimeoutError(
                f"{self.job.name}: timed out after {self.job_settings.timeout}; "
                f"raise jobs.{self.job.name.replace('-', '_')}.timeout if this is expected"
            )

    def commit_point(self, what: str) -> None:
        """Before a step others must be able to rely on (publish a backup as complete, prune): the
        checkpoint, then the store's lease row must still carry this run's fencing token. A run that
        was paused past its lease while another process took the job over fails here."""
        self.checkpoint()
        if self.fence_check is not None and not self.fence_check():
            self.lease_lost.set()
            raise LeaseLostError(
                f"{self.job.name}: did not {what}: this run no longer holds the job's lease (fencing token "
                f"{self.fence} was superseded: another process took the job over after the lease lapsed, e.g. "
                "while this process was paused or cut off from the history store). Check `redis-maint history "
                "--status running` for the run that took over"
            )

    def check_env(self) -> CheckEnv:
        """What throwaway check containers need: the engine's options and the check image."""
        from redis_maint.checks.containers import CheckEnv

        return CheckEnv(self.settings.docker, self.settings.check_image)

    def drill_options(self) -> DrillOptions:
        """A restore drill bound by this run (deadline, cancel, progress) that counts the session keys."""
        from redis_maint.checks import restore_drill

        return restore_drill.DrillOptions(
            run_id=self.run_id,
            timeout_s=max(self.remaining().total_seconds(), 1.0),
            session_pattern=self.settings.sessions.key_pattern,
            db=restore_drill.session_db(self.settings.redis_url),
            cancel=self.cancel,
            checkpoint=self.checkpoint,
            progress=self.progress,
        )

    def container_timeout_s(self) -> float:
        """A container may run for docker.timeout, but never past the run's own deadline."""
        return min(self.settings.docker.timeout.total_seconds(), max(self.remaining().total_seconds(), 1.0))

    def check_snapshot(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        """redis-check-aof/rdb on a staged snapshot, in a throwaway container bound by this run."""
        from redis_maint.checks import integrity

        self.checkpoint()
        return integrity.check_snapshot(
            self.check_env(),
            snapshot,
            run_id=self.run_id,
            cancel=self.cancel,
            timeout_s=self.container_timeout_s(),
        )

    def redis(self) -> redis.Redis:
        """A connection to the maintained Redis, made on first use and checked with PING."""
        if self._redis is None:
            from redis_maint.redis_conn import connect

            self._redis = connect(self.settings.redis_url, self.settings.redis_timeout)
        return self._redis

    def node_redis(self) -> redis.Redis:
        """The Redis node whose files data_dir holds (node_url), for BGSAVE and the AOF guard; without
        node_url, the same client as `redis()`."""
        if not self.settings.node_url:
            return self.redis()
        if self._node_redis is None:
            from redis_maint.redis_conn import connect

            self._node_redis = connect(self.settings.node_url, self.settings.redis_timeout)
        return self._node_redis

    def close(self) -> None:
        if self._node_redis is not None:
            self._node_redis.close()
            self._node_redis = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None
