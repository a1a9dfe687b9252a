"""SQLAlchemy engine and schema for the history store (runs, leases, catalog).

SQLite is the default: WAL lets readers run beside one writer, busy_timeout makes writers
queue instead of failing, and every transaction starts with BEGIN IMMEDIATE so that a
read-then-write transaction never dies with SQLITE_BUSY halfway (a deferred transaction
cannot wait for the write lock it upgrades to).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from redis_maint.errors import HistoryError
from redis_maint.history.db_errors import history_error
from redis_maint.redact import redact_url
from redis_maint.timeutil import as_utc

SQLITE_BUSY_TIMEOUT_MS = 30_000


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC, on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value)


metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False, index=True),
    Column("trigger", String(16), nullable=False),
    Column("requested_by", String(128)),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("finished_at", UTCDateTime),
    Column("status", String(16), nullable=False, index=True),
    Column("summary", JSON),
    Column("error", Text),
    # The evidence chain (history/chain.py): the hash of this row's latest ledger record and the one before.
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    # Who and when (redis_maint/provenance.py): the OS user of the writing process, the schedule slot
    # the run belongs to (scheduled, catch-up, missed), the sha256 of the masked settings in force.
    Column("os_user", String(128)),
    Column("scheduled_for", UTCDateTime),
    Column("config_hash", String(64)),
)

leases = Table(
    "leases",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("owner_host", String(255), nullable=False),
    Column("owner_pid", Integer, nullable=False),
    Column("owner_token", String(64), nullable=False),
    Column("run_id", Integer),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# The backup catalog (redis_maint/catalog.py). Rows are never deleted: pruned backups stay
# visible to auditors with status `pruned`.
backups = Table(
    "backups",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", Integer, index=True),
    Column("instance", String(128), nullable=False, index=True),
    Column("target", String(1024), nullable=False),  # URI of the backup itself
    Column("target_root", String(1024), nullable=False),  # the configured backup_target
    Column("location", String(512), nullable=False),  # key prefix under target_root
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("completed_at", UTCDateTime),
    Column("status", String(16), nullable=False, index=True),  # pending, complete, failed, pruned
    Column("size", BigInteger),
    Column("files", JSON),  # [{path, size, sha256}]
    Column("redis_version", String(32)),
    Column("server", JSON),  # the manifest's facts about the source Redis
    Column("checks", JSON),  # integrity verdicts before upload, when that ran
    Column("verified_at", UTCDateTime),
    Column("verify_result", JSON),
    Column("pruned_at", UTCDateTime),
    Column("error", Text),
    Column("events", JSON),  # [{at, event, detail}]: created, completed, failed, verified, pruned, kept
    # `backups keep`: retention never prunes a kept backup (NULL in rows from before the column).
    Column("kept", Boolean),
    Column("kept_reason", Text),
    Column("kept_by", String(128)),
    Column("kept_at", UTCDateTime),
    # The evidence chain (history/chain.py): the hash of this row's latest ledger record and the one before.
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
)

# One row per daemon process (redis_maint/history/daemons.py): where it runs, its heartbeat and the
# schedules in force, so `jobs` and `doctor` can tell a live daemon from a config file.
daemons = Table(
    "daemons",
    metadata,
    Column("id", String(64), primary_key=True),  # the process token: tells a restarted pid 1 apart
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False, index=True),
    Column("heartbeat_s", Float, nullable=False),  # its interval: readers judge staleness by it
    Column("stopped_at", UTCDateTime),  # set on a clean shutdown
    Column("stop_reason", Text),
    Column("timezone", String(64)),
    Column("schedules", JSON),  # {job: {schedule, next_run}} as APScheduler has them
)

# The evidence chain (history/chain.py): append-only, one record per run write, catalog event and
# lease hand-over; hash = SHA-256(prev_hash + record), record = canonical JSON. ledger_head is its one
# row (id 1) saying where the chain ends: appends take it under a lock, so they are serialized.
ledger = Table(
    "ledger",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(16), nullable=False),  # anchor, run, backup, lease
    Column("ref", String(128), nullable=False, index=True),  # run id, backup id, job
    Column("record", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
# Columns that hold the chain's hashes: never part of a chained record.
CHAIN_COLUMNS = ("prev_hash", "hash")

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """One engine per URL per process, with the schema created or upgraded."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            ensure_schema(engine)
            _engines[url] = engine
        return engine


def dispose_all() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _create(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise HistoryError(
            f"history_url is not a SQLAlchemy URL (got {redact_url(url)!r}): {exc}. "
            "Try: sqlite:////var/lib/redis-maint/history.db"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True, future=True)
        except ImportError as exc:
            raise HistoryError(
                f"history store {redact_url(url)}: the {parsed.drivername} driver is not installed "
                f"({exc.name or exc}); install it in this environment, or use sqlite:///PATH"
            ) from None
    if parsed.database and parsed.database != ":memory:":
        directory = Path(parsed.database).absolute().parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
            reason = "a file is in the way: not a directory" if in_the_way else exc.strerror
            raise HistoryError(
                f"history store {redact_url(url)}: cannot create its directory {directory} as uid "
                f"{os.getuid()} ({reason}); create it, or point REDIS_MAINT_HISTORY_URL elsewhere"
            ) from None
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def ensure_schema(engine: Engine) -> None:
    """Create missing tables, then add missing columns: upgrades are additive and automatic."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            _add_missing_columns(engine)
            return
        except SQLAlchemyError as exc:
            # Two processes creating the schema at once: the loser sees "already exists".
            if ("already exists" not in str(exc) and "duplicate column" not in str(exc)) or attempt == 4:
                url = engine.url.render_as_string(hide_password=False)
                raise history_error(exc, url, "open it and create or upgrade its tables") from None


def _add_missing_columns(engine: Engine) -> None:
    inspector = sa_inspect(engine)
    for table in metadata.sorted_tables:
        present = {col["name"] for col in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl_type = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {ddl_type}')
