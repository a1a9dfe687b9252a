"""Sweeps and counts over every node that holds sessions. Jobs and the CLI call these."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from redis.exceptions import ResponseError

from redis_maint.errors import MaintenanceError
from redis_maint.idle_cpu import run_idle
from redis_maint.progress import Progress
from redis_maint.redact import redact
from redis_maint.redis_conn import call, call_pass
from redis_maint.sessions.engine import AfterRead, Batching, NodeSweep
from redis_maint.sessions.report import SweepReport, largest_orgs
from redis_maint.sessions.rules import Layout, Mode, Plan
from redis_maint.sessions.topology import memory_ratio, persistent_keys, primaries, server_time_ms

Tick = Callable[[int], None]
DEFAULT_BATCHING = Batching()


def sweep(
    client: redis.Redis,
    url: str,
    plan: Plan,
    *,
    batching: Batching = DEFAULT_BATCHING,
    timeout: timedelta = timedelta(seconds=5),
    idle_cpu: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_tick: Tick | None = None,
    after_read: AfterRead | None = None,
    sample_limit: int = 5,
) -> SweepReport:
    """Run `plan` on every primary. `on_start(total keys)` and `on_tick(keys scanned)` report progress;
    `after_read(keys)` runs between the read of a batch and its check-and-act (a seam for tests).
    With `idle_cpu` the sweep runs in a thread of its own at SCHED_IDLE, so it never takes a core
    from Redis; the callbacks run in that thread."""
    report = SweepReport(sample_limit=sample_limit)
    tick = on_tick or (lambda n: None)

    def sweep_nodes() -> SweepReport:
        with primaries(client, url, timeout) as (nodes, slotted):
            report.nodes = len(nodes)
            if on_start is not None:
                on_start(sum(call(url, n.client.dbsize) for n in nodes))
            for node in nodes:
                node_plan = plan.at(call(url, server_time_ms, node.client))
                probe = plan.reads_ttl and _count_persistent(url, node.client, report) > 0
                engine = NodeSweep(
                    node.client,
                    node_plan,
                    batching,
                    report,
                    slotted=slotted,
                    probe_ttl=probe,
                    after_read=after_read,
                )
                try:
                    call_pass(
                        url,
                        lambda engine=engine: engine.run(tick),
                        restart_point=lambda: _restart_point(report, keep_changes=not plan.dry_run),
                    )
                except ResponseError as exc:
                    raise MaintenanceError(
                        f"Redis node {node.name} refused a sweep command: {redact(str(exc))}; "
                        "the sweep stopped there (changes made before it stand). Check the node's log, then sweep again"
                    ) from None
        return report

    return run_idle(sweep_nodes, name="session-sweep") if idle_cpu else sweep_nodes()


def _restart_point(report: SweepReport, *, keep_changes: bool) -> Callable[[], None]:
    """A callable that puts the report back as it was before this node's pass, for a pass that starts
    again on the new primary after a Sentinel failover: what the lost pass saw (scanned, remaining,
    unreadable, ...) is seen again and counted once. With `keep_changes` (not a dry run) the changes
    the lost primary acknowledged stay counted: the replica it handed them to does not see those keys
    again. (A change in flight when it died is uncounted, or made and counted again if it had not
    reached the replica.)"""
    saved = copy.deepcopy(vars(report))

    def restart() -> None:
        deleted, repaired = dict(report.deleted), report.ttl_repaired
        vars(report).clear()
        vars(report).update(copy.deepcopy(saved))
        if keep_changes:
            report.deleted, report.ttl_repaired = deleted, repaired

    return restart


def _count_persistent(url: str, client: redis.Redis, report: SweepReport) -> int:
    n = call(url, persistent_keys, client)
    report.persistent_keys += n
    return n


def count(
    client: redis.Redis,
    url: str,
    layout: Layout,
    *,
    by_org: bool = False,
    batching: Batching = DEFAULT_BATCHING,
    timeout: timedelta = timedelta(seconds=5),
    idle_cpu: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """`{"total": N}`, plus, when asked, `by_org` (every organisation id), `no_org` (sessions
    without one: missing or null) and `unreadable`. SCAN only; `progress` counts keys scanned."""
    plan = Plan(mode=Mode.CENSUS if by_org else Mode.COUNT, layout=layout, dry_run=True)
    progress = progress or Progress()
    try:
        report = sweep(
            client,
            url,
            plan,
            batching=batching,
            timeout=timeout,
            idle_cpu=idle_cpu,
            on_start=lambda total: progress.start(total, "counting sessions", "keys"),
            on_tick=progress.advance,
        )
    finally:
        progress.finish()
    if not by_org:
        return {"total": report.scanned}
    return {
        "total": sum(report.by_org.values()) + report.unreadable,
        "by_org": largest_orgs(report.by_org, len(report.by_org)),
        "no_org": report.by_org.get(None, 0),
        "unreadable": report.unreadable,
    }


def pressure_ratio(client: redis.Redis, url: str, timeout: timedelta = timedelta(seconds=5)) -> float | None:
    """used_memory/maxmemory (the highest over Cluster primaries), None when maxmemory is unset."""
    with primaries(client, url, timeout) as (nodes, _slotted):
        return call(url, memory_ratio, nodes)
