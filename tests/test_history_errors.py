"""History-store errors name the file (or masked URL) and what to do; never SQL text or parameters."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from redis_maint.errors import HistoryError
from redis_maint.history import db, db_errors
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.redact import redact_url
from tests.support.common import ROOT
from tests.support.services.postgres import PASSWORD as PG_PASSWORD

SQL_MARKERS = ("SELECT", "INSERT", "UPDATE", "PRAGMA", "CREATE TABLE", "[SQL", "[parameters")
NOBODY = 65534


def assert_no_sql(text: str) -> None:
    for marker in SQL_MARKERS:
        assert marker not in text, f"{marker!r} leaked into: {text}"


@pytest.fixture
def history_at(monkeypatch):
    def point(path: Path) -> str:
        url = f"sqlite:///{path}"
        monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", url)
        return url

    return point


def test_a_directory_where_the_file_should_be_is_named_with_a_fix(cli, tmp_path, history_at):
    path = tmp_path / "history.db"
    path.mkdir()
    history_at(path)
    result = cli("history")
    assert result.exit_code == 1
    assert f"{path} is a directory, not a database file" in result.stderr
    assert str(path / "history.db") in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_sql(result.output)


def test_a_file_that_is_not_a_database_says_move_it_aside(cli, tmp_path, history_at):
    path = tmp_path / "history.db"
    path.write_bytes(os.urandom(8192))
    history_at(path)
    result = cli("history", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{path} is not a usable SQLite database" in result.stderr
    assert f"mv {path} {path}.bad" in result.stderr
    assert_no_sql(result.output)


def test_a_parent_that_is_a_file_is_named(cli, tmp_path, history_at):
    (tmp_path / "afile").write_text("x")
    history_at(tmp_path / "afile" / "history.db")
    result = cli("history")
    assert result.exit_code == 1
    assert f"cannot create its directory {tmp_path / 'afile'}" in result.stderr
    assert "not a directory" in result.stderr and "Traceback" not in result.stderr


def test_a_failing_query_shows_neither_the_statement_nor_its_parameters(cli, history_url):
    url = history_url  # a SQLite file, then a PostgreSQL database
    store = HistoryStore(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE runs")
        conn.exec_driver_sql("DROP TABLE backups")
    with pytest.raises(HistoryError) as caught:
        store.record("health", "manual", RunStatus.SKIPPED, error="a-bound-parameter-value")
    message = str(caught.value)
    assert "could not record a skipped run" in message
    assert "no such table" in message or 'relation "runs" does not exist' in message
    assert "a-bound-parameter-value" not in message
    assert_no_sql(message)
    for args in (("history", "--csv"), ("backups", "list", "--json")):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert redact_url(url) in result.stderr
        assert PG_PASSWORD not in result.output
        assert_no_sql(result.output)


def test_a_write_lock_held_too_long_says_who_to_look_for(tmp_path, history_at, monkeypatch):
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "history.db"
    store = HistoryStore(history_at(path))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(HistoryError) as caught:
            store.record("health", "manual", RunStatus.SKIPPED, error="x")
    finally:
        holder.close()
    message = str(caught.value)
    assert f"another process held the write lock on {path}" in message
    assert f"fuser {path}" in message
    assert_no_sql(message)


def test_disk_full_names_the_directory_and_its_free_space(tmp_path):
    exc = OperationalError(
        "INSERT INTO runs (job, error) VALUES (?, ?)",
        ("health", "a-bound-parameter-value"),
        sqlite3.OperationalError("database or disk is full"),
    )
    message = str(db_errors.history_error(exc, f"sqlite:///{tmp_path}/h.db", "record the outcome of a run"))
    assert f"the filesystem holding {tmp_path} is full (" in message and "MiB free" in message
    assert "a-bound-parameter-value" not in message
    assert_no_sql(message)


def test_a_refused_postgresql_connection_names_host_and_port_with_the_password_masked():
    class DriverError(Exception):
        pass

    url = "postgresql://maint:Pg-Secret-4455@db.internal:5433/history?sslpassword=Ssl-Secret-6677"
    exc = OperationalError(
        "SELECT runs.id FROM runs",
        {},
        DriverError(
            'connection to server at "db.internal" (10.0.0.5), port 5433 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?"
        ),
    )
    message = str(db_errors.history_error(exc, url, "list runs"))
    assert "nothing accepts connections at db.internal:5433" in message
    assert "postgresql://maint:***@db.internal:5433/history?sslpassword=***" in message
    assert "Pg-Secret-4455" not in message and "Ssl-Secret-6677" not in message
    assert_no_sql(message)


def test_a_missing_database_driver_is_a_clean_error_not_a_traceback(cli, monkeypatch):
    # psycopg is a dependency now: a driver nobody installs here
    monkeypatch.setenv(
        "REDIS_MAINT_HISTORY_URL", "postgresql+pg8000://maint:Pg-Secret-4455@127.0.0.1:9/history"
    )
    result = cli("history")
    assert result.exit_code == 1
    assert "driver is not installed" in result.stderr and "Traceback" not in result.stderr
    assert "Pg-Secret-4455" not in result.output


# -- permissions, as another uid (root reads and writes everything) ---------------------------
AS_NOBODY = """
import os, sys, sqlite3.dbapi2, csv, json
import sqlalchemy.dialects.sqlite.pysqlite
import config, jobs, redis_maint.cli.history_cmd, redis_maint.history.db_errors
from redis_maint.cli import cli
config.load_settings(jobs=jobs.REGISTRY)  # import what settings need while the interpreter's files are readable
os.setgroups([]); os.setgid(%(uid)d); os.setuid(%(uid)d)
sys.exit(cli.main(sys.argv[1:], prog_name="redis-maint"))
"""


@pytest.fixture
def shared_dir():
    """A directory another uid can reach (pytest's tmp dirs are root-only)."""
    if os.getuid() != 0:
        pytest.skip("needs root to run a command as another uid")
    path = Path(tempfile.mkdtemp(prefix="redis-maint-uid-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_MAINT_HISTORY_URL": f"sqlite:///{path}"}
    return subprocess.run(
        [sys.executable, "-c", AS_NOBODY % {"uid": NOBODY}, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def _make_store(path: Path) -> None:
    HistoryStore(f"sqlite:///{path}").record("health", "manual", RunStatus.SKIPPED, error="x")
    db.dispose_all()
    for extra in path.parent.glob(f"{path.name}-*"):
        extra.unlink()


def test_an_unreadable_file_names_the_uid_owner_and_mode(shared_dir):
    path = shared_dir / "history.db"
    _make_store(path)
    shared_dir.chmod(0o777)
    path.chmod(0o000)
    result = run_as_nobody(path, "history")
    assert result.returncode == 1, result.stderr
    assert f"{path} is not readable and writable by uid {NOBODY} (owner uid 0, mode 0)" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_sql(result.stderr)


def test_a_read_only_file_says_make_it_writable(shared_dir):
    path = shared_dir / "history.db"
    _make_store(path)
    path.chmod(0o644)
    result = run_as_nobody(path, "history")
    assert result.returncode == 1, result.stderr
    assert f"uid {NOBODY}" in result.stderr
    assert f"{path} is read-only for uid {NOBODY}" in result.stderr or (
        f"directory {shared_dir} is not writable by uid {NOBODY}" in result.stderr
    )
    assert_no_sql(result.stderr)


def test_a_directory_it_cannot_write_is_named_with_the_uid(shared_dir):
    result = run_as_nobody(shared_dir / "new.db", "history")
    assert result.returncode == 1, result.stderr
    assert f"directory {shared_dir} is not writable by uid {NOBODY}" in result.stderr
    assert "new.db-wal" in result.stderr
    assert_no_sql(result.stderr)


def test_opening_a_new_store_while_another_process_writes_it_waits_instead_of_failing(tmp_path):
    """Switching a new store to WAL needs the exclusive lock; SQLite refuses it at once (no busy
    timeout) while another connection holds a write transaction. Two processes opening a new store
    together hit this: the open waits for the writer instead of failing with "database is locked"."""
    import threading
    import time

    path = tmp_path / "history.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")  # a new store: still in rollback-journal mode
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    engine = db._create(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
        other.close()
    assert time.monotonic() - started >= 0.4  # it waited for the writer's commit
