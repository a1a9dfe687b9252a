"""What a sweep does with each session it read. Decided here, on the client, so Redis's one thread
only runs the cheap check-and-act for the few keys that change. Pure: no Redis in this module."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from redis_maint.sessions.report import SweepReport

DELETE = b"D"
_NUMBER = (int, float)  # bool is neither: type(True) is bool

# One planned change: key, the value it was read with, b"D" or the expiry in ms, and why.
Action = tuple[bytes, bytes, bytes, str]


class Mode(StrEnum):
    SWEEP = "sweep"  # stale, expired without TTL, TTL repair; unreadable only when asked
    ORG = "organisation"  # every session of one organisation
    NO_ORG = "no-organisation"  # every session without an organisation id (missing or null)
    ALL = "all"  # every session (the emergency path)
    COUNT = "count"  # count keys only, read nothing
    CENSUS = "census"  # count sessions per organisation, change nothing


@dataclass(frozen=True)
class Layout:
    """Where sessions live and which JSON fields matter."""

    pattern: str = "session:*"
    created_field: str = "createdAt"
    org_field: str = "organisationId"


@dataclass(frozen=True)
class Plan:
    """One run's decisions, in epoch milliseconds. `now_ms` is the server's clock, set per node."""

    mode: Mode
    layout: Layout = Layout()
    lifetime_ms: int = 86_400_000  # the session TTL: repairs give createdAt + this
    stale_after_ms: int = 86_400_000  # sweep: createdAt older than this is stale
    future_skew_ms: int = 300_000
    delete_unreadable: bool = False
    org: str | None = None  # Mode.ORG only: the organisation id, never a stand-in for "none"
    dry_run: bool = False
    now_ms: int = 0

    def __post_init__(self) -> None:
        # An ORG plan without an id must not quietly become "the sessions without one": that is NO_ORG.
        if self.mode is Mode.ORG and not self.org:
            raise ValueError("an organisation delete needs an organisation id; use Mode.NO_ORG for none")

    @property
    def reads_values(self) -> bool:
        return self.mode is not Mode.COUNT

    @property
    def reads_ttl(self) -> bool:
        return self.mode is Mode.SWEEP

    def at(self, now_ms: int) -> Plan:
        return replace(self, now_ms=now_ms)


def org_name(value: Any) -> str | None:
    """An organisation id as a string: `42` and `"42"` are the same organisation. None when the
    session has none (field missing or null): no string stands for "none", so no real id collides."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    return orjson.dumps(value).decode()


def load(raw: bytes) -> dict | None:
    """The session as a JSON object, or None when it is not one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if type(doc) is dict else None


def decide(
    plan: Plan, keys: list[bytes], values: list[bytes | None], no_ttl: set[int], report: SweepReport
) -> list[Action]:
    """The changes a batch needs; counts what stays (and what is unreadable) into `report`."""
    return _DECIDERS[plan.mode](plan, keys, values, no_ttl, report)


def _sweep(
    plan: Plan, keys: list[bytes], values: list[bytes | None], no_ttl: set[int], report: SweepReport
) -> list[Action]:
    # the hot loop of a sweep (~1 us per session here): locals, and no calls it can do without
    cf, of, lifetime, now = plan.layout.created_field, plan.layout.org_field, plan.lifetime_ms, plan.now_ms
    stale_before, future_limit = now - plan.stale_after_ms, now + plan.future_skew_ms
    by_org, loads, bad_json = report.by_org, orjson.loads, orjson.JSONDecodeError
    actions: list[Action] = []
    for i, (key, raw) in enumerate(zip(keys, values, strict=True)):
        if raw is None:
            report.vanished += 1
            continue
        try:
            doc = loads(raw)
            created = doc.get(cf) if type(doc) is dict else None
        except bad_json:
            doc = created = None
        if type(created) not in _NUMBER or created > future_limit:
            report.note_unreadable(key)
            if plan.delete_unreadable:
                actions.append((key, raw, DELETE, "unreadable"))
            continue
        if no_ttl and i in no_ttl and created + lifetime <= now:
            actions.append((key, raw, DELETE, "expired_no_ttl"))
        elif created < stale_before:
            actions.append((key, raw, DELETE, "stale"))
        else:
            org = doc.get(of)
            by_org[org if type(org) is str else org_name(org)] += 1
            if no_ttl and i in no_ttl:
                actions.append((key, raw, b"%d" % (int(created) + lifetime), "ttl"))
    return actions


def _organisation(
    plan: Plan, keys: list[bytes], values: list[bytes | None], no_ttl: set[int], report: SweepReport
) -> list[Action]:
    of = plan.layout.org_field
    target = plan.org if plan.mode is Mode.ORG else None
    actions: list[Action] = []
    for i, raw in enumerate(values):
        if raw is None:
            report.vanished += 1
            continue
        doc = load(raw)
        if doc is None:
            report.note_unreadable(keys[i])
            continue
        org = org_name(doc.get(of))
        if org == target:
            actions.append((keys[i], raw, DELETE, "organisation"))
        else:
            report.remain(org)
    return actions


def _all(
    plan: Plan, keys: list[bytes], values: list[bytes | None], no_ttl: set[int], report: SweepReport
) -> list[Action]:
    actions: list[Action] = []
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            report.vanished += 1
        else:
            actions.append((key, raw, DELETE, "all"))
    return actions


def _census(
    plan: Plan, keys: list[bytes], values: list[bytes | None], no_ttl: set[int], report: SweepReport
) -> list[Action]:
    of = plan.layout.org_field
    for i, raw in enumerate(values):
        if raw is None:
            report.vanished += 1
            continue
        doc = load(raw)
        if doc is None:
            report.note_unreadable(keys[i])
        else:
            report.remain(org_name(doc.get(of)))
    return []


_DECIDERS = {
    Mode.SWEEP: _sweep,
    Mode.ORG: _organisation,
    Mode.NO_ORG: _organisation,
    Mode.ALL: _all,
    Mode.CENSUS: _census,
}
