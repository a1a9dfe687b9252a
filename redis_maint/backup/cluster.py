"""Redis Cluster backups: each shard's sidecar backs up its own node; the shards of one slot make a
cluster backup, which a cluster manifest seals.

- **A shard backup** is an ordinary backup (its own id, files, manifest.json and catalog row) of a
  node with `cluster_enabled:1`. Its manifest and catalog row also hold `cluster`: the node id
  (CLUSTER MYID), its role, its shard's primary, its slot ranges, the topology it saw (every shard
  with slots, from CLUSTER SHARDS, else CLUSTER NODES) and the cluster backup id. The topology is
  read before and after the copy (backup/cluster_node.py); a backup during which slots moved fails.
- **The cluster backup id** comes from the run's schedule slot (`scheduled_for`), which every
  sidecar of the deployment shares: `20261201T030000Z-cluster`. An ad hoc run has no slot, so it
  takes `--cluster-id ID` (the same ID on each shard's sidecar), else an id of its own
  (`adhoc-<backup id>`): a group of one shard, listed as incomplete.
- **Complete** only when every shard the cluster had at backup time (every primary with slots in
  the recorded topology) has a complete shard backup in the group, those cover all 16384 slots
  once, and the cluster manifest is written. The shard whose run finds that true first (after its
  own backup is complete in the catalog) claims the writing in the history store
  (history/cluster_backups.py) and writes `clusters/<instance>/<id>/cluster-manifest.json` on the
  target: each shard's node id, role, slot ranges, backup id, location, files with their sha256,
  and the sha256 of its manifest.json. The last shard to complete always sees every other shard
  complete (each marks itself complete before it looks), so some shard writes it, and only one.
- **Retention** keeps or prunes a cluster backup's shards together (`retention_plan`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from redis_maint.backup.cluster_node import TOTAL_SLOTS, Slots, count, merge, slots_key
from redis_maint.backup.stored import MANIFEST
from redis_maint.errors import IntegrityError, MaintenanceError
from redis_maint.history import cluster_backups
from redis_maint.history.catalog import BackupRecord, BackupStatus, Catalog
from redis_maint.storage import ObjectNotFound, Target, hash_object, join
from redis_maint.timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from redis_maint.backup.retention import Policy, RetentionPlan

CLUSTER_MANIFEST = "cluster-manifest.json"
FORMAT = "redis-maint-cluster-backup/1"
PREFIX = "clusters"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# ---- which cluster backup a shard backup belongs to ---------------------------------------------
def cluster_id_for(*, explicit: str | None, scheduled_for: datetime | None, backup_id: str) -> str:
    if explicit:
        return explicit
    if scheduled_for is not None:
        return f"{scheduled_for:%Y%m%dT%H%M%SZ}-cluster"
    return f"adhoc-{backup_id}"


def check_cluster_id(value: str) -> str:
    """For --cluster-id: a name that is safe as a key part and a catalog value."""
    if not _ID.match(value):
        raise ValueError(
            f"{value!r} is not a cluster backup id: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. before-upgrade-2026-12-01)"
        )
    return value


def manifest_key(instance: str, cluster_id: str) -> str:
    return f"{PREFIX}/{instance}/{cluster_id}/{CLUSTER_MANIFEST}"


# ---- what a group of shard backups amounts to ---------------------------------------------------
@dataclass
class ClusterState:
    instance: str
    cluster_id: str
    shards: list[BackupRecord]  # every shard backup recorded for it, oldest first
    row: dict[str, Any] | None = None  # its cluster_backups row (claimed / written)
    expected: list[Slots] = field(default_factory=list)  # one per shard the cluster had
    chosen: dict[Slots, BackupRecord] = field(default_factory=dict)  # the complete backup of each
    problems: list[str] = field(default_factory=list)

    @property
    def shards_complete(self) -> int:
        return len(self.chosen)

    @property
    def shards_expected(self) -> int:
        return len(self.expected)

    @property
    def slots_covered(self) -> int:
        return count(merge(r for slots in self.chosen for r in slots))

    @property
    def all_shards_complete(self) -> bool:
        return (
            bool(self.expected)
            and not self.problems
            and len(self.chosen) == len(self.expected)
            and self.slots_covered == TOTAL_SLOTS
        )

    @property
    def manifest_written(self) -> bool:
        return bool(self.row and self.row.get("written_at"))

    @property
    def manifest_uri(self) -> str | None:
        if not self.manifest_written:
            return None
        return f"{str(self.row['target_root']).rstrip('/')}/{self.row['location']}"

    @property
    def status(self) -> str:
        states = {r.status for r in self.shards}
        if states == {BackupStatus.PRUNED}:
            return BackupStatus.PRUNED
        if self.all_shards_complete and self.manifest_written:
            return BackupStatus.COMPLETE
        if BackupStatus.PENDING in states:
            return BackupStatus.PENDING
        return "incomplete"

    def missing(self) -> list[str]:
        """The shards without a complete backup, by their primary and slots."""
        seen: dict[Slots, str] = {}
        for record in self.shards:
            for s in (record.shard or {}).get("topology") or []:
                seen.setdefault(slots_key(s["slots"]), s["primary_id"])
        return [
            f"{seen.get(slots, '?')} (slots {ranges_text(slots)})"
            for slots in self.expected
            if slots not in self.chosen
        ]

    def summary(self) -> dict[str, Any]:
        """The `cluster` key of a listing entry and of a shard run's summary."""
        return {
            "id": self.cluster_id,
            "status": self.status,
            "shards_complete": self.shards_complete,
            "shards_expected": self.shards_expected,
            "slots_covered": self.slots_covered,
            "manifest": self.manifest_uri,
            "manifest_by": (self.row or {}).get("claimed_by_run"),  # the run that writes (wrote) it
            "waiting_for": self.missing(),
            "problems": list(self.problems),
        }


