"""The evidence chain: an append-only ledger of every history record that is evidence.

Each ledger record is canonical JSON (sorted keys, compact separators, UTC timestamps ending in Z,
keys whose value is None left out, so a column added later with NULL does not change old hashes):

    {"seq", "at", "kind", "ref", "event", "adopted"?, "data"}

and `hash = SHA-256(prev_hash + record)`, the first record's `prev_hash` being 64 zeros. `data` is
the whole row as it was written (every column of `runs` or `backups` but the hash columns), or a
lease hand-over. A run is chained when its `running` row is inserted and again when its final state
is written, in the same transaction as the row write, so nothing between start and finish can be
rewritten unseen; each catalog event chains the backup's row as that event left it. The row itself
carries the hash of its latest record (`hash`, `prev_hash`).

Appends are serialized: on SQLite every write transaction is BEGIN IMMEDIATE already; on PostgreSQL
an append takes a transaction-scoped advisory lock first. `ledger_head` (one row) says where the
chain ends.

A database that had rows before the chain existed is chained once (`adopt_unchained`): an anchor
record saying so, then every run (id order) and backup (creation order) as it is then. The anchor
names the first record chained as it happened (`original_from`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.engine import Connection, Engine

from redis_maint.history import db
from redis_maint.timeutil import as_utc, utcnow

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the chain's head: any constant, the same in every process.
PG_LOCK_KEY = 0x7265646973_6C6564  # "redis" "led"
KIND_OF = {"runs": "run", "backups": "backup"}


@dataclass(frozen=True)
class Link:
    seq: int
    prev_hash: str
    hash: str


# -- the canonical form -------------------------------------------------------------------------
def canonical(value: Any) -> str:
    """The one text a record is hashed as."""
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plain(value: Any) -> Any:
    """A value as it appears in a canonical record (timestamps as UTC text, None keys left out)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def digest(prev_hash: str, record: str) -> str:
    return hashlib.sha256((prev_hash + record).encode("utf-8")).hexdigest()


def row_data(row: Any) -> dict[str, Any]:
    """A row as the chain records it: every column but the hash columns (None values dropped by
    `canonical`), so columns added by later upgrades are chained without a change here."""
    return {k: v for k, v in dict(row).items() if k not in db.CHAIN_COLUMNS}


# -- appending ----------------------------------------------------------------------------------
def chain_row(conn: Connection, table: Table, key: Any, event: str) -> Link | None:
    """Chain the row `key` of `runs` or `backups` as it is now in this transaction, and store the
    new hash on the row. Call it in the same transaction as the write. None if the row is gone."""
    pk = next(iter(table.primary_key.columns))
    row = conn.execute(select(table).where(pk == key)).mappings().first()
    if row is None:
        return None
    link = append(conn, KIND_OF[table.name], str(key), row_data(row), event=event)
    conn.execute(update(table).where(pk == key).values(prev_hash=link.prev_hash, hash=link.hash))
    return link


def append(conn: Connection, kind: str, ref: str, data: dict[str, Any], *, event: str) -> Link:
    """Append one record to the chain, in the caller's transaction."""
    head = _locked_head(conn)
    if head is None:
        head = _adopt(conn)
    link = _write(conn, head, kind, ref, data, event=event)
    _set_head(conn, link)
    return link


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
    # SQLite: the transaction began with BEGIN IMMEDIATE (history/db.py), one writer at a time.


def _locked_head(conn: Connection) -> Link | None:
    _lock(conn)
    row = conn.execute(select(db.ledger_head).where(db.ledger_head.c.id == 1)).first()
    if row is not None:
        return Link(int(row.seq), "", row.hash)
    last = conn.execute(select(db.ledger).order_by(db.ledger.c.seq.desc()).limit(1)).first()
    if last is None:
        return None
    # Rows but no head (it was deleted): carry on from the last record; `audit verify` still
    # checks every link.
    link = Link(int(last.seq), last.prev_hash, last.hash)
    conn.execute(db.ledger_head.insert().values(id=1, seq=link.seq, hash=link.hash))
    return link


def _write(
    conn: Connection,
    head: Link,
    kind: str,
    ref: str,
    data: dict[str, Any],
    *,
    event: str,
    adopted: bool = False,
) -> Link:
    seq = head.seq + 1
    at = utcnow()
    record = canonical(
        {
            "seq": seq,
            "at": at,
            "kind": kind,
            "ref": ref,
            "event": event,
            "adopted": True if adopted else None,
            "data": data,
        }
    )
    link = Link(seq, head.hash, digest(head.hash, record))
    conn.execute(
        db.ledger.insert().values(
            seq=seq, at=at, kind=kind, ref=ref, record=record, prev_hash=link.prev_hash, hash=link.hash
        )
    )
    return link


def _set_head(conn: Connection, link: Link) -> None:
    done = conn.execute(
        update(db.ledger_head).where(db.ledger_head.c.id == 1).values(seq=link.seq, hash=link.hash)
    )
    if done.rowcount == 0:
        conn.execute(db.ledger_head.insert().values(id=1, seq=link.seq, hash=link.hash))


# -- the upgrade: chaining what was there before ------------------------------------------------
_adopted: weakref.WeakSet[Engine] = weakref.WeakSet()
_adopted_lock = threading.Lock()


def adopt_unchained(engine: Engine) -> None:
    """Once per database: chain the rows written before the chain existed (a no-op afterwards).

    A separate step so it can move into a schema migration; every writer also does it on its first
    append if this was never called.
    """
    with _adopted_lock:
        if engine in _adopted:
            return
    with engine.connect() as conn:
        started = conn.execute(select(func.count()).select_from(db.ledger_head)).scalar()
    if not started:
        with engine.begin() as conn:
            if _locked_head(conn) is None:
                _set_head(conn, _adopt(conn))
    with _adopted_lock:
        _adopted.add(engine)


def _adopt(conn: Connection) -> Link:
    """An anchor, then every existing run and backup as it is now. Returns the new head."""
    run_ids = [r for (r,) in conn.execute(select(db.runs.c.id).order_by(db.runs.c.id))]
    backup_ids = [
        b for (b,) in conn.execute(select(db.backups.c.id).order_by(db.backups.c.created_at, db.backups.c.id))
    ]
    adopted = len(run_ids) + len(backup_ids)
    head = Link(0, "", GENESIS)
    if not adopted:
        return head  # a new database: every record is chained as it happens
    note = (
        "the records that follow were written before this database had an evidence chain; they were "
        "chained at upgrade time as they were then, not as they happened"
    )
    anchor = {
        "note": note,
        "adopted_runs": len(run_ids),
        "adopted_backups": len(backup_ids),
        "original_from": adopted + 2,
    }
    head = _write(conn, head, "anchor", "upgrade", anchor, event="adopted")
    for table, keys in ((db.runs, run_ids), (db.backups, backup_ids)):
        pk = next(iter(table.primary_key.columns))
        for key in keys:
            row = conn.execute(select(table).where(pk == key)).mappings().one()
            head = _write(
                conn, head, KIND_OF[table.name], str(key), row_data(row), event="adopted", adopted=True
            )
            conn.execute(update(table).where(pk == key).values(prev_hash=head.prev_hash, hash=head.hash))
    return head
