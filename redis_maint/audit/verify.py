"""`audit verify`: recompute the evidence chain (history/chain.py) and compare every row with it.

A break names the record and how:
- `edited`: a ledger record no longer matches its hash, a record was re-hashed after an edit (the
  next one was chained to something else), or a run/backup row differs from its latest chained
  record (which fields, chained value -> value now);
- `deleted`: a gap in the chain, records cut off its end, or a run/backup the chain knows is gone;
- `reordered`: a record stored at another place than the one it was chained at;
- `added`: a run/backup row the chain never saw (written around redis-maint).

Everything is read in one transaction, so a run finishing meanwhile is never a false break.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from redis_maint.history import chain, db

MAX_BREAKS = 100  # listed; the count says how many there were
_WINDOW = 64  # recent hashes kept to tell a moved record from a rewritten one


@dataclass(frozen=True)
class Break:
    seq: int | None  # the ledger record (None: a row the chain never saw)
    kind: str  # run, backup, lease, anchor, chain, checkpoint
    ref: str
    how: str  # edited, deleted, reordered, added, missing
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "ref": self.ref, "how": self.how, "detail": self.detail}


@dataclass
class _Latest:
    seq: int
    hash: str
    data_digest: str


@dataclass
class ChainReport:
    records: int = 0
    head_seq: int = 0
    head_hash: str = chain.GENESIS
    chain_id: str | None = None  # the first record's hash: tells one chain from a replacement
    original_from: int | None = None
    adopted: int = 0
    breaks: list[Break] = field(default_factory=list)
    # Backups completed since the chain began, by target root (a checkpoint should exist there).
    completed_on: dict[str, int] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.breaks

    def sorted_breaks(self) -> list[Break]:
        return sorted(self.breaks, key=lambda b: (b.seq is None, b.seq or 0, b.kind, b.ref))


def check_chain(engine: Engine) -> ChainReport:
    """Recompute every link, then compare the runs and backups tables with their latest records."""
    report = ChainReport()
    with snapshot(engine) as conn:
        latest = _walk(conn, report)
        _check_head(conn, report)
        for table in (db.runs, db.backups):
            _compare_rows(conn, table, latest, report)
    for (kind, ref), entry in sorted(latest.items(), key=lambda kv: kv[1].seq):
        what = f"run {ref}" if kind == "run" else f"backup {ref}"
        where = "history" if kind == "run" else "catalog"
        report.breaks.append(
            Break(
                entry.seq,
                kind,
                ref,
                "deleted",
                f"{what} is in the chain (record {entry.seq}) but gone from the {where}",
            )
        )
    return report


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent read of the whole store that never blocks writers: PostgreSQL REPEATABLE READ;
    on SQLite a deferred transaction (a WAL snapshot) on a connection of its own, since the store's
    engine begins every transaction with BEGIN IMMEDIATE and would hold off every writer meanwhile."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        return
    reader = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(reader, "connect")
    def _autocommit(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves

    @event.listens_for(reader, "begin")
    def _deferred(conn):
        conn.exec_driver_sql("BEGIN")

    try:
        with reader.connect() as conn, conn.begin():
            yield conn
    finally:
        reader.dispose()


def hash_at(engine: Engine, seq: int) -> str | None:
    """The hash of ledger record `seq`, or None if the chain has no such record."""
    with engine.connect() as conn:
        return conn.execute(select(db.ledger.c.hash).where(db.ledger.c.seq == seq)).scalar()


# -- the chain itself ---------------------------------------------------------------------------
def _walk(conn: Connection, report: ChainReport) -> dict[tuple[str, str], _Latest]:
    latest: dict[tuple[str, str], _Latest] = {}
    prev_seq, prev_hash = 0, chain.GENESIS
    recent: deque[str] = deque(maxlen=_WINDOW)
    rows = conn.execution_options(yield_per=2000).execute(select(db.ledger).order_by(db.ledger.c.seq))
    for row in rows:
        report.records += 1
        if report.chain_id is None:
            report.chain_id = row.hash
        envelope, problem = _check_record(row, prev_seq, prev_hash, recent)
        if problem is not None:
            report.breaks.append(problem)
        if envelope is not None:
            _note(envelope, row, latest, report)
        recent.append(prev_hash)
        prev_seq, prev_hash = int(row.seq), row.hash
    report.head_seq, report.head_hash = prev_seq, prev_hash
    if report.original_from is None:
        report.original_from = 1 if report.records else None
    return latest


def _check_record(row: Any, prev_seq: int, prev_hash: str, recent: deque[str]):
    """(the record's envelope or None, the break it shows or None): one break per record at most."""
    seq = int(row.seq)
    where = f"ledger record {seq} ({row.kind} {row.ref})"
    try:
        envelope = json.loads(row.record)
        if not isinstance(envelope, dict):
            raise ValueError
    except ValueError:
        return None, Break(seq, row.kind, row.ref, "edited", f"{where} is not a chained record any more")
    if chain.digest(row.prev_hash, row.record) != row.hash:
        return envelope, Break(
            seq,
            row.kind,
            row.ref,
            "edited",
            f"{where} does not match its hash: it was changed after it was chained",
        )
    if envelope.get("seq") != seq:
        return envelope, Break(
            seq,
            row.kind,
            row.ref,
            "reordered",
            f"{where} was chained as record {envelope.get('seq')}: records were moved",
        )
    columns = {"kind": row.kind, "ref": row.ref, "at": chain.plain(row.at)}
    changed = [k for k, v in columns.items() if envelope.get(k) != v]
    if changed:
        return envelope, Break(
            seq,
            row.kind,
            row.ref,
            "edited",
            f"{where}: its {', '.join(changed)} column differs from the chained record",
        )
    if row.prev_hash == prev_hash:
        return envelope, None
    if seq != prev_seq + 1:
        gone = f"record {prev_seq + 1} is" if seq == prev_seq + 2 else f"records {prev_seq + 1}-{seq - 1} are"
        return envelope, Break(
            prev_seq + 1, "chain", str(prev_seq + 1), "deleted", f"{gone} gone from the chain"
        )
    if row.prev_hash in recent:
        return envelope, Break(
            seq,
            row.kind,
            row.ref,
            "reordered",
            f"{where} follows a record it was not chained after: records were moved",
        )
    return envelope, Break(
        prev_seq,
        "chain",
        str(prev_seq),
        "edited",
        f"record {prev_seq} was rewritten and re-hashed: record {seq} was chained after a different record",
    )


def _note(
    envelope: dict[str, Any], row: Any, latest: dict[tuple[str, str], _Latest], report: ChainReport
) -> None:
    kind, data = envelope.get("kind"), envelope.get("data") or {}
    if kind == "anchor" and envelope.get("event") == "adopted":
        report.original_from = int(data.get("original_from") or 0) or None
    if envelope.get("adopted"):
        report.adopted += 1
    if kind in ("run", "backup"):
        latest[(kind, str(envelope.get("ref")))] = _Latest(int(row.seq), row.hash, _digest(data))
        if kind == "backup" and envelope.get("event") == "completed" and not envelope.get("adopted"):
            root = str(data.get("target_root"))
            report.completed_on[root] = report.completed_on.get(root, 0) + 1


def _check_head(conn: Connection, report: ChainReport) -> None:
    head = conn.execute(select(db.ledger_head).where(db.ledger_head.c.id == 1)).first()
    if head is None:
        if report.records:
            report.breaks.append(
                Break(None, "chain", "head", "edited", "the chain's head (table ledger_head) was removed")
            )
        return
    if int(head.seq) > report.head_seq:
        report.breaks.append(
            Break(
                report.head_seq + 1,
                "chain",
                str(report.head_seq + 1),
                "deleted",
                f"the chain ends at record {report.head_seq}, but its head says {head.seq}: "
                f"records {report.head_seq + 1}-{head.seq} were cut off its end",
            )
        )
    elif int(head.seq) < report.head_seq or head.hash != report.head_hash:
        report.breaks.append(
            Break(
                report.head_seq,
                "chain",
                str(report.head_seq),
                "edited",
                f"the chain's head says record {head.seq} with hash {head.hash[:12]}…, but the chain ends at "
                f"record {report.head_seq} with hash {report.head_hash[:12]}…",
            )
        )


# -- the rows against their latest records ------------------------------------------------------
def _compare_rows(
    conn: Connection, table: Any, latest: dict[tuple[str, str], _Latest], report: ChainReport
) -> None:
    kind = chain.KIND_OF[table.name]
    rows = conn.execution_options(yield_per=2000).execute(select(table)).mappings()
    for row in rows:
        ref = str(row["id"])
        what = f"run {ref}" if kind == "run" else f"backup {ref}"
        entry = latest.pop((kind, ref), None)
        if entry is None:
            report.breaks.append(
                Break(
                    None, kind, ref, "added", f"{what} is not in the chain: it was written around redis-maint"
                )
            )
            continue
        data = chain.row_data(row)
        if _digest(data) != entry.data_digest:
            chained = _chained_data(conn, entry.seq)
            report.breaks.append(
                Break(
                    entry.seq,
                    kind,
                    ref,
                    "edited",
                    f"{what} differs from its chained record {entry.seq}: {describe_diff(chained, data)}",
                )
            )
        elif row["hash"] != entry.hash:
            report.breaks.append(
                Break(
                    entry.seq,
                    kind,
                    ref,
                    "edited",
                    f"{what}: its hash column is not its latest chained record's hash",
                )
            )


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(chain.canonical(data).encode("utf-8")).hexdigest()


def _chained_data(conn: Connection, seq: int) -> dict[str, Any]:
    record = conn.execute(select(db.ledger.c.record).where(db.ledger.c.seq == seq)).scalar()
    return (json.loads(record) or {}).get("data") or {}


def describe_diff(chained: dict[str, Any], now: dict[str, Any], limit: int = 5) -> str:
    """`requested_by 'alice' -> 'mallory'; summary.deleted 610 -> 0; events: 'verified' removed`."""
    parts = _diff(json.loads(chain.canonical(chained)), json.loads(chain.canonical(now)), "")
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def _diff(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if key not in new:
                out.append(f"{sub} {_show(old[key])} removed")
            elif key not in old:
                out.append(f"{sub} {_show(new[key])} added")
            elif old[key] != new[key]:
                out += _diff(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and path.endswith("events"):
        gone = [_event_name(e) for e in old if e not in new]
        added = [_event_name(e) for e in new if e not in old]
        return [f"{path}: {', '.join(gone)} removed"] * bool(gone) + [
            f"{path}: {', '.join(added)} added"
        ] * bool(added)
    return [f"{path} {_show(old)} -> {_show(new)}"]


def _event_name(event: Any) -> str:
    if isinstance(event, dict) and "event" in event:
        return f"{event['event']!r} of {event.get('at')}"
    return _show(event)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
