"""One verification of the history: the chain (audit/verify.py) and its checkpoints on the target
(audit/checkpoints.py), as the `audit verify` result. `redis-maint report` shows the same result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from redis_maint.audit import checkpoints
from redis_maint.audit.verify import MAX_BREAKS, Break, check_chain, hash_at
from redis_maint.errors import MaintenanceError
from redis_maint.storage import Target


def verify_history(engine: Engine, target: Target | None, instance: str) -> dict[str, Any]:
    """`{intact, records, head_seq, head_hash, chain_id, original_from, adopted, breaks, breaks_total,
    checkpoint}`. `intact` is true only when the chain and every checkpoint read agree, and the
    checkpoints could be read (or none was due)."""
    report = check_chain(engine)
    checkpoint = _checkpoints(engine, target, instance, report)
    breaks = report.sorted_breaks()
    intact = not breaks and checkpoint["status"] in ("ok", "none")
    return {
        "intact": intact,
        "records": report.records,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "chain_id": report.chain_id,
        "original_from": report.original_from,
        "adopted": report.adopted,
        "breaks": [b.to_json() for b in breaks[:MAX_BREAKS]],
        "breaks_total": len(breaks),
        "checkpoint": checkpoint,
    }


def verify_against(engine: Engine, open_target: Callable[[], Target], instance: str) -> dict[str, Any]:
    """verify_history with the target opened for it. A target that cannot be opened leaves the
    checkpoints unread (so never `intact`); it is not an error of the check itself."""
    try:
        target = open_target()
    except MaintenanceError:
        target = None
    try:
        return verify_history(engine, target, instance)
    finally:
        if target is not None:
            target.close()


def _checkpoints(engine: Engine, target: Target | None, instance: str, report) -> dict[str, Any]:
    if target is None:
        return {"status": "unreachable", "target": None, "checked": 0, "newest": None, "error": "no target"}
    found, error = checkpoints.read_newest(target, instance)
    out: dict[str, Any] = {"status": "ok", "target": target.uri, "checked": len(found), "newest": None}
    if error is not None:
        return {**out, "status": "unreachable", "error": error}
    if not found:
        due = report.completed_on.get(target.uri, 0)
        if due:
            report.breaks.append(
                Break(
                    None,
                    "checkpoint",
                    checkpoints.PREFIX,
                    "missing",
                    f"no checkpoint of instance {instance!r} on {target.uri}, though {due} backups were "
                    "completed there since the chain began: someone removed them, or they were never written. "
                    "Write one now with `redis-maint run audit-checkpoint`",
                )
            )
            return {**out, "status": "missing"}
        return {**out, "status": "none"}
    newest = next((cp for cp in found if "unreadable" not in cp), None)
    if newest is not None:
        out["newest"] = {k: newest.get(k) for k in ("key", "at", "records", "head_seq", "head_hash")}
    problems = checkpoints.compare(found, report.records, report.chain_id, lambda seq: hash_at(engine, seq))
    report.breaks.extend(problems)
    if problems:
        out["status"] = "mismatch"
    return out
