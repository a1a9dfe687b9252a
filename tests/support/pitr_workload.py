"""A workload whose seconds a test knows, archived by the real archiver: for restores to a time.

Each step waits for a fresh second on Redis's own clock, writes, sets, overwrites and deletes keys
(no TTLs), and records DEBUG DIGEST and the key count; the archiver ships the incr file after each
step, and an AOF rewrite can start a second generation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis_maint.archive.archiver import Archiver, ArchiverOptions
from redis_maint.archive.state import ArchiveState
from tests.support.builders.sessions import session
from tests.support.services.redis import wait_aof_rewrite

AOF_ARGS = {"aof-timestamp-enabled": "yes"}
INSTANCE = "default"


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Workload:
    server: object
    store: object
    target: object
    archiver: Archiver
    instants: list[tuple[int, str, int]] = field(default_factory=list)  # (second, digest, dbsize)

    def client(self):
        return self.server.client()

    def fresh_second(self) -> int:
        """Wait for Redis's clock to enter a new second, early enough to write within it."""
        last = self.instants[-1][0] if self.instants else 0
        while True:
            sec, micros = self.client().time()
            if sec > last and micros < 400_000:
                return sec
            time.sleep(0.02)

    def step(self, i: int) -> None:
        c = self.client()
        sec = self.fresh_second()
        pipe = c.pipeline(transaction=False)
        for k in range(5):
            pipe.set(f"session:{i}-{k}", session(1000 * sec, f"org-{i % 3}"))
        pipe.incr("counter")
        pipe.hset("profile", f"f{i}", i)
        if i:
            pipe.delete(f"session:{i - 1}-0")
            pipe.set(f"session:{i - 1}-1", b"overwritten")
        pipe.execute()
        assert c.time()[0] == sec, "the step's writes straddled a second; the test's clock is too slow"
        digest = c.execute_command("DEBUG", "DIGEST").decode()
        self.instants.append((sec, digest, c.dbsize()))
        self.archiver.tick()


def run_workload(server, store, target, tmp_path, steps: int, rewrite_after: int | None = None) -> Workload:
    options = ArchiverOptions(
        instance=INSTANCE, data_dir=server.dir, staging_dir=tmp_path / "arch-staging", interval_s=0.2
    )
    archiver = Archiver(options, server.client(), target, ArchiveState(store, INSTANCE))
    w = Workload(server, store, target, archiver)
    archiver.tick()  # the first generation, before any write
    for i in range(steps):
        w.step(i)
        if i == rewrite_after:
            server.client().bgrewriteaof()
            wait_aof_rewrite(server.client())
            archiver.tick()  # a new generation: the rewrite's base
    archiver.tick()
    return w
