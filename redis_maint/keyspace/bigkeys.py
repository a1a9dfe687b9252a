"""The largest keys and the memory per prefix: SCAN, then MEMORY USAGE and PTTL in bounded batches.

Never KEYS. Each SCAN reply sends the next SCAN and one small read-only script call per batch of its
keys (MEMORY USAGE … SAMPLES K and PTTL for each), on one connection with the next step always
queued (sessions/wire.py), like the session sweep. A script call answers a whole batch in one reply:
pipelining two plain commands per key instead cost Redis ~8 us per key and this process a reply
parse per command (~35k keys/s here), the script ~3.5 us per key at ~150-230k keys/s.

The script takes its keys in ARGV and says `allow-cross-slot-keys`, so one call covers keys of many
slots on a Cluster node; `no-writes` lets it run when Redis is at maxmemory, which is when it is
needed. Each call does O(batch) small lookups (~0.3 ms), so no step blocks Redis for long.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import redis
from redis.exceptions import ResponseError

from redis_maint.errors import MaintenanceError
from redis_maint.idle_cpu import run_idle
from redis_maint.keyspace.report import BigKeysReport, Candidate, PrefixTable, TopHeap, TopKey, text
from redis_maint.progress import Progress
from redis_maint.redact import redact
from redis_maint.redis_conn import call, call_pass
from redis_maint.sessions.engine import Batching
from redis_maint.sessions.rules import load, org_name
from redis_maint.sessions.topology import Node, primaries
from redis_maint.sessions.wire import Wire

_BOUNDS = Batching()  # the sweep's measured bounds: SCAN COUNT 300, commands under 12 KB
DEFAULT_BATCH = 100  # keys per script call: ~0.3 ms of server time
ORG_HEAD_BYTES = 64 * 1024  # how much of a large session is read to find its organisation

SIZES = """#!lua flags=no-writes,allow-cross-slot-keys
local samples = ARGV[1]
local out = {}
for i = 2, #ARGV do
  out[2 * i - 3] = redis.call('MEMORY', 'USAGE', ARGV[i], 'SAMPLES', samples) or -1
  out[2 * i - 2] = redis.call('PTTL', ARGV[i])
