"""SQLAlchemy engine and schema for the history store (runs, leases, catalog).

SQLite is the default: WAL lets readers run beside one writer, busy_timeout makes writers
queue instead of failing, and every transaction starts with BEGIN IMMEDIATE so that a
read-then-write transaction never dies with SQLITE_BUSY halfway (a deferred transaction
cannot wait for the write lock it upgrades to).

PostgreSQL (`postgresql+psycopg://`, several sidecars on one history) runs at READ COMMITTED:
a read-then-write transaction locks the rows it read (SELECT ... FOR UPDATE; SQLite's dialect
leaves FOR UPDATE out, BEGIN IMMEDIATE already serializes it), and a race to insert the same key
is retried by its caller. The pool pings a connection before using it, so a restarted server
costs one reconnect, not an error.
"""

from __future__ import annotations

import os
import threading
import time
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
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from redis_maint.errors import HistoryError
from redis_maint.history import migrations
from redis_maint.history.db_errors import history_error
from redis_maint.redact import redact_url
from redis_maint.timeutil import as_utc

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A server that does not answer (a black-holed host) fails a connection attempt after this long.
SERVER_CONNECT_TIMEOUT_S = 10


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
    # Fencing (history/slots.py): the token of the lease take this run ran under (NULL: rows from before).
    Column("fence", BigInteger),
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
    # Fencing: this take's token from lease_fences (only grows per lease name). NULL: taken before fencing.
    Column("fence", BigInteger),
)

# The last fencing token given out per lease name (history/leases.py): kept when a lease is released,
# so every take of a lease gets a larger token than any before it.
lease_fences = Table(
    "lease_fences",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("token", BigInteger, nullable=False),
)

# One claim per scheduled slot (history/slots.py): the key is the slot, so the store itself lets only
# one sidecar run it. Inserted in the transaction that takes the lease and writes the run's row.
slot_claims = Table(
    "slot_claims",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("scope", String(255), primary_key=True),  # "deployment", or "node:<host:port>" of a node job
    Column("scheduled_for", UTCDateTime, primary_key=True),
    Column("state", String(16), nullable=False),  # running, done, skipped, missed
    Column("run_id", Integer),
    Column("fence", BigInteger),
    Column("owner_host", String(255)),
    Column("owner_pid", Integer),
    Column("claimed_at", UTCDateTime, nullable=False),  # the database's clock
    Column("attempts", Integer, nullable=False),  # 1, +1 for each catch-up that took an orphan over
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
    # Redis Cluster (redis_maint/backup/cluster.py): the cluster backup this shard backup belongs to
    # (from the run's scheduled_for, or --cluster-id), and the node it copied: {node_id, role,
    # primary_id, slots, topology}. NULL for a backup of a Redis that is not in cluster mode.
    Column("cluster_id", String(64), index=True),
    Column("shard", JSON),
)

# One row per cluster backup whose cluster manifest a shard's run claimed (redis_maint/backup/cluster.py):
# inserting the row is the claim, so exactly one of the shards that find every shard complete writes it.
cluster_backups = Table(
    "cluster_backups",
    metadata,
    Column("instance", String(128), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("claimed_by_run", Integer),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("written_at", UTCDateTime),  # set once the cluster manifest is on the target
    Column("target_root", String(1024)),
    Column("location", String(512)),  # key of the cluster manifest under target_root
    Column("sha256", String(64)),
    Column("shards", JSON),  # [{node_id, backup_id, slots}]
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
# The AOF archiver's position (redis_maint/archive/state.py): one row per instance and generation, the
# current one being where it resumes. Not evidence: never chained. Written only after an upload succeeded.
archive_state = Table(
    "archive_state",
    metadata,
    Column("instance", String(128), primary_key=True),
    Column("generation", String(64), primary_key=True),
    Column("status", String(16), nullable=False, index=True),  # current, closed, pruned
    Column("reason", Text),  # why it started
    Column("created_at", UTCDateTime, nullable=False),
    Column("backup_id", String(64)),
    Column("base_name", String(255)),
    Column("base_sha256", String(64)),
    Column("base_time", UTCDateTime),  # the earliest instant it can restore to
    Column("incr_file", String(255)),  # the incr file followed now
    Column("incr_inode", BigInteger),
    Column("offset", BigInteger, nullable=False),  # archived bytes of incr_file: [0, offset)
    Column("safe_until", UTCDateTime),  # every write acknowledged before this (Redis's clock) is archived
    Column("last_segment_at", UTCDateTime),
    Column("segments", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("fence", BigInteger),  # the lease's fencing token of the last writer, where fencing exists
)
archive_segments = Table(
    "archive_segments",
    metadata,
    Column("instance", String(128), primary_key=True),
    Column("generation", String(64), primary_key=True),
    Column("incr_file", String(255), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("length", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("first_ts", BigInteger),
    Column("last_ts", BigInteger),
    Column("uploaded_at", UTCDateTime, nullable=False),
    Column("fence", BigInteger),  # the uploader's lease fencing token: part of the segment's key
)

# Columns that hold the chain's hashes: never part of a chained record.
CHAIN_COLUMNS = ("prev_hash", "hash")

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """One engine per URL per process, with the schema at HEAD (created or upgraded)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            try:
                ensure_schema(engine)
            except BaseException:
                engine.dispose()
                raise
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
            return create_engine(url, pool_pre_ping=True, connect_args=_server_connect_args(parsed))
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
        _wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _wal(cur) -> None:
    """WAL mode. Two processes opening a new store at once both need the exclusive lock to switch it,
    and SQLite answers one of them "database is locked" at once (waiting could deadlock), without its
    busy timeout: retried here for as long as that timeout."""
    import sqlite3

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _server_connect_args(parsed) -> dict:
    """A bounded connection attempt for libpq drivers (psycopg), unless the URL sets its own."""
    if parsed.get_driver_name() not in ("psycopg", "psycopg2") or "connect_timeout" in parsed.query:
        return {}
    return {"connect_timeout": SERVER_CONNECT_TIMEOUT_S}


def ensure_schema(engine: Engine) -> None:
    """The store's schema at this code's head revision (history/migrations/). A store at HEAD costs one
    query; Alembic is loaded only for a new store, one behind, or one from before migrations. A store
    upgraded by a newer redis-maint is refused (SchemaNewerThanCodeError, exit 2), with nothing changed."""
    try:
        if schema_revision(engine) == (migrations.HEAD,):
            return
        from redis_maint.history.migrations import upgrade

        upgrade.upgrade_to_head(engine, metadata)
    except SQLAlchemyError as exc:
        url = engine.url.render_as_string(hide_password=False)
        raise history_error(exc, url, "open it and bring its schema up to date") from None


def schema_revision(engine: Engine) -> tuple[str, ...]:
    """The store's Alembic revision(s), in one query; () for a new store or one from before migrations."""
    with engine.connect() as conn:
        try:
            return tuple(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
        except DBAPIError as exc:
            if _no_such_table(exc):
                return ()
            raise


def _no_such_table(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == "42P01":  # PostgreSQL: undefined_table
        return True
    return isinstance(exc, OperationalError) and "no such table" in str(exc.orig)
