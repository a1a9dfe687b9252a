"""History-store errors for people: which file or server, what went wrong, what to do.

A SQLAlchemy error's own text carries the SQL statement and its bound parameters (run
summaries, errors, lease tokens): none of that may reach output, logs or history. Only the
driver's own message is read, and only to pick the advice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis_maint.errors import HistoryError, MaintenanceError
from redis_maint.redact import redact, redact_url

BUSY_TIMEOUT_HINT = "30s"  # db.SQLITE_BUSY_TIMEOUT_MS, said the way people read it
URL_SETTING = "REDIS_MAINT_HISTORY_URL"


@contextmanager
def guard(url: str, action: str, what: str = "history store") -> Iterator[None]:
    """Turn database errors inside the block into HistoryError naming the store and the action."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        raise history_error(exc, url, action, what) from None


class HistoryUnreachableError(HistoryError):
    """The history server could not be reached, or dropped the connection: worth another try
    (the daemon's start-up and a run's final write retry it). Never raised for a SQLite file."""


def history_error(exc: BaseException, url: str, action: str, what: str = "history store") -> HistoryError:
    kind = HistoryUnreachableError if is_unreachable(exc, url) else HistoryError
    return kind(f"{what} {redact_url(url)}: could not {action}: {explain(exc, url)}")


def is_unreachable(exc: BaseException, url: str) -> bool:
    """A server store whose connection failed or broke (refused, reset, restarted, timed out)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if _sqlite_path(url) is not None or not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


def explain(exc: BaseException, url: str) -> str:
    """The cause and the advice, from the driver's message (never the SQL or its parameters)."""
    if isinstance(exc, MaintenanceError):
        return redact(str(exc))  # ours: already says what and what to do
    if isinstance(exc, OSError) and not _is_driver_error(exc):
        return _os_error(exc)
    message = driver_message(exc)
    lowered = message.lower()
    path = _sqlite_path(url)
    advice = _sqlite_advice(lowered, path) if path is not None else _server_advice(lowered, url)
    return advice or f"{message}; check {URL_SETTING} and the database server"


def driver_message(exc: BaseException) -> str:
    """The database driver's own first line, without SQLAlchemy's [SQL: ...] and [parameters: ...]."""
    source = getattr(exc, "orig", None) or exc
    text = f"{type(source).__name__}: {source}"
    for marker in ("\n", "[SQL:", "[parameters:", "(Background on this error"):
        text = text.split(marker, 1)[0]
    return redact(text.strip())


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("sqlite3", "psycopg", "pg8000"))


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(os.path.abspath(parsed.database or ":memory:"))


def _sqlite_advice(message: str, path: Path) -> str | None:
    uid = os.getuid()
    if "unable to open database file" in message:
        return _unopenable(path, uid)
    if "database is locked" in message or "database table is locked" in message:
        return (
            f"another process held the write lock on {path} for longer than the {BUSY_TIMEOUT_HINT} "
            f"busy timeout; find it with `fuser {path}` (a stuck sqlite3 shell, a backup tool) and retry"
        )
    if "disk is full" in message or "no space" in message:
        return f"the filesystem holding {path.parent} is full ({_free(path.parent)} free); free space there and retry"
    if "not a database" in message or "malformed" in message or "encrypted" in message:
        return (
            f"{path} is not a usable SQLite database (corrupt, or another kind of file); move it aside "
            f"(mv {path} {path}.bad) so the next run starts a new history, or restore it from a copy"
        )
    if "readonly" in message or "read-only" in message:
        return (
            f"{path} is read-only for uid {uid} (file or directory mode, or a read-only mount); make the "
            f"file and {path.parent} writable by uid {uid}"
        )
    if "disk i/o error" in message:
        return f"disk I/O error on {path}; check the disk (dmesg) and the filesystem holding {path.parent}"
    return None


def _unopenable(path: Path, uid: int) -> str:
    """SQLite says only "unable to open database file": find out which part of the path is wrong."""
    hint = f"or point {URL_SETTING} elsewhere"
    if path.is_dir():
        return (
            f"{path} is a directory, not a database file; use a file inside it (e.g. {path / 'history.db'})"
        )
    if not path.parent.is_dir():
        return f"directory {path.parent} does not exist; create it (mkdir -p {path.parent}) {hint}"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (
            f"directory {path.parent} is not writable by uid {uid} (SQLite creates {path.name}-wal and "
            f"{path.name}-shm next to the database); chown it to uid {uid} {hint}"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by uid {uid} ({_owner(path)}); chown or chmod it {hint}"
    return f"cannot open {path} as uid {uid}; check that it is a readable, writable file {hint}"


def _server_advice(message: str, url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        where = f"{parsed.host or 'localhost'}:{parsed.port or 'default port'}"
        user = parsed.username or "(none)"
    except Exception:
        where, user = "the configured server", "(unknown)"
    if "connection refused" in message:
        return f"nothing accepts connections at {where}; start the database server or fix host and port in {URL_SETTING}"
    if "could not translate host name" in message or "name or service not known" in message:
        return f"the host of {where} cannot be resolved; fix the host in {URL_SETTING}"
    if any(m in message for m in _DROPPED):
        return f"the server at {where} closed the connection (restarted or shutting down?); retry once it is back"
    if "the database system is" in message:  # starting up, shutting down, in recovery mode
        return f"the server at {where} is not accepting queries yet ({message}); retry in a moment"
    if "timeout" in message or "timed out" in message:
        return f"no answer from {where} in time; check the network path and the server"
    if "password authentication failed" in message or "authentication failed" in message:
        return f"the server at {where} refused user {user}; check the user and password in {URL_SETTING}"
    if "does not exist" in message and "database" in message:
        return f"the database named in {URL_SETTING} does not exist on {where}; create it (createdb) first"
    if "no module named" in message or "can't load plugin" in message:
        return f"the database driver for this URL is not installed ({message}); install it or use sqlite:///"
    return None


# How psycopg and the server word a connection that went away under us.
_DROPPED = (
    "terminating connection",
    "server closed the connection",
    "connection is lost",
    "connection is closed",
    "consuming input failed",
    "ssl syscall error",
)


def _os_error(exc: OSError) -> str:
    where = exc.filename or "the history store's directory"
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, PermissionError):
        return f"cannot create {where} as uid {os.getuid()} ({reason}); create it with the right owner or point {URL_SETTING} elsewhere"
    return f"cannot create {where} ({reason}); point {URL_SETTING} at a path in an existing directory"


def _free(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path).free / 2**20:.0f} MiB"
    except OSError:
        return "unknown"


def _owner(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "cannot stat it"
    return f"owner uid {st.st_uid}, mode {st.st_mode & 0o777:o}"
