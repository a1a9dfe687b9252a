"""The backup catalog: one row per backup in the history store, never deleted.

Status moves pending -> complete | failed, and complete -> pruned. `backups check` (and the
daily backup-audit) moves complete -> missing | changed when the target no longer holds the
backup as recorded, and back to complete when it finds it intact again. Each change also appends
to the row's `events`, so `backups show` can tell an auditor what happened and when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from redis_maint.errors import UsageError
from redis_maint.history import chain, db
from redis_maint.history.db_errors import history_error
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.redact import redact
from redis_maint.timeutil import isoformat, utcnow


class BackupStatus(StrEnum):
    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"
    PRUNED = "pruned"
    MISSING = "missing"  # objects gone from the target (backups check, retention)
    CHANGED = "changed"  # objects on the target differ from what was recorded at upload


# What `backups check` compares with the target: backups that should be there whole.
ON_TARGET = (BackupStatus.COMPLETE, BackupStatus.MISSING, BackupStatus.CHANGED)


@dataclass(frozen=True)
class BackupRecord:
    id: str
    run_id: int | None
    instance: str
    target: str
    target_root: str
    location: str
    created_at: datetime
    status: str
    completed_at: datetime | None = None
    size: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    redis_version: str | None = None
    server: dict[str, Any] | None = None
    checks: list[dict[str, Any]] | None = None
    verified_at: datetime | None = None
    verify_result: dict[str, Any] | None = None
    pruned_at: datetime | None = None
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    kept: bool | None = None  # `backups keep`: never pruned by retention
    kept_reason: str | None = None
    kept_by: str | None = None
    kept_at: datetime | None = None
    # The evidence chain (history/chain.py): the hash of this row's latest ledger record and the one before.
    prev_hash: str | None = None
    hash: str | None = None
    # Redis Cluster: the cluster backup this shard belongs to, and the node it copied (backup/cluster.py).
    cluster_id: str | None = None
    shard: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented `backups list --json` shape (README: JSON output)."""
        return {
            "id": self.id,
            "target": self.target,
            "created_at": isoformat(self.created_at),
            "status": self.status,
            "size": self.size,
            "files": self.files or [],
            "instance": self.instance,
            "run_id": self.run_id,
            "redis_version": self.redis_version,
            "completed_at": isoformat(self.completed_at),
            "verified_at": isoformat(self.verified_at),
            "verify_ok": None if self.verify_result is None else self.verify_result.get("ok"),
            "pruned_at": isoformat(self.pruned_at),
            "error": self.error,
            "kept": bool(self.kept),
            "kept_reason": self.kept_reason,
            "kept_by": self.kept_by,
            "kept_at": isoformat(self.kept_at),
            **({"cluster_id": self.cluster_id, "shard": self.shard} if self.cluster_id else {}),
        }


