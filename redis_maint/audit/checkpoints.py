"""Checkpoints of the evidence chain outside the database, on the backup target.

`audit/checkpoints/<UTC time>.json` holds what the chain was at that moment: how many records, the
head's seq and hash, the chain's first hash (its identity), the instance and the tool's version.
Written after every backup and by the daily `audit-checkpoint` job; on S3 with Object Lock they
can be written under a retention no credential can shorten. `audit verify` compares the database
with the newest ones: a history cut back to before a checkpoint, or replaced wholesale, fails even
though the shorter chain is valid on its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from redis_maint.audit.verify import Break
from redis_maint.errors import StorageError
from redis_maint.history import chain, db
from redis_maint.storage import ObjectLock, Target
from redis_maint.timeutil import as_utc, isoformat, utcnow

PREFIX = "audit/checkpoints/"
FORMAT = 1
NEWEST_CHECKED = 10  # how many of an instance's newest checkpoints verify reads
_NAME = re.compile(r"^audit/checkpoints/(\d{8}T\d{6}\.\d{6}Z)\.json$")


@dataclass(frozen=True)
class Head:
    records: int
    head_seq: int
    head_hash: str
    chain_id: str | None


def chain_head(engine: Engine) -> Head:
    """What a checkpoint records, read in one transaction (the chain is started if it was not)."""
    chain.adopt_unchained(engine)
    with engine.connect() as conn, conn.begin():
        head = conn.execute(select(db.ledger_head).where(db.ledger_head.c.id == 1)).first()
        records = conn.execute(select(func.count()).select_from(db.ledger)).scalar() or 0
        first = conn.execute(select(db.ledger.c.hash).order_by(db.ledger.c.seq).limit(1)).scalar()
    seq, hash_ = (int(head.seq), head.hash) if head is not None else (0, chain.GENESIS)
    return Head(int(records), seq, hash_, first)


def key_for(at: datetime) -> str:
    return f"{PREFIX}{as_utc(at):%Y%m%dT%H%M%S.%fZ}.json"


def write_checkpoint(
    engine: Engine, target: Target, *, instance: str, lock: ObjectLock | None = None
) -> dict[str, Any]:
    """Write one checkpoint of the chain as it is now; returns it with its `key` (and `retain_until`)."""
    head = chain_head(engine)
    at = utcnow()
    body = {
        "format": FORMAT,
        "at": isoformat(at),
        "instance": instance,
        "records": head.records,
        "head_seq": head.head_seq,
        "head_hash": head.head_hash,
        "chain_id": head.chain_id,
        "tool_version": tool_version(),
    }
    key = key_for(at)
    target.put_bytes(key, json.dumps(body, indent=2, sort_keys=True).encode() + b"\n", lock=lock)
    out = {"key": key, "target": target.uri_for(key), **body}
    if lock is not None:
        out.update(object_lock_mode=lock.mode, retain_until=isoformat(lock.retain_until))
    return out


def newest(target: Target, instance: str, limit: int = NEWEST_CHECKED) -> list[dict[str, Any]]:
    """This instance's newest checkpoints on the target, newest first (StorageError if it cannot be read).

    A checkpoint that cannot be parsed is returned as `{"key", "unreadable": why}`: verify reports it."""
    keys = sorted((o.key for o in target.list(PREFIX) if _NAME.match(o.key)), reverse=True)
    found: list[dict[str, Any]] = []
    for key in keys:
        if len(found) >= limit:
            break
        try:
            body = json.loads(b"".join(target.read_chunks(key)))
            if not isinstance(body, dict) or body.get("format") != FORMAT:
                raise ValueError("not a checkpoint of a known format")
        except ValueError as exc:
            found.append({"key": key, "unreadable": str(exc)})
            continue
        if body.get("instance") == instance:
            found.append({"key": key, **body})
    return found


def youngest_age_s(target: Target, instance: str) -> float | None:
    """Seconds since this instance's newest checkpoint was written, or None if there is none."""
    for cp in newest(target, instance, limit=1):
        at = cp.get("at")
        if at:
            return (utcnow() - datetime.fromisoformat(at.replace("Z", "+00:00"))).total_seconds()
    return None


def compare(checkpoints: list[dict[str, Any]], records: int, chain_id: str | None, hash_at) -> list[Break]:
    """Breaks between the chain and its checkpoints: cut back, replaced, rewritten, or unreadable.

    `hash_at(seq)` is the chain's hash of record `seq` (None if it has none)."""
    breaks = []
    for cp in checkpoints:
        key = cp["key"]
        if "unreadable" in cp:
            breaks.append(
                Break(
                    None, "checkpoint", key, "edited", f"checkpoint {key} is unreadable: {cp['unreadable']}"
                )
            )
            continue
        seq, expected = int(cp.get("head_seq") or 0), cp.get("head_hash")
        saw = f"checkpoint {key} (written {cp.get('at')}) saw {cp.get('records')} records up to record {seq}"
        if seq == 0:
            continue
        actual = hash_at(seq)
        if cp.get("chain_id") and chain_id and cp["chain_id"] != chain_id:
            breaks.append(
                Break(
                    1,
                    "checkpoint",
                    key,
                    "replaced",
                    f"{saw}, of another chain: the history was replaced wholesale",
                )
            )
        elif actual is None:
            breaks.append(
                Break(
                    seq,
                    "checkpoint",
                    key,
                    "deleted",
                    f"{saw}; the history has only {records}: it was cut back to before that checkpoint",
                )
            )
        elif actual != expected:
            breaks.append(
                Break(
                    seq,
                    "checkpoint",
                    key,
                    "edited",
                    f"{saw} with hash {str(expected)[:12]}…; record {seq} now has hash {actual[:12]}…: "
                    "the history was rewritten since",
                )
            )
    return breaks


def read_newest(target: Target, instance: str) -> tuple[list[dict[str, Any]], str | None]:
    """(checkpoints, None), or ([], why) when the target cannot be read."""
    try:
        return newest(target, instance), None
    except StorageError as exc:
        return [], str(exc)


def tool_version() -> str:
    try:
        return metadata.version("redis-maint")
    except metadata.PackageNotFoundError:
        return "unknown"