end
return out
"""
# A Cluster slot moving under the scan: those keys are skipped (counted as moved).
_MOVING = ("MOVED", "ASK", "TRYAGAIN")
_NON_LOCAL = "non local key"

AfterScan = Callable[[list[bytes]], None]


@dataclass(frozen=True)
class _Options:
    pattern: str
    samples: int
    scan_count: int
    batch: int
    command_bytes: int
    deadline: float | None  # time.monotonic() past which no further SCAN is sent
    after_scan: AfterScan | None


def scan_big_keys(
    client: redis.Redis,
    *,
    pattern: str = "*",
    top: int = 20,
    samples: int = 5,
    time_budget_s: float | None = None,
    scan_count: int = _BOUNDS.scan_count,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    organisation_field: str = "organisationId",
    session_prefix: str = "session:",
    url: str | None = None,
    timeout: timedelta = timedelta(seconds=5),
    idle_cpu: bool = True,
    after_scan: AfterScan | None = None,
) -> BigKeysReport:
    """Scan the keys matching `pattern` on every primary; the `top` largest and the bytes per prefix.

    Read-only. `time_budget_s` stops sending SCANs once spent (the report says `complete: False`;
    at least one SCAN batch is always sized);
    keys that vanish between SCAN and MEMORY USAGE are skipped and counted. `client` must return
    bytes (no decode_responses). `url` is the client's URL, needed only to reach a Cluster's other
    primaries (by default it is rebuilt from the client). With `idle_cpu` the scan runs at
    SCHED_IDLE in a thread of its own (redis_maint/idle_cpu.py). `after_scan(keys)` runs between a
    SCAN reply and the sizing of its keys (a seam for tests)."""
    if top < 1 or samples < 1 or scan_count < 1 or batch < 1:
        raise ValueError("top, samples, scan_count and batch must be at least 1")
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("scan_big_keys needs a client that returns bytes (decode_responses=False)")
    url = url or _url_of(client)
    t0 = time.monotonic()
    opts = _Options(
        pattern,
        samples,
        scan_count,
        batch,
        _BOUNDS.command_bytes,
        None if time_budget_s is None else t0 + time_budget_s,
        after_scan,
    )
    report = BigKeysReport()
    heap, table = TopHeap(top), PrefixTable(session_prefix.encode())
    progress = progress or Progress()

    def scan_nodes() -> list[Node]:
        with primaries(client, url, timeout) as (nodes, _slotted):
            report.nodes = len(nodes)
            total = sum(call(url, n.client.dbsize) for n in nodes) if pattern == "*" else None
            progress.start(total, "scanning keys", "keys")
            for index, node in enumerate(nodes):
                if index and opts.deadline is not None and time.monotonic() >= opts.deadline:
                    report.complete = False  # spent: the nodes left are not scanned (the first always is)
                    break
                scan = _NodeScan(node.client, index, opts, report, heap, table, progress.advance)
                _run_on(node, url, scan, lambda: _restart_point(report, heap, table))
            report.top = _describe(heap.largest(), nodes, url, session_prefix.encode(), organisation_field)
        return nodes

    try:
        run_idle(scan_nodes, name="keys-big") if idle_cpu else scan_nodes()
    finally:
        progress.finish()
    report.by_prefix = table.to_rows()
    report.duration_s = time.monotonic() - t0
    return report


def _run_on(node: Node, url: str, scan: _NodeScan, restart_point: Callable[[], Callable[[], None]]) -> None:
    try:
        call_pass(url, scan.run, restart_point=restart_point)
    except ResponseError as exc:
        raise MaintenanceError(
            f"Redis node {node.name} refused a scan command: {redact(str(exc))}; "
            "nothing was changed. Check the node's state (LOADING, BUSY) and its log, then try again"
        ) from None


def _restart_point(*tallies: object) -> Callable[[], None]:
    """What the scan has counted so far (the report's figures, the top keys, the prefix table), and a
    callable that puts it back: a node's scan that starts again after a Sentinel failover counts its
    keys once. Both tables are bounded, so the copy is small."""
    saved = copy.deepcopy([vars(t) for t in tallies])

    def restart() -> None:
        for tally, state in zip(tallies, copy.deepcopy(saved), strict=True):
            vars(tally).clear()
            vars(tally).update(state)

    return restart


class _NodeScan:
    """One node: SCAN replies send the next SCAN and the sizing of their keys."""

    def __init__(
        self,
        client: redis.Redis,
        index: int,
        opts: _Options,
        report: BigKeysReport,
        heap: TopHeap,
        table: PrefixTable,
        tick: Callable[[int], None],
    ):
        self.client, self.index, self.opts = client, index, opts
        self.report, self.heap, self.table, self.tick = report, heap, table, tick

    def run(self) -> None:
        with Wire(self.client) as wire:
            self.wire = wire
            self._send_scan(b"0")
            wire.settle()

    def _send_scan(self, cursor: bytes) -> None:
        args: tuple = ("SCAN", cursor, "COUNT", self.opts.scan_count)
        if self.opts.pattern != "*":
            args += ("MATCH", self.opts.pattern)
        self.wire.send(args, self._on_scan)

    def _on_scan(self, reply) -> None:
        if isinstance(reply, ResponseError):
            raise reply
        cursor, keys = reply
        if cursor != b"0":
            if self.opts.deadline is not None and time.monotonic() >= self.opts.deadline:
                self.report.complete = False
            else:
                self._send_scan(cursor)
        self.report.scanned += len(keys)
        if self.opts.after_scan is not None and keys:
            self.opts.after_scan(keys)
        for chunk in _chunks(keys, self.opts.batch, self.opts.command_bytes):
            self.wire.send(
                ("EVAL", SIZES, 0, self.opts.samples, *chunk),
                lambda reply, chunk=chunk: self._on_sizes(chunk, reply),
            )
        self.tick(len(keys))

    def _on_sizes(self, keys: list[bytes], reply) -> None:
        if isinstance(reply, ResponseError):
            if str(reply).startswith(_MOVING) or _NON_LOCAL in str(reply):
                self.report.moved += len(keys)
                return
            raise reply
        add, offer, heap, node = self.table.add, self.heap.offer, self.heap, self.index
        vanished = 0
        pairs = iter(reply)
        # this loop runs for every key: locals, and the heap only for keys above its floor
        for key, size, pttl in zip(keys, pairs, pairs, strict=True):
            if size < 0 or pttl == -2:
                vanished += 1
                continue
            add(key, size, pttl == -1)
            if size >= heap.floor:
                offer(size, key, pttl, node)
        self.report.vanished += vanished


def _chunks(keys: list[bytes], limit: int, budget: int) -> list[list[bytes]]:
    """Even runs of at most `limit` keys and about `budget` bytes (long keys make smaller runs)."""
    if not keys:
        return []
    parts = max(-(-len(keys) // limit), -(-sum(map(len, keys)) // budget), 1)
    step = -(-len(keys) // parts)
    return [keys[i : i + step] for i in range(0, len(keys), step)]


def _describe(
    found: list[Candidate], nodes: list[Node], url: str, session_prefix: bytes, org_field: str
) -> list[TopKey]:
    """The top keys with their type and, for sessions, their organisation: one pipeline per node
    over N keys only. A key gone since it was measured is left out."""
    out: list[TopKey] = []
    for index, node in enumerate(nodes):
        mine = [c for c in found if c.node == index]
        if not mine:
            continue
        pipe = node.client.pipeline(transaction=False)
        for c in mine:
            pipe.type(c.key)
            pipe.getrange(c.key, 0, ORG_HEAD_BYTES - 1)
        replies = call(url, pipe.execute, raise_on_error=False)
        for c, kind, head in zip(mine, replies[0::2], replies[1::2], strict=True):
            if isinstance(kind, Exception) or kind in (b"none", "none"):
                continue
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            is_session = kind == "string" and c.key.startswith(session_prefix)
            org = _org(head, org_field) if is_session and isinstance(head, bytes) else None
            out.append(
                TopKey(text(c.key), kind, c.size, None if c.pttl < 0 else round(c.pttl / 1000, 3), org)
            )
    return sorted(out, key=lambda k: (-k.bytes, k.key))


def _org(head: bytes, field: str) -> str | None:
    """The organisation of a session from its value (or its first 64 KiB, for a large one)."""
    if len(head) < ORG_HEAD_BYTES:
        doc = load(head)
        return org_name(doc.get(field)) if doc is not None else None
    found = re.search(rb'"%s"\s*:\s*("(?:[^"\\]|\\.)*"|[-\w.]+)' % re.escape(field.encode()), head)
    if found is None:
        return None
    doc = load(b'{"v":%s}' % found.group(1))
    return org_name(doc.get("v")) if doc is not None else None


def _url_of(client: redis.Redis) -> str:
    """A URL for the client's own server (to find a Cluster's primaries); it never leaves this process
    unmasked (errors go through redact_url)."""
    from urllib.parse import quote

    kw = client.connection_pool.connection_kwargs
    if kw.get("path"):
        return f"unix://{kw['path']}?db={kw.get('db', 0) or 0}"
    scheme = (
        "rediss" if kw.get("ssl") or "SSL" in client.connection_pool.connection_class.__name__ else "redis"
    )
    user, password = kw.get("username"), kw.get("password")
    auth = ""
    if password:
        auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
    host = kw.get("host", "localhost")
    return f"{scheme}://{auth}{host}:{kw.get('port', 6379)}/{kw.get('db', 0) or 0}"
