"""Bringing a history store to HEAD with Alembic: loaded only when `db.ensure_schema` finds the store
behind (importing Alembic costs a few hundred ms that a store at HEAD never pays).

The whole upgrade is one transaction that holds the store's write lock: SQLite's BEGIN IMMEDIATE (every
transaction of the engine starts with it), PostgreSQL's transaction-scoped advisory lock. Processes
starting at once on a new store queue on it; each reads the revision again once it holds the lock, so
one upgrades and the others find the store at HEAD. Both backends run DDL transactionally: a failed
upgrade leaves the store as it was.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine

from redis_maint.history.migrations import HEAD, SchemaNewerThanCodeError, adopt
from redis_maint.redact import redact_url

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
# pg_advisory_xact_lock key of schema upgrades: any constant, the same in every process (not the chain's).
PG_LOCK_KEY = 0x7265646973_6D6967  # "redis" "mig"
# The tables of the first revision: a store that has any of them but no alembic_version predates migrations.
FIRST_TABLES = frozenset({"runs", "leases", "backups", "daemons"})

# alembic.context and alembic.op are module-level proxies: one migration at a time per process.
_running = threading.Lock()


def alembic_config(**attributes: Any) -> Config:
    """Alembic's config for the migrations in this package (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes.update(attributes)
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def upgrade_to_head(engine: Engine, metadata: MetaData) -> dict[str, Any]:
    """Upgrade the store behind `engine` to HEAD; returns what was done ({from, to, adopted, found})."""
    url = redact_url(engine.url.render_as_string(hide_password=False))
    with _running, engine.begin() as conn:
        _lock(conn)
        script = script_directory()
        current = MigrationContext.configure(conn).get_current_heads()
        _refuse_unknown(script, current, url)
        if current == (HEAD,):
            return {"from": HEAD, "to": HEAD, "adopted": False, "found": {}}  # another process did it
        adopting = not current and bool(FIRST_TABLES & set(sa_inspect(conn).get_table_names()))
        config = alembic_config(connection=conn, metadata=metadata, **{adopt.ADOPTING: adopting})
        command.upgrade(config, "head")
        done = {
            "from": current[0] if current else None,
            "to": HEAD,
            "adopted": adopting,
            "found": config.attributes.get(adopt.FOUND, {}),
        }
    _log(url, done)
    return done


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
    # SQLite: the transaction began with BEGIN IMMEDIATE (history/db.py): one writer at a time.


def _refuse_unknown(script: ScriptDirectory, current: tuple[str, ...], url: str) -> None:
    known = {s.revision for s in script.walk_revisions()}
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise SchemaNewerThanCodeError(
            f"history store {url} has schema revision {', '.join(unknown)}, which this redis-maint does "
            f"not know (its newest is {HEAD}): a newer redis-maint has upgraded it. Upgrade redis-maint "
            "on this host to that version or later (every sidecar sharing this history needs it); "
            "nothing was changed"
        )


def _log(url: str, done: dict[str, Any]) -> None:
    if done["adopted"]:
        matched = _matched(done["found"])
        log.info(
            "history store adopted: it predates schema migrations",
            extra={
                "history": url,
                "matched": matched,
                "to": done["to"],
                "added": {rev: f["added"] for rev, f in sorted(done["found"].items()) if f["added"]},
            },
        )
    else:
        log.info(
            "history store schema upgraded", extra={"history": url, "from": done["from"], "to": done["to"]}
        )


def _matched(found: dict[str, dict[str, list[str]]]) -> str:
    """The newest revision whose tables and columns were all there already, and what was partial."""
    matched = "none"
    for revision in sorted(found):
        if found[revision]["added"]:
            break
        matched = revision
    partial = [
        f"{rev} ({len(f['present'])} of {len(f['present']) + len(f['added'])} present)"
        for rev, f in sorted(found.items())
        if f["present"] and f["added"]
    ]
    return matched + (f", partly {', '.join(partial)}" if partial else "")


def draft_revision(url: str, message: str, rev_id: str) -> Path:
    """Write versions/<rev_id>_<slug>.py with the op calls Alembic finds between a store at HEAD (`url`,
    e.g. a scratch SQLite file) and the models in db.py: a draft to read and edit, never to ship as is."""
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")  # autogenerate compares against a store at the head
    script = command.revision(config, message, autogenerate=True, rev_id=rev_id)
    return Path(script.path)  # type: ignore[union-attr]