def assess(
    instance: str, cluster_id: str, shards: list[BackupRecord], row: dict[str, Any] | None
) -> ClusterState:
    state = ClusterState(instance, cluster_id, shards, row)
    expected: set[Slots] = set()
    for record in shards:
        for s in (record.shard or {}).get("topology") or []:
            expected.add(slots_key(s["slots"]))
    state.expected = sorted(expected)
    flat = [r for slots in state.expected for r in slots]
    if count(merge(flat)) != sum(end - start + 1 for start, end in flat):
        state.problems.append("the shards saw different slot layouts (resharding between their backups)")
    for record in shards:  # oldest first: the newest complete backup of a shard wins
        slots = slots_key((record.shard or {}).get("slots"))
        if record.status == BackupStatus.COMPLETE and slots in expected:
            state.chosen[slots] = record
    if state.expected and count(merge(flat)) < TOTAL_SLOTS:
        state.problems.append(f"the recorded topology covers {count(merge(flat))} of {TOTAL_SLOTS} slots")
    return state


def load(catalog: Catalog, instance: str, cluster_id: str) -> ClusterState:
    shards = catalog.shards_of([cluster_id], instance=instance)
    return assess(instance, cluster_id, shards, cluster_backups.get(catalog.store, instance, cluster_id))


def find(catalog: Catalog, cluster_id: str, instance: str) -> ClusterState | None:
    """The cluster backup with this id: the configured instance's, else the only one there is."""
    shards = catalog.shards_of([cluster_id])
    instances = sorted({r.instance for r in shards})
    if not instances:
        return None
    pick = instance if instance in instances else instances[0] if len(instances) == 1 else None
    if pick is None:
        from redis_maint.errors import UsageError

        raise UsageError(
            f"cluster backup {cluster_id} exists for several instances ({', '.join(instances)}); "
            "set REDIS_MAINT_INSTANCE to the one you mean"
        )
    return load(catalog, pick, cluster_id)


def ranges_text(slots: Iterable[Iterable[int]]) -> str:
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in slots)


# ---- the cluster manifest -----------------------------------------------------------------------
def finish(
    catalog: Catalog, target: Target, *, instance: str, cluster_id: str, run_id: int
) -> dict[str, Any]:
    """After a shard backup completed: write the cluster manifest if this run is the one to."""
    state = load(catalog, instance, cluster_id)
    if not state.all_shards_complete or state.manifest_written:
        return state.summary()
    if not cluster_backups.claim(catalog.store, instance, cluster_id, run_id):
        now = load(catalog, instance, cluster_id)  # another shard's run writes it (or just did)
        return now.summary()
    try:
        manifest = build_manifest(state, target, run_id=run_id)
        data = (json.dumps(manifest, indent=2) + "\n").encode()
        key = manifest_key(instance, cluster_id)
        target.put_bytes(key, data)
        shards = [{k: s[k] for k in ("node_id", "backup_id", "slots")} for s in manifest["shards"]]
        cluster_backups.written(
            catalog.store,
            instance,
            cluster_id,
            run_id=run_id,
            target_root=target.uri,
            location=key,
            sha256=hashlib.sha256(data).hexdigest(),
            shards=shards,
        )
    except BaseException:
        cluster_backups.release(catalog.store, instance, cluster_id, run_id)
        raise
    return load(catalog, instance, cluster_id).summary()