class Catalog:
    def __init__(self, store: HistoryStore):
        self.store = store
        self.engine = store.engine

    def add(self, record: BackupRecord) -> None:
        values = {
            c.name: getattr(record, c.name)
            for c in db.backups.c
            if c.name != "events" and c.name not in db.CHAIN_COLUMNS
        }
        values["events"] = [_event("created", f"run {record.run_id}")]
        with self._guard("record a new backup"), self.engine.begin() as conn:
            conn.execute(db.backups.insert().values(**values))
            chain.chain_row(conn, db.backups, record.id, "created")

    def mark_complete(self, backup_id: str, *, size: int, files: list[dict[str, Any]]) -> None:
        self._change(
            backup_id,
            "completed",
            f"{len(files)} files, {size} bytes",
            status=BackupStatus.COMPLETE,
            completed_at=utcnow(),
            size=size,
            files=files,
        )

    def mark_failed(self, backup_id: str, error: str, checks: list[dict[str, Any]] | None = None) -> None:
        extra = {"checks": checks} if checks is not None else {}
        self._change(
            backup_id, "failed", redact(error), status=BackupStatus.FAILED, error=redact(error), **extra
        )

    def fail_if_pending(self, backup_id: str, error: str) -> bool:
        """`mark_failed` while the backup is still pending (its run stopped half-way); True if it applied."""
        return self._change_if(
            backup_id,
            (db.backups.c.status == BackupStatus.PENDING,),
            "failed",
            redact(error),
            status=BackupStatus.FAILED,
            error=redact(error),
        )

    def fail_abandoned(self, instance: str, current_run_id: int) -> list[str]:
        """Mark failed the pending backups of runs that died (SIGKILL, OOM); their ids. A pending backup
        whose run is still `running` is another shard's live backup (per-node leases on a Cluster)."""
        failed = []
        for record in self.list(instance=instance, status=BackupStatus.PENDING):
            owner = self.store.get(record.run_id) if record.run_id else None
            if owner is not None and owner.id != current_run_id and owner.status == RunStatus.RUNNING:
                continue
            if self.fail_if_pending(
                record.id, f"abandoned: run {record.run_id} stopped without finishing it"
            ):
                failed.append(record.id)
        return failed

    def mark_pruned(self, backup_id: str, reason: str) -> bool:
        """Claim a complete backup for pruning, before its files go; False if it is kept or not complete.

        One conditional UPDATE, so a `backups keep` racing with retention either lands first
        (and the backup stays) or finds it pruned (and says so).
        """
        return self._change_if(
            backup_id,
            (
                db.backups.c.status == BackupStatus.COMPLETE,
                or_(db.backups.c.kept.is_(None), ~db.backups.c.kept),
            ),
            "pruned",
            reason,
            status=BackupStatus.PRUNED,
            pruned_at=utcnow(),
        )

    def keep(self, backup_id: str, *, reason: str | None, by: str) -> None:
        """Mark a complete backup as kept: retention never prunes it (UsageError if it cannot be)."""
        _keepable(backup_id, self.get(backup_id))
        detail = f"by {by}" + (f": {redact(reason)}" if reason else "")
        changed = self._change_if(
            backup_id,
            (db.backups.c.status == BackupStatus.COMPLETE,),
            "kept",
            detail,
            kept=True,
            kept_reason=None if reason is None else redact(reason),
            kept_by=by,
            kept_at=utcnow(),
        )
        if not changed:  # pruned between our read and our write
            _keepable(backup_id, self.get(backup_id))

    def check_keepable(self, backup_id: str) -> None:
        """UsageError unless `keep` would accept this backup now (it is known and complete)."""
        _keepable(backup_id, self.get(backup_id))

    def check_kept(self, backup_id: str) -> None:
        """UsageError unless `unkeep` would accept this backup now (it is kept)."""
        record = self.get(backup_id)
        if record is None or not record.kept:
            raise UsageError(
                f"backup {backup_id} is not kept, so there is nothing to undo; "
                "`redis-maint backups list` shows which backups are kept"
            )

    def unkeep(self, backup_id: str, *, reason: str | None, by: str) -> None:
        """Let retention treat a kept backup like any other again (UsageError if it is not kept)."""
        self.check_kept(backup_id)
        detail = f"by {by}" + (f": {redact(reason)}" if reason else "")
        self._change_if(
            backup_id,
            (db.backups.c.kept,),
            "unkept",
            detail,
            kept=False,
            kept_reason=None,
            kept_by=None,
            kept_at=None,
        )

    def record_checks(self, backup_id: str, checks: list[dict[str, Any]]) -> None:
        self._change(backup_id, "checked", _checks_line(checks), checks=checks)

    def record_verify(
        self, backup_id: str, result: dict[str, Any], evidence: dict[str, Any] | None = None
    ) -> None:
        """A verification's result; its `verified` event also says how deep it went (`depth`:
        checksums or restore-drill), whether it passed (`ok`), and what `evidence` adds: who ran it
        (requested_by, os_user), in which run (run_id), and a drill's RTO parts and key counts."""
        detail = "ok" if result.get("ok") else f"FAILED: {result.get('problems')}"
        facts = {"depth": verify_depth(result), "ok": bool(result.get("ok")), **(evidence or {})}
        self._change(
            backup_id, "verified", detail, verified_at=utcnow(), verify_result=result, event_facts=facts
        )

    def mark_on_target(self, backup_id: str, status: BackupStatus, detail: str) -> bool:
        """What `backups check` found: complete, missing or changed, with an event (`missing`,
        `changed`, or `intact` when it is whole again). Applies only to a backup that is complete,
        missing or changed now (never one retention pruned meanwhile), and only when the status
        differs; True if it changed."""
        event = {BackupStatus.COMPLETE: "intact"}.get(status, str(status))
        return self._change_if(
            backup_id,
            (db.backups.c.status.in_([s for s in ON_TARGET if s != status]),),
            event,
            redact(detail),
            status=status,
        )

    def count_by_status(self, instance: str) -> dict[str, int]:
        """{status: backups} of one instance (metrics)."""
        query = (
            select(db.backups.c.status, func.count())
            .where(db.backups.c.instance == instance)
            .group_by(db.backups.c.status)
        )
        with self._guard("count backups"), self.engine.connect() as conn:
            return {str(status): int(n) for status, n in conn.execute(query)}

    def get(self, backup_id: str) -> BackupRecord | None:
        with self._guard("read a backup"), self.engine.connect() as conn:
            row = conn.execute(select(db.backups).where(db.backups.c.id == backup_id)).mappings().first()
        return None if row is None else BackupRecord(**row)

    def list(
        self,
        *,
        instance: str | None = None,
        target_root: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[BackupRecord]:
        """Newest first."""
        query = select(db.backups).order_by(db.backups.c.created_at.desc(), db.backups.c.id.desc())
        for column, value in (("instance", instance), ("target_root", target_root), ("status", status)):
            if value is not None:
                query = query.where(db.backups.c[column] == value)
        if limit:
            query = query.limit(limit)
        with self._guard("list backups"), self.engine.connect() as conn:
            return [BackupRecord(**row) for row in conn.execute(query).mappings()]

    def shards_of(self, cluster_ids: list[str], *, instance: str | None = None) -> list[BackupRecord]:
        """Every shard backup of these cluster backups (backup/cluster.py), oldest first."""
        if not cluster_ids:
            return []
        query = (
            select(db.backups)
            .where(db.backups.c.cluster_id.in_(sorted(set(cluster_ids))))
            .order_by(db.backups.c.created_at, db.backups.c.id)
        )
        if instance is not None:
            query = query.where(db.backups.c.instance == instance)
        with self._guard("list shard backups"), self.engine.connect() as conn:
            return [BackupRecord(**row) for row in conn.execute(query).mappings()]

    def _change(
        self,
        backup_id: str,
        event: str,
        detail: str,
        event_facts: dict[str, Any] | None = None,
        **values: Any,
    ) -> None:
        with self._guard(f"record that backup {backup_id} {event}"), self.engine.begin() as conn:
            events = conn.execute(_events_for_update(backup_id)).scalar()
            conn.execute(
                update(db.backups)
                .where(db.backups.c.id == backup_id)
                .values(events=[*(events or []), _event(event, detail, event_facts)], **values)
            )
            chain.chain_row(conn, db.backups, backup_id, event)

    def _change_if(self, backup_id: str, conditions: tuple, event: str, detail: str, **values: Any) -> bool:
        """`_change`, only while `conditions` hold (checked in the same UPDATE); True if it applied."""
        with self._guard(f"record that backup {backup_id} {event}"), self.engine.begin() as conn:
            events = conn.execute(_events_for_update(backup_id)).scalar()
            result = conn.execute(
                update(db.backups)
                .where(db.backups.c.id == backup_id, *conditions)
                .values(events=[*(events or []), _event(event, detail)], **values)
            )
            if result.rowcount == 1:
                chain.chain_row(conn, db.backups, backup_id, event)
            return result.rowcount == 1

    def _guard(self, action: str):
        return _Guard(self.store.safe_url, action)


class _Guard:
    def __init__(self, url: str, action: str):
        self.url, self.action = url, action

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, SQLAlchemyError):
            # The advice, never the SQL text or its parameters (db_errors).
            raise history_error(exc, self.url, self.action, what="backup catalog in") from None
        return False


