"""Cluster backups in the history store: who writes a cluster's manifest, and whether it is written.

A row in `cluster_backups` exists once a shard's run found every shard of a cluster backup
complete and claimed the writing of its cluster manifest. Inserting the row is the claim: the
primary key (instance, id) lets exactly one insert win, however many shards finish at once. A
claim whose run is no longer `running` and that never wrote the manifest (the run failed, or
died and was marked interrupted) can be taken over by a later run, with one conditional UPDATE.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from redis_maint.history import db
from redis_maint.history.db_errors import history_error
from redis_maint.history.runs import HistoryStore
from redis_maint.timeutil import utcnow

T = db.cluster_backups


def claim(store: HistoryStore, instance: str, cluster_id: str, run_id: int) -> bool:
    """True if this run now holds the right (and the duty) to write the cluster manifest."""
    try:
        with store.engine.begin() as conn:
            conn.execute(
                T.insert().values(
                    instance=instance, id=cluster_id, claimed_by_run=run_id, claimed_at=utcnow()
                )
            )
        return True
    except IntegrityError:
        pass  # another run claimed it first: take it over only if that run is gone without writing
    except SQLAlchemyError as exc:
        raise history_error(
            exc, store.safe_url, f"claim the manifest of cluster backup {cluster_id}"
        ) from None
    live = select(db.runs.c.id).where(db.runs.c.status == "running")
    query = (
        update(T)
        .where(
            T.c.instance == instance,
            T.c.id == cluster_id,
            T.c.written_at.is_(None),
            or_(
                T.c.claimed_by_run.is_(None),
                and_(T.c.claimed_by_run != run_id, T.c.claimed_by_run.not_in(live)),
            ),
        )
        .values(claimed_by_run=run_id, claimed_at=utcnow())
    )
    try:
        with store.engine.begin() as conn:
            return conn.execute(query).rowcount == 1
    except SQLAlchemyError as exc:
        raise history_error(
            exc, store.safe_url, f"claim the manifest of cluster backup {cluster_id}"
        ) from None


def written(
    store: HistoryStore,
    instance: str,
    cluster_id: str,
    *,
    run_id: int,
    target_root: str,
    location: str,
    sha256: str,
    shards: list[dict[str, Any]],
) -> None:
    """The cluster manifest is on the target: the cluster backup is complete."""
    values = {"written_at": utcnow(), "target_root": target_root, "location": location, "sha256": sha256}
    _update(store, instance, cluster_id, run_id, {**values, "shards": shards}, "record a cluster manifest")


def release(store: HistoryStore, instance: str, cluster_id: str, run_id: int) -> None:
    """Give up a claim without writing (the upload failed): the next shard run may try again."""
    _update(store, instance, cluster_id, run_id, {"claimed_by_run": None}, "release a cluster manifest claim")


def get(store: HistoryStore, instance: str, cluster_id: str) -> dict[str, Any] | None:
    found = get_many(store, [(instance, cluster_id)])
    return found.get((instance, cluster_id))


def get_many(store: HistoryStore, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(instance, id): row} of the cluster backups that have one."""
    if not keys:
        return {}
    query = select(T).where(T.c.id.in_(sorted({k[1] for k in keys})))
    try:
        with store.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
    except SQLAlchemyError as exc:
        raise history_error(exc, store.safe_url, "read cluster backups") from None
    wanted = set(keys)
    return {(r["instance"], r["id"]): r for r in rows if (r["instance"], r["id"]) in wanted}


def _update(
    store: HistoryStore, instance: str, cluster_id: str, run_id: int, values: dict, action: str
) -> None:
    query = (
        update(T)
        .where(T.c.instance == instance, T.c.id == cluster_id, T.c.claimed_by_run == run_id)
        .values(**values)
    )
    try:
        with store.engine.begin() as conn:
            conn.execute(query)
    except SQLAlchemyError as exc:
        raise history_error(exc, store.safe_url, action) from None