def build_manifest(state: ClusterState, target: Target, *, run_id: int) -> dict[str, Any]:
    shards = [_shard_entry(state.chosen[slots], target) for slots in state.expected]
    return {
        "format": FORMAT,
        "id": state.cluster_id,
        "instance": state.instance,
        "created_at": isoformat(min(r.created_at for r in state.chosen.values())),
        "written_at": isoformat(utcnow()),
        "written_by_run": run_id,
        "slots": TOTAL_SLOTS,
        "slots_covered": state.slots_covered,
        "shards": shards,
    }


def _shard_entry(record: BackupRecord, target: Target) -> dict[str, Any]:
    if record.target_root != target.uri:
        raise MaintenanceError(
            f"shard backup {record.id} is on {record.target_root}, not on {target.uri}: every shard's "
            "sidecar of one cluster must use the same target.uri"
        )
    shard = record.shard or {}
    return {
        "node_id": shard.get("node_id"),
        "role": shard.get("role"),
        "primary_id": shard.get("primary_id"),
        "slots": shard.get("slots"),
        "backup_id": record.id,
        "location": record.location,
        "created_at": isoformat(record.created_at),
        "dbsize": (record.server or {}).get("dbsize"),
        "files": [{k: f[k] for k in ("path", "size", "sha256")} for f in record.files or []],
        "manifest_sha256": _sha256_of(target, join(record.location, MANIFEST)),
    }


def _sha256_of(target: Target, key: str) -> str:
    try:
        return hash_object(target, key)[1]
    except ObjectNotFound:
        raise IntegrityError(
            f"{target.uri_for(key)} is missing: that shard backup is not complete on the target"
        ) from None


def verify_manifest(state: ClusterState, target: Target) -> dict[str, Any]:
    """The cluster manifest on the target against the history store and each shard's manifest.json."""
    out: dict[str, Any] = {"location": None, "ok": False, "problems": []}
    if not state.manifest_written:
        out["problems"].append("no cluster manifest: " + _why_not_complete(state))
        return out
    key = state.row["location"]
    out["location"] = target.uri_for(key)
    try:
        data = b"".join(target.read_chunks(key))
    except ObjectNotFound:
        out["problems"].append(f"{out['location']} is missing")
        return out
    if hashlib.sha256(data).hexdigest() != state.row["sha256"]:
        out["problems"].append(f"{out['location']} differs from what was written (sha256)")
        return out
    manifest = json.loads(data)
    listed = {s["backup_id"]: s for s in manifest.get("shards") or []}
    for slots in state.expected:
        record = state.chosen.get(slots)
        entry = listed.get(record.id) if record else None
        if entry is None:
            out["problems"].append(f"slots {ranges_text(slots)}: no shard in the cluster manifest")
        elif _sha256_of(target, join(record.location, MANIFEST)) != entry.get("manifest_sha256"):
            out["problems"].append(
                f"shard {entry.get('node_id')}: its manifest.json changed since the cluster manifest"
            )
    covered = count(merge(tuple(r) for s in listed.values() for r in s.get("slots") or []))
    if covered != TOTAL_SLOTS:
        out["problems"].append(f"the cluster manifest covers {covered} of {TOTAL_SLOTS} slots")
    out["ok"] = not out["problems"]
    out["slots_covered"] = covered
    return out


def _why_not_complete(state: ClusterState) -> str:
    if state.problems:
        return "; ".join(state.problems)
    if not state.all_shards_complete:
        return f"{state.shards_complete} of {state.shards_expected} shards complete, waiting for {', '.join(state.missing())}"
    return "every shard is complete, but the manifest was not written (it is written by the next shard backup run)"


