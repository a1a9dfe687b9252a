"""One exception hierarchy; each class carries the CLI exit code it maps to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later


class MaintenanceError(Exception):
    """Base of every error redis-maint raises on purpose. The message says what and what to do."""

    exit_code = EXIT_FAILED


class ConfigError(MaintenanceError):
    """Settings that cannot be used; nothing has run."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class UsageError(MaintenanceError):
    exit_code = EXIT_USAGE


class LockHeldError(MaintenanceError):
    """Another process holds the job's lease."""

    exit_code = EXIT_LOCKED


class JobTimeoutError(MaintenanceError):
    """The job ran past its deadline."""


class JobCancelledError(MaintenanceError):
    """The daemon is shutting down and asked the job to stop."""


class LeaseLostError(MaintenanceError):
    """Another process took over the job's lease (it lapsed): this run must stop, not succeed."""


class RedisUnavailableError(MaintenanceError):
    """Redis refused the connection, timed out, or refused our credentials."""


class HistoryError(MaintenanceError):
    """The history store could not be read or written."""


class StorageError(MaintenanceError):
    """A backup target failed: unreachable, access denied, missing object."""


class ContainerError(MaintenanceError):
    """The Docker engine or a throwaway container failed."""


class IntegrityError(MaintenanceError):
    """Data failed a check: checksum mismatch, corrupt AOF/RDB, a file changed while copied."""


class JobFailedError(MaintenanceError):
    """The job finished its work and found a problem; `summary` still goes into history."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary


class SnapshotError(MaintenanceError):
    """Redis's data files could not be saved, found, read or staged (BGSAVE failed, data dir wrong)."""
