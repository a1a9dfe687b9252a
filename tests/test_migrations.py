"""Schema changes are Alembic revisions (redis_maint/history/migrations/): a new store is upgraded to
the head, the models in db.py and the migrations agree (on SQLite and PostgreSQL), a store from before
migrations is adopted with every row kept and its evidence chain intact, processes starting at once
upgrade a store once, and a store upgraded by a newer redis-maint is refused with nothing changed."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect

from redis_maint.errors import HistoryError
from redis_maint.history import db, migrations
from redis_maint.history.migrations import upgrade
from redis_maint.history.runs import HistoryStore
from tests.support import legacy_history as legacy
from tests.support.audit import some_history, tamper, verify
from tests.support.common import ROOT
from tests.support.daemon import start_daemon
from tests.support.history import current_store

FIRST_TABLES = {"runs", "leases", "backups", "daemons"}


def differences(engine) -> list:
    """What Alembic's autogenerate finds between the store and the models (nothing, when they agree)."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def reopened(url: str) -> HistoryStore:
    """The store as a new process opens it (no engine cached for the URL)."""
    db.dispose_all()
    return HistoryStore(url)


# -- the revisions --------------------------------------------------------------------------------
def test_head_is_alembics_head_and_the_revisions_form_one_line():
    script = upgrade.script_directory()
    assert script.get_heads() == [migrations.HEAD]
    order = [s.revision for s in reversed(list(script.walk_revisions()))]
    assert order[:6] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert [script.get_revision(r).down_revision for r in order] == [None, *order[:-1]]


def test_a_new_store_is_upgraded_to_head_and_matches_the_models(history_url):
    store = current_store()
    assert db.schema_revision(store.engine) == (migrations.HEAD,)
    assert set(db.metadata.tables) <= set(sa_inspect(store.engine).get_table_names())
    assert differences(store.engine) == []


