"""One run per scheduled slot, however many sidecars share the history store.

A scheduled or catch-up run claims its slot: a row of `slot_claims` keyed (job, scope, scheduled_for).
The claim, the lease take (with its new fencing token) and the run's `running` row are written in
ONE transaction, after the lease row is locked, so:

- the store itself refuses a second claim of a slot (the key), whatever the sidecars' clocks say;
- a sidecar that loses the claim has written nothing (`SlotTaken`): history is not flooded, the
  daemon counts it in `redis_maint_slot_claims_lost_total`;
- a claim always names the run that holds it, and that run's fencing token.

A claim row rather than a leader lease: a leader must be elected, renewed and failed over, and
while one is being replaced either nobody runs slots or two do; a claim per slot needs no leader,
every sidecar schedules every job and the first to claim a slot runs it. A slot whose run died
(its lease lapsed, or was taken over under another token) is an orphan: a catch-up run may take
the claim over once (`attempts` + 1); its `running` row is marked `interrupted` in the same
transaction.

Scope: a deployment job (backup, session-sweep, ...) has one claim per slot for the deployment; a
node job (health, aof-check) one per slot per Redis node (`node:<host:port>`), taken by the sidecar
beside that node.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from redis_maint.history import chain, db
from redis_maint.history.db_errors import history_error
from redis_maint.history.leases import (
    DEPLOYMENT,
    INSERT_RACE_RETRIES,
    Holder,
    Lease,
    holder_is_dead,
    lease_name,
    store_now,
)
from redis_maint.history.runs import HistoryStore, RunStatus, _insert
from redis_maint.redact import redact

log = logging.getLogger(__name__)

NODE = "node"
# Claim states: a run holds it, its outcome is recorded, it was recorded skipped or missed.
RUNNING, DONE, SKIPPED, MISSED = "running", "done", "skipped", "missed"
# While another run of the job holds the lease, a slot's run retries this often before it is skipped.
LEASE_RETRY_S = 0.1


class SlotTaken(Exception):  # not an error: another sidecar runs the slot
    """Another sidecar holds the slot's claim (or the orphan it would take over is busy); nothing
    was recorded."""


def node_scope(url: str) -> str:
    """A node job's scope: the Redis node beside this sidecar as `node:<host:port>` (no credential)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"{NODE}:{parts.path}"
    if parts.scheme.startswith("redis+sentinel"):
        return f"{NODE}:sentinel/{parts.path.strip('/').split('/')[0]}"
    return f"{NODE}:{parts.hostname or 'localhost'}:{parts.port or 6379}"


def scope_key(kind: str, node_url: str) -> str:
    """The claim and lease scope of a job whose scope is `kind` ("deployment" or "node")."""
    return node_scope(node_url) if kind == NODE else DEPLOYMENT


@dataclass(frozen=True)
class Claim:
    job: str
    scope: str
    slot: datetime
    # A catch-up run may take over the claim of a slot whose run died (or that was recorded missed).
    takeover: bool = False

    def key(self):
        c = db.slot_claims.c
        return and_(c.job == self.job, c.scope == self.scope, c.scheduled_for == self.slot)


@dataclass(frozen=True)
class Opened:
    """What `open_run` wrote: a `running` row (status running) or a `skipped` one (holder: who runs)."""

    run_id: int
    status: RunStatus
    holder: Holder | None = None


def open_run(
    store: HistoryStore,
    lease: Lease,
    *,
    trigger: str,
    requested_by: str | None,
    config_hash: str | None,
    claim: Claim | None = None,
    scheduled_for: datetime | None = None,
    wait_s: float = 0.0,
    skipped_error: Callable[[Holder], str] = str,
) -> Opened:
    """Claim the slot (if any), take the lease and write the run's `running` row, in one transaction.
    `scheduled_for` is recorded for a run that belongs to a slot without claiming it (the claim's
    slot otherwise), so shard backups of one slot still group by it.

    While another run of the job holds the lease, retries for `wait_s`, then records a `skipped`
    row (which holds the claim). Raises SlotTaken when another sidecar holds the claim.
    """
    deadline = time.monotonic() + wait_s
    race = 0
    while True:
        final = time.monotonic() >= deadline
        try:
            with store.engine.begin() as conn:
                opened = _attempt(
                    conn,
                    lease,
                    claim,
                    trigger,
                    requested_by,
                    config_hash,
                    final,
                    skipped_error,
                    scheduled_for,
                )
        except (IntegrityError, _Raced):
            # Two first takes of a lease or claims of a slot at once (PostgreSQL): read it again.
            race += 1
            if race <= INSERT_RACE_RETRIES:
                continue
            raise history_error(
                RuntimeError("the lease or claim row kept changing under us"),
                store.url,
                f"start a run of {lease.job!r}",
            ) from None
        except SQLAlchemyError as exc:
            raise history_error(exc, store.url, f"start a run of {lease.job!r}") from None
        if opened is not None:
            return opened
        time.sleep(LEASE_RETRY_S)


