"""The sweep of one Redis node: SCAN -> read (MGET, and the no-TTL probe) -> decide -> check-and-act.

Replies are read one at a time and each one sends the next step at once: a SCAN reply sends the next
SCAN and the reads of its keys, a read reply is decided and sends its check-and-act. So Redis always
has the next step queued while this process parses, and the two cores work at the same time.
Every server-side step is bounded (COUNT, batch sizes, bytes), so none blocks Redis for long; at
most one SCAN is in flight, so memory holds a few batches of keys and values, never the key space.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from redis_maint.sessions.report import SweepReport
from redis_maint.sessions.rules import Action, Plan, decide
from redis_maint.sessions.scripts import CHECK_AND_ACT_SHA, EXISTING_SHA, NO_TTL_SHA
from redis_maint.sessions.wire import Wire

AfterRead = Callable[[list[bytes]], None]
OnScanned = Callable[[int], None]
# replies Cluster sends while a slot moves: those keys are left for the next sweep
_MOVING = ("MOVED", "ASK", "TRYAGAIN")


@dataclass(frozen=True)
class Batching:
    """Bounds on each server-side step. Measured here (1M sessions, 2 cores): SCAN ~1.2 us, MGET
    ~1 us and a check-and-delete ~5 us of server time per key, so each step stays under ~0.5 ms.
    A SCAN COUNT of 1000 kept Redis 96% busy and doubled a pinging client's p99; 45 KB
    check-and-act commands saved nothing measurable.

    Every command also stays under 16 KB: Redis reads a client's input 16 KB at a time until its
    query buffer has grown, and then greedily, running all of a pipelined backlog in one event-loop
    turn while every other client waits. Small commands keep each turn short.
    """

    scan_count: int = 300
    read_batch: int = 300
    act_batch: int = 100
    command_bytes: int = 12 * 1024


@dataclass
class _Read:
    keys: list[bytes]
    values: list[bytes | None] = field(default_factory=list)
    no_ttl: set[int] = field(default_factory=set)
    foreign: set[int] = field(default_factory=set)  # positions of keys that are not strings
    moved: bool = False
    waiting: int = 1  # replies still to come before the batch can be decided

    def without_foreign(self) -> _Read:
        """The batch without its non-string keys: they match the pattern but are not sessions."""
        if not self.foreign:
            return self
        keep = [i for i in range(len(self.keys)) if i not in self.foreign]
        renumber = {old: new for new, old in enumerate(keep)}
        return _Read(
            [self.keys[i] for i in keep],
            [self.values[i] for i in keep],
            {renumber[i] for i in self.no_ttl if i in renumber},
            moved=self.moved,
            waiting=0,
        )


class NodeSweep:
    def __init__(
        self,
        client: redis.Redis,
        plan: Plan,
        batching: Batching,
        report: SweepReport,
        *,
        slotted: bool = False,
        probe_ttl: bool = False,
        after_read: AfterRead | None = None,
    ):
        self.client, self.plan, self.batching, self.report = client, plan, batching, report
        self.slotted, self.probe_ttl, self.after_read = slotted, probe_ttl, after_read
        self.on_scanned: OnScanned = lambda n: None

    def run(self, on_scanned: OnScanned) -> None:
        self.on_scanned = on_scanned
        with Wire(self.client) as wire:
            self.wire = wire
            self._send_scan(b"0")
            wire.settle()  # returns once the last SCAN and everything it led to have replied

    # -- scan -------------------------------------------------------------------------------------
    def _send_scan(self, cursor: bytes) -> None:
        args: tuple = ("SCAN", cursor, "MATCH", self.plan.layout.pattern, "COUNT", self.batching.scan_count)
        if not self.plan.reads_values:
            # TYPE costs Redis a lookup per key (~0.4 us at 1M keys); a read finds non-strings anyway
            args += ("TYPE", "string")
        self.wire.send(args, self._on_scan)

    def _on_scan(self, reply) -> None:
        if isinstance(reply, ResponseError):
            raise reply
        cursor, keys = reply
        if cursor != b"0":
            self._send_scan(cursor)
        self.report.scanned += len(keys)
        if self.plan.reads_values:
            for group in self._read_chunks(keys):
                self._send_read(group)
        self.on_scanned(len(keys))

    # -- read -------------------------------------------------------------------------------------
    def _send_read(self, keys: list[bytes]) -> None:
        batch = _Read(keys, waiting=2 if self.probe_ttl else 1)
        self.wire.send(("MGET", *keys), lambda reply: self._on_values(batch, reply))
        if self.probe_ttl:
            self.wire.send(
                ("EVALSHA", NO_TTL_SHA, len(keys), *keys), lambda reply: self._on_ttl(batch, reply)
            )

    def _on_values(self, batch: _Read, reply) -> None:
        if _moving(reply):
            batch.moved = True
        else:
            batch.values = reply
            missing = [i for i, value in enumerate(reply) if value is None]
            if missing:  # rare: gone since SCAN, or not a string; one probe tells which
                batch.waiting += 1
                args = ("EVALSHA", EXISTING_SHA, len(missing), *(batch.keys[i] for i in missing))
                self.wire.send(args, lambda reply: self._on_existing(batch, missing, reply))
        self._arrived(batch)

    def _on_ttl(self, batch: _Read, reply) -> None:
        if _moving(reply):
            batch.moved = True
        else:
            batch.no_ttl = {i - 1 for i in reply}
        self._arrived(batch)

    def _on_existing(self, batch: _Read, missing: list[int], reply) -> None:
        if _moving(reply):
            batch.moved = True
        else:
            batch.foreign = {missing[i - 1] for i in reply}
        self._arrived(batch)

    def _arrived(self, batch: _Read) -> None:
        batch.waiting -= 1
        if batch.waiting == 0:
            self.report.scanned -= len(batch.foreign)  # SCAN counted them; they are not sessions
            self._act(batch.without_foreign())

    # -- decide and act ---------------------------------------------------------------------------
    def _act(self, batch: _Read) -> None:
        if batch.moved:
            self.report.moved += len(batch.keys)
            return
        if self.after_read is not None:
            self.after_read(batch.keys)
        actions = decide(self.plan, batch.keys, batch.values, batch.no_ttl, self.report)
        if self.plan.dry_run:
            self._count(actions, [1] * len(actions))
            return
        for chunk in self._act_chunks(actions):
            self._send_act(chunk)

    def _send_act(self, chunk: list[Action]) -> None:
        args: list = ["EVALSHA", CHECK_AND_ACT_SHA, len(chunk)]
        args.extend(action[0] for action in chunk)
        for _key, value, op, _reason in chunk:
            args.append(value)
            args.append(op)
        self.wire.send(tuple(args), lambda reply: self._on_acted(chunk, reply))

    def _on_acted(self, chunk: list[Action], reply) -> None:
        if _moving(reply):
            self.report.moved += len(chunk)
            return
        self._count(chunk, reply)

    def _count(self, actions: list[Action], codes: list[int]) -> None:
        # Counter tallies in C: one call per (reason, code) instead of one per key
        tally = Counter(zip([action[3] for action in actions], codes, strict=True))
        for (reason, code), n in tally.items():
            self.report.applied(reason, code, n)

    def _act_chunks(self, actions: list[Action]) -> Iterator[list[Action]]:
        limit, budget = self.batching.act_batch, self.batching.command_bytes
        return self._chunks(actions, limit, budget, key=lambda a: a[0], size=lambda a: len(a[0]) + len(a[1]))

    def _read_chunks(self, keys: list[bytes]) -> Iterator[list[bytes]]:
        return self._chunks(keys, self.batching.read_batch, self.batching.command_bytes, key=_same, size=len)

    def _chunks(self, items: list, limit: int, budget: int, key, size) -> Iterator[list]:
        """Even runs of at most `limit` items and about `budget` bytes; one slot each on Cluster,
        where a multi-key command must stay in one slot. Slicing, not a loop per item: this runs
        for every key of the sweep."""
        groups: Iterable[list] = [items]
        if self.slotted:
            by_slot: dict[int, list] = defaultdict(list)
            for item in items:
                by_slot[key_slot(key(item))].append(item)
            groups = by_slot.values()
        for group in groups:
            if not group:
                continue
            parts = max(-(-len(group) // limit), -(-sum(map(size, group)) // budget), 1)
            step = -(-len(group) // parts)
            for start in range(0, len(group), step):
                yield group[start : start + step]


def _same(item: bytes) -> bytes:
    return item


def _moving(reply) -> bool:
    """True for a Cluster redirect (the slot is moving); any other error reply is raised."""
    if isinstance(reply, ResponseError):
        if str(reply).startswith(_MOVING):
            return True
        raise reply
    return False
