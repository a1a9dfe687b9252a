"""A restore to a time from the AOF archive against a plain restore of a backup, end to end.

    .venv/bin/python bench/pitr_restore.py                 # 20,000 sessions of ~400 B, 3 rounds
    .venv/bin/python bench/pitr_restore.py --keys 200000

A real redis-server (appendonly yes, aof-timestamp-enabled yes) gets half the sessions, the
archiver starts its generation, an AOF rewrite starts a second one, the other half is written
across a few seconds with the archiver ticking, and a backup is taken (local target, no container
check). Then, in alternating order, whole CLI processes: `backups restore ID --target DIR` (download,
verify, lay out) and `backups restore --to-time T --target DIR` (download, assemble, truncate in a
container, load in a throwaway redis-server, lay out) for T = the middle of the increments and
`latest`, and `latest` once more against a history store with no archive rows (a lost history: the
archive is read from the target alone). Medians of wall time per command; the PITR JSON's
durations_s parts beside it. A plain restore proves nothing by loading: add the restore drill's load
for a like-for-like figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli_runs import timed_json  # noqa: E402

from redis_maint.archive.archiver import Archiver, ArchiverOptions  # noqa: E402
from redis_maint.archive.state import ArchiveState  # noqa: E402
from redis_maint.history.runs import HistoryStore  # noqa: E402
from redis_maint.storage import open_target  # noqa: E402
from tests.support.services.docker import CHECK_IMAGE  # noqa: E402
from tests.support.services.redis import RedisServer, wait_aof_rewrite  # noqa: E402


def seed(client, start: int, n: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.set(f"session:{i:08d}", json.dumps({"createdAt": i, "organisationId": "o", "pad": "x" * 340}))
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pitr-"))
    server = RedisServer(dir=root / "redis", args={"aof-timestamp-enabled": "yes"}).start()
    env = {
        **os.environ,
        "REDIS_MAINT_REDIS_URL": server.url,
        "REDIS_MAINT_DATA_DIR": str(server.dir),
        "REDIS_MAINT_HISTORY_URL": f"sqlite:///{root}/history.db",
        "REDIS_MAINT_TARGET__URI": str(root / "backups"),
        "REDIS_MAINT_STATE_DIR": str(root / "state"),
        "REDIS_MAINT_CHECK_IMAGE": CHECK_IMAGE,
        "REDIS_MAINT_DOCKER__PULL_POLICY": "never",
        "REDIS_MAINT_DOCKER__SNAPSHOT_DIR": str(root / "check"),
        "REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD": "false",
        "REDIS_MAINT_JOBS__BACKUP__STAGING_DIR": str(root / "staging"),
        "REDIS_MAINT_LOG_FORMAT": "json",
    }
    try:
        client = server.client()
        store = HistoryStore(env["REDIS_MAINT_HISTORY_URL"])
        options = ArchiverOptions("default", server.dir, root / "arch-staging", interval_s=0.5)
        archiver = Archiver(
            options, client, open_target(str(root / "backups")), ArchiveState(store, "default")
        )
        seed(client, 0, args.keys // 2)
        archiver.tick()
        client.bgrewriteaof()
        wait_aof_rewrite(client)
        archiver.tick()
        half, steps = args.keys // 2, 4
        mid = None
        for s in range(steps):
            seed(client, half + s * half // steps, half // steps)
            archiver.tick()
            if s == steps // 2 - 1:
                mid = client.time()[0]
            time.sleep(1.0)
        archiver.tick()
        archiver.close()
        _, backup = timed_json(env, "run", "backup")
        backup_id = backup["summary"]["backup_id"]
        when = datetime.fromtimestamp(mid, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lost = {**env, "REDIS_MAINT_HISTORY_URL": f"sqlite:///{root}/history-without-archive-rows.db"}
        plans = {
            "plain restore (backup)": ([backup_id], env),
            f"--to-time {when} (mid)": (["--to-time", when], env),
            "--to-time latest": (["--to-time", "latest"], env),
            "--to-time latest, read from the target": (["--to-time", "latest"], lost),
        }
        times: dict[str, list[float]] = {k: [] for k in plans}
        parts: dict[str, list[dict]] = {k: [] for k in plans}
        for r in range(args.rounds):
            order = list(plans)[r % len(plans) :] + list(plans)[: r % len(plans)]
            for name in order:
                out = root / f"restore-{r}-{len(times[name])}-{abs(hash(name))}"
                plan_args, plan_env = plans[name]
                took, body = timed_json(plan_env, "backups", "restore", *plan_args, "--target", str(out))
                times[name].append(took)
                parts[name].append(body.get("durations_s") or {})
        size = sum(f.stat().st_size for f in (server.dir / "appendonlydir").iterdir())
        print(
            f"dataset: {client.dbsize():,} keys, appendonlydir {size / 2**20:.1f} MiB; rounds: {args.rounds}"
        )
        for name in plans:
            med = statistics.median(times[name])
            detail = ""
            if parts[name][0]:
                keys = ("download", "truncate", "prove", "total")
                detail = (
                    "  (in-process medians: "
                    + ", ".join(f"{k} {statistics.median(p[k] for p in parts[name]):.2f}s" for k in keys)
                    + ")"
                )
            print(f"{name:42} {med:6.2f} s wall{detail}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