class _Raced(Exception):
    """The lease was taken by another run between two reads of one attempt: the attempt starts over."""


def _attempt(
    conn: Connection,
    lease: Lease,
    claim: Claim | None,
    trigger: str,
    requested_by: str | None,
    config_hash: str | None,
    final: bool,
    skipped_error: Callable[[Holder], str],
    scheduled_for: datetime | None = None,
) -> Opened | None:
    slot = claim.slot if claim is not None else scheduled_for
    now = store_now(conn)
    holder = lease.locked_holder(conn)  # first: serializes every claim of this job and scope
    live = holder if holder is not None and not holder_is_dead(holder, now) else None
    existing = None
    if claim is not None:
        existing = (
            conn.execute(select(db.slot_claims).where(claim.key()).with_for_update()).mappings().first()
        )
        if existing is not None:
            if not (claim.takeover and _orphaned(existing, holder, now)):
                raise SlotTaken(
                    f"{claim.job} slot {claim.slot.isoformat()} is claimed (run {existing['run_id']})"
                )
            if live is not None:
                raise SlotTaken(
                    f"{claim.job} slot {claim.slot.isoformat()}: its orphan's job is running again"
                )
    if live is not None:
        if not final:
            return None
        run_id = _record(
            conn, lease.job, trigger, requested_by, config_hash, RunStatus.SKIPPED, slot, skipped_error(live)
        )
        if claim is not None:
            _write_claim(conn, claim, existing, now, state=SKIPPED, run_id=run_id, fence=None)
        return Opened(run_id, RunStatus.SKIPPED, live)
    if lease.take_in(conn, now) is not None:
        # Under PostgreSQL's READ COMMITTED each statement reads afresh: a lease row another run
        # committed after our first read is its live holder now. Never run beside it: start over.
        raise _Raced(f"{lease.name} was taken by another run while this one started")
    reap_in(conn, lease.job, now)
    run_id = _insert(
        conn,
        lease.job,
        trigger,
        requested_by,
        started_at=now,
        status=RunStatus.RUNNING,
        scheduled_for=slot,
        config_hash=config_hash,
        fence=lease.fence,
    )
    chain.chain_row(conn, db.runs, run_id, "started")
    lease.attach_run(run_id, conn)
    if claim is not None:
        _write_claim(conn, claim, existing, now, state=RUNNING, run_id=run_id, fence=lease.fence)
    return Opened(run_id, RunStatus.RUNNING)


def _orphaned(claim_row: Any, holder: Holder | None, now: datetime) -> bool:
    """A claim whose run can no longer finish: recorded missed, or its run's lease lapsed or passed on."""
    if claim_row["state"] == MISSED:
        return True
    if claim_row["state"] != RUNNING:
        return False
    return holder is None or holder.fence != claim_row["fence"] or holder_is_dead(holder, now)


def _write_claim(
    conn, claim: Claim, existing, now: datetime, *, state: str, run_id: int, fence: int | None
) -> None:
    values = {
        "state": state,
        "run_id": run_id,
        "fence": fence,
        "owner_host": socket.gethostname(),
        "owner_pid": os.getpid(),
        "claimed_at": now,
    }
    if existing is None:
        conn.execute(
            db.slot_claims.insert().values(
                job=claim.job, scope=claim.scope, scheduled_for=claim.slot, attempts=1, **values
            )
        )
    else:
        conn.execute(
            update(db.slot_claims).where(claim.key()).values(attempts=existing["attempts"] + 1, **values)
        )


def _record(
    conn, job, trigger, requested_by, config_hash, status, slot: datetime | None, error: str | None, **more
) -> int:
    now = store_now(conn)
    run_id = _insert(
        conn,
        job,
        trigger,
        requested_by,
        started_at=more.pop("started_at", None) or now,
        finished_at=now,
        status=status,
        error=None if error is None else redact(error),
        scheduled_for=slot,
        config_hash=config_hash,
        **more,
    )
    chain.chain_row(conn, db.runs, run_id, str(status))
    return run_id


INTERRUPTED_REASON = "the process running this job stopped without recording an outcome (killed or crashed)"