# ---- listings -----------------------------------------------------------------------------------
def listing(catalog: Catalog, records: list[BackupRecord]) -> list[dict[str, Any]]:
    """`backups list` entries: plain backups as they are; the shards of a cluster backup as one entry
    (at the place of its newest shard) with the shards nested."""
    keys = [(r.instance, r.cluster_id) for r in records if r.cluster_id]
    if not keys:
        return [r.to_json() for r in records]
    shards = catalog.shards_of([k[1] for k in keys])
    rows = cluster_backups.get_many(catalog.store, keys)
    out, done = [], set()
    for record in records:
        if not record.cluster_id:
            out.append(record.to_json())
            continue
        key = (record.instance, record.cluster_id)
        if key in done:
            continue
        done.add(key)
        mine = [s for s in shards if (s.instance, s.cluster_id) == key]
        out.append(entry(assess(key[0], key[1], mine, rows.get(key))))
    return out


def entry(state: ClusterState) -> dict[str, Any]:
    """One cluster backup in the `backups list --json` shape, plus `cluster` and `shards`."""
    shards = state.shards
    chosen = list(state.chosen.values())
    verified = [s.verified_at for s in chosen]
    return {
        "id": state.cluster_id,
        "target": state.manifest_uri,
        "created_at": isoformat(min(s.created_at for s in shards)),
        "status": state.status,
        "size": sum(s.size or 0 for s in chosen),
        "files": [],
        "instance": state.instance,
        "run_id": None,
        "redis_version": next((s.redis_version for s in shards if s.redis_version), None),
        "completed_at": isoformat(state.row.get("written_at")) if state.manifest_written else None,
        "verified_at": isoformat(min(verified)) if chosen and all(verified) else None,
        "verify_ok": None
        if not chosen or not all(verified)
        else all((s.verify_result or {}).get("ok") for s in chosen),
        "pruned_at": None,
        "error": "; ".join(state.problems) or None,
        "kept": bool(chosen) and all(s.kept for s in chosen),
        "kept_reason": None,
        "kept_by": None,
        "kept_at": None,
        "kind": "cluster",
        "cluster": state.summary(),
        "shards": [s.to_json() for s in shards],
    }


# ---- retention ----------------------------------------------------------------------------------
def retention_plan(records: list[BackupRecord], policy: Policy, tz: tzinfo, now: datetime) -> RetentionPlan:
    """retention.plan over complete backups, with the shards of a cluster backup kept or pruned as one.

    Per shard, the daily rule would keep one shard of each day's cluster backup and prune the rest.
    A cluster backup whose every shard is complete is one candidate (created when its first shard
    was, kept if any shard is kept). One still missing shards takes no rule's place: it stays while
    younger than keep_within (at least a day: a shard may still be uploading), then goes.
    """
    from redis_maint.backup.retention import Candidate, RetentionPlan, plan
    from redis_maint.durations import format_duration

    units: list[Candidate] = []
    groups: dict[str, list[BackupRecord]] = {}
    for record in records:
        if record.cluster_id:
            groups.setdefault(f"{record.instance}/{record.cluster_id}", []).append(record)
        else:
            units.append(Candidate(record.id, record.created_at, bool(record.kept)))
    partial = {}
    for key, shards in groups.items():
        state = assess(shards[0].instance, shards[0].cluster_id, shards, None)
        if state.all_shards_complete:
            units.append(Candidate(key, min(s.created_at for s in shards), any(s.kept for s in shards)))
        else:
            partial[key] = state
    decided = plan(units, policy, tz, now=now)
    out = RetentionPlan()
    for unit, why in decided.keep.items():
        for rid in _members(unit, groups):
            out.keep[rid] = why
    for unit in decided.prune:
        for rid in _members(unit, groups):
            out.prune.append(rid)
            out.why_pruned[rid] = decided.why_pruned[unit]
    grace = max(policy.keep_within, timedelta(days=1))
    for state in partial.values():
        what = f"cluster backup with {state.shards_complete} of {state.shards_expected} shards"
        young = now - min(s.created_at for s in state.shards) < grace
        for s in state.shards:
            if young or s.kept:
                out.keep[s.id] = [f"incomplete {what}, within {format_duration(grace)}" if young else "kept"]
            else:
                out.prune.append(s.id)
                out.why_pruned[s.id] = f"incomplete {what}, older than {format_duration(grace)}"
    by_time = {r.id: (r.created_at, r.id) for r in records}
    out.prune.sort(key=lambda rid: by_time[rid], reverse=True)
    return out


def _members(unit: str, groups: dict[str, list[BackupRecord]]) -> list[str]:
    return [s.id for s in groups[unit]] if unit in groups else [unit]