def _keepable(backup_id: str, record: BackupRecord | None) -> None:
    if record is None:
        raise UsageError(
            f"no backup {backup_id!r} in the catalog; `redis-maint backups list` shows the ids "
            "(only backups in the catalog can be kept)"
        )
    if record.status != BackupStatus.COMPLETE:
        when = f" at {isoformat(record.pruned_at)}" if record.pruned_at else ""
        raise UsageError(
            f"backup {backup_id} is {record.status}{when}, so it cannot be kept: only complete backups "
            "can; pick a complete one from `redis-maint backups list --status complete`"
        )


def _events_for_update(backup_id: str):
    """The row's events, locked until the transaction ends: on PostgreSQL two changes at once
    (a verify and a keep) would otherwise both append to the same old list and lose one event."""
    return select(db.backups.c.events).where(db.backups.c.id == backup_id).with_for_update()


def _event(event: str, detail: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"at": isoformat(utcnow()), "event": event, "detail": detail, **(facts or {})}


# How deep a verification went (the `depth` of a `verified` event).
DEPTH_CHECKSUMS = "checksums"  # every file re-read against its sha256
DEPTH_DRILL = "restore-drill"  # ... and loaded in a throwaway redis-server


def verify_depth(result: dict[str, Any] | None) -> str:
    """A restore drill only when a server loaded the backup (`backups verify --deep`, backup-verify)."""
    deep = (result or {}).get("deep") or {}
    return DEPTH_DRILL if deep.get("server") else DEPTH_CHECKSUMS


def _checks_line(checks: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('file')}: {c.get('verdict')}" for c in checks) or "nothing checked"