def reap_in(conn: Connection, job: str, now: datetime, reason: str = INTERRUPTED_REASON) -> list[int]:
    """In the caller's transaction: `running` rows of `job` that no live lease holder (any scope)
    runs become `interrupted`, chained as evidence. Returns their ids."""
    rows = conn.execute(select(db.leases).where(db.leases.c.job.in_(_names(conn, job)))).mappings().all()
    alive = {h.run_id for h in (Holder.from_row(r) for r in rows) if not holder_is_dead(h, now)}
    running = [
        rid
        for (rid,) in conn.execute(
            select(db.runs.c.id).where(db.runs.c.job == job, db.runs.c.status == RunStatus.RUNNING)
        )
        if rid not in alive
    ]
    if not running:
        return []
    conn.execute(
        update(db.runs)
        .where(db.runs.c.id.in_(running), db.runs.c.status == RunStatus.RUNNING)
        .values(status=RunStatus.INTERRUPTED, finished_at=now, error=reason)
    )
    for rid in sorted(running):
        chain.chain_row(conn, db.runs, rid, "interrupted")
    log.warning("marked interrupted", extra={"job": job, "runs": running, "count": len(running)})
    return running


def _names(conn: Connection, job: str) -> list[str]:
    return [
        name for (name,) in conn.execute(select(db.leases.c.job)) if name == job or name.startswith(f"{job}@")
    ]


def fenced_outcome(lease: Lease, claim: Claim | None, run_id: int, lost_error: str):
    """The check `HistoryStore.finish_run` runs in its transaction: a run whose lease row no longer
    carries its token cannot record success; the claim is marked done with the outcome."""

    def check(conn: Connection, status: RunStatus, error: str | None) -> tuple[RunStatus, str | None]:
        if not lease.fenced(conn) and status == RunStatus.SUCCEEDED:
            status, error = RunStatus.FAILED, lost_error
        if claim is not None:
            conn.execute(
                update(db.slot_claims)
                .where(claim.key(), db.slot_claims.c.run_id == run_id)
                .values(state=DONE)
            )
        return status, error

    return check


def record_claimed(
    store: HistoryStore,
    claim: Claim,
    status: RunStatus,
    *,
    trigger: str,
    requested_by: str | None,
    config_hash: str | None,
    error: str | None,
    **more: Any,
) -> int | None:
    """A `skipped` or `missed` row for a slot, only if nobody claimed the slot (then the row holds
    the claim). None: another sidecar has it, nothing recorded."""
    state = {RunStatus.MISSED: MISSED, RunStatus.SKIPPED: SKIPPED}.get(status, DONE)
    try:
        with store.engine.begin() as conn:
            if conn.execute(select(db.slot_claims.c.job).where(claim.key())).first() is not None:
                return None
            now = store_now(conn)
            if state == MISSED and claim.slot > now:
                return None  # a host clock ahead of the store's: that slot has not even come yet
            _write_claim(conn, claim, None, now, state=state, run_id=0, fence=None)
            run_id = _record(
                conn, claim.job, trigger, requested_by, config_hash, status, claim.slot, error, **more
            )
            conn.execute(update(db.slot_claims).where(claim.key()).values(run_id=run_id))
            return run_id
    except IntegrityError:
        return None  # claimed by another sidecar at the same moment
    except SQLAlchemyError as exc:
        raise history_error(exc, store.url, f"record a {status} run of {claim.job!r}") from None


def orphans(store: HistoryStore, job: str, scope: str, since: datetime) -> list[datetime]:
    """Slots of `job` in `scope` since `since` whose claimed run died without an outcome (oldest first)."""
    c = db.slot_claims.c
    name = lease_name(job, scope)
    with store.engine.connect() as conn:
        now = store_now(conn)
        claims = (
            conn.execute(
                select(db.slot_claims)
                .where(c.job == job, c.scope == scope, c.state == RUNNING, c.scheduled_for >= since)
                .order_by(c.scheduled_for)
            )
            .mappings()
            .all()
        )
        if not claims:
            return []
        row = conn.execute(select(db.leases).where(db.leases.c.job == name)).mappings().first()
    holder = None if row is None else Holder.from_row(row)
    return [r["scheduled_for"] for r in claims if _orphaned(r, holder, now)]


def claims(store: HistoryStore, job: str | None = None) -> list[dict[str, Any]]:
    """Every claim (of `job`), oldest slot first."""
    query = select(db.slot_claims).order_by(db.slot_claims.c.scheduled_for)
    if job is not None:
        query = query.where(db.slot_claims.c.job == job)
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