def test_downgrading_to_base_and_upgrading_again_gives_the_same_schema(tmp_path):
    engine = HistoryStore(f"sqlite:///{tmp_path}/history.db").engine
    with engine.begin() as conn:
        command.downgrade(upgrade.alembic_config(connection=conn, metadata=db.metadata), "base")
    assert set(sa_inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade.upgrade_to_head(engine, db.metadata)
    assert differences(engine) == []


def test_a_store_at_head_is_opened_with_one_query_and_without_loading_alembic(tmp_path):
    url = f"sqlite:///{tmp_path}/history.db"
    HistoryStore(url)
    engine = db._create(url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: statements.append(sql))
    db.ensure_schema(engine)
    engine.dispose()
    assert [s for s in statements if not s.startswith("BEGIN")] == ["SELECT version_num FROM alembic_version"]
    probe = (
        "import sys; from redis_maint.history.runs import HistoryStore; "
        f"HistoryStore({url!r}); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# -- stores from before migrations ---------------------------------------------------------------
@pytest.mark.parametrize("shape", sorted(legacy.SHAPES))
def test_a_store_from_before_migrations_keeps_every_row_and_verifies(shape, tmp_path, cli, caplog):
    path = tmp_path / "history.db"  # the conftest's REDIS_MAINT_HISTORY_URL
    legacy.SHAPES[shape](path)
    before = {table: legacy.rows(path, table) for table in legacy.COLUMNS if table in legacy.tables(path)}
    assert before["runs"] and before["backups"] and before["leases"]

    with caplog.at_level(logging.INFO, logger="redis_maint.history.migrations"):
        current_store()  # adopts it at head, then chains its rows once

    code, result = verify(cli)

    assert code == 0, result
    assert result["intact"] is True and result["adopted"] == len(before["runs"]) + len(before["backups"])
    for table, held in before.items():  # the audit-verify run adds its own rows
        assert set(held) <= set(legacy.rows(path, table)), table
    engine = current_store().engine
    assert db.schema_revision(engine) == (migrations.HEAD,)
    assert differences(engine) == []
    (adopted,) = [r for r in caplog.records if r.getMessage().startswith("history store adopted")]
    expected = {
        "before_daemons_and_keep": "none, partly 0001 (",  # the daemons table and the kept columns added
        "rev_0001": "0001",
        "rev_0001_plus_provenance": "0001, partly 0002 (3 of 9 present)",
    }
    assert adopted.matched.startswith(expected[shape]), adopted.matched
    assert adopted.matched == expected[shape] or shape == "before_daemons_and_keep"


def test_a_partly_upgraded_store_keeps_what_the_old_alter_table_path_wrote(tmp_path, cli):
    path = tmp_path / "history.db"
    legacy.rev_0001_plus_provenance(path)
    assert verify(cli)[0] == 0
    got = legacy.rows(path, "runs", "id, os_user, scheduled_for, config_hash")
    assert got[1] == (2, *legacy.PROVENANCE)
    assert current_store().get(2).requested_by == "alice"


def test_a_store_the_pre_migration_code_of_this_round_wrote_keeps_its_chain(tmp_path, cli):
    """The schema of commit 63bd58f (revision 0002 made by create_all, no alembic_version) with an
    evidence chain: adopted at 0002 without a second anchor, and the chain still verifies."""
    url = f"sqlite:///{tmp_path}/history.db"
    store = current_store()
    ids = some_history(store)
    with store.engine.begin() as conn:  # back to 0002's shape, then forget that migrations exist
        command.downgrade(upgrade.alembic_config(connection=conn, metadata=db.metadata), "0002")
        conn.exec_driver_sql("DROP TABLE alembic_version")
    db.dispose_all()
    assert "cluster_backups" not in legacy.tables(sqlite_path(url))
    chained = tamper(url, "SELECT seq, hash FROM ledger ORDER BY seq")

    code, result = verify(cli)

    assert code == 0, result
    assert result["intact"] is True and result.get("adopted") in (None, 0)
    assert tamper(url, "SELECT seq, hash FROM ledger ORDER BY seq")[: len(chained)] == chained
    assert tamper(url, "SELECT count(*) FROM ledger WHERE kind = 'anchor'") == [(0,)]
    assert current_store().get(ids["delete"]).summary["org"] == "org-7"
    assert differences(current_store().engine) == []


def test_an_upgrade_that_fails_halfway_leaves_the_store_as_it_was(tmp_path):
    path = tmp_path / "history.db"
    legacy.rev_0001(path)
    with sqlite3.connect(path) as conn:  # revision 0003's index name taken by another table's index
        conn.executescript("CREATE TABLE other (x); CREATE INDEX ix_backups_cluster_id ON other (x);")
    conn.close()
    schema_before = _sqlite_schema(path)

    with pytest.raises(HistoryError) as failed:
        reopened(f"sqlite:///{path}")

    assert "could not open it and bring its schema up to date" in str(failed.value)
    assert "ix_backups_cluster_id already exists" in str(failed.value)
    assert _sqlite_schema(path) == schema_before  # 0001's columns and 0002's tables were rolled back
    assert "alembic_version" not in legacy.tables(path)


# -- a store newer than this code -------------------------------------------------------------------
def test_a_store_upgraded_by_a_newer_redis_maint_is_refused_with_nothing_changed(history_url, cli):
    some_history(current_store())
    tamper(history_url, "UPDATE alembic_version SET version_num = '0099'")
    before = _everything(history_url)
    db.dispose_all()

    result = cli("history", "--json")

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "schema revision 0099" in result.stderr and f"its newest is {migrations.HEAD}" in result.stderr
    assert "Upgrade redis-maint" in result.stderr and "nothing was changed" in result.stderr
    assert "Traceback" not in result.output
    assert _everything(history_url) == before


def test_the_daemon_does_not_wait_for_a_newer_store_it_exits_2(tmp_path):
    url = f"sqlite:///{tmp_path}/history.db"
    HistoryStore(url)
    tamper(url, "UPDATE alembic_version SET version_num = '0099'")
    proc = start_daemon(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h", REDIS_MAINT_HISTORY_URL=url)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err[-2000:]
    assert "Upgrade redis-maint" in err and "Traceback" not in err
    assert "the daemon retries" not in err


# -- processes starting at once --------------------------------------------------------------------
RACER = """
import sys, time
from pathlib import Path
from redis_maint.history import db
from redis_maint.history.migrations import upgrade  # Alembic imported before the start
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
engine = db._create(url)
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(upgrade.upgrade_to_head(engine, db.metadata)["from"])
"""


def test_processes_upgrading_a_new_store_at_once_upgrade_it_once(history_url, tmp_path):
    """Each racer goes through the locked upgrade (not the one-query check before it): exactly one
    finds the store new and upgrades it; the others wait for the lock and find it at the head."""
    go, n = tmp_path / "go", 2
    ready = [tmp_path / f"ready-{i}" for i in range(n)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, history_url, str(ready[i]), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outs = [r.communicate(timeout=120) for r in racers]
    assert [r.returncode for r in racers] == [0] * n, [err[-2000:] for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == sorted(["None"] + [migrations.HEAD] * (n - 1))
    assert tamper(history_url, "SELECT version_num FROM alembic_version") == [(migrations.HEAD,)]
    assert differences(reopened(history_url).engine) == []


# -- helpers ---------------------------------------------------------------------------------------
def _sqlite_schema(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    return found


def _everything(url: str) -> dict[str, object]:
    """The store's schema (tables, columns) and every row of every table, read with plain SQL."""
    engine = db._create(url)
    try:
        inspector = sa_inspect(engine)
        names = sorted(inspector.get_table_names())
        shape = {n: [c["name"] for c in inspector.get_columns(n)] for n in names}
    finally:
        engine.dispose()
    content = {n: sorted(map(repr, tamper(url, f"SELECT * FROM {n}"))) for n in names}
    return {"shape": shape, "rows": content}


def test_the_wheel_carries_the_migrations():
    """setuptools finds the migration packages (env.py and versions/ ship in the wheel and sdist)."""
    from setuptools import find_namespace_packages

    found = find_namespace_packages(where=str(ROOT), include=["redis_maint*"])
    assert {"redis_maint.history.migrations", "redis_maint.history.migrations.versions"} <= set(found)
