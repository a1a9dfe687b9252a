"""RTO of a restore to a time (the recovery-time goal): a 1 GiB dataset with 1 h of increments, end to end.

    .venv/bin/python bench/pitr_rto.py                                  # 1 GiB, 60 min at 100 writes/s, 3 rounds
    .venv/bin/python bench/pitr_rto.py --dataset-mib 64 --increments-min 5 --rounds 1   # a quick check
    .venv/bin/python bench/pitr_rto.py --s3                             # backups and archive on moto's S3 server

1. A real redis-server (appendonly yes, aof-timestamp-enabled yes, no automatic rewrites) gets
   session-sized values (~1 KB JSON, EX 86400) until `used_memory` reaches --dataset-mib; a
   BGREWRITEAOF makes that the AOF base (RDB preamble), as a nightly rewrite would.
2. The nightly backup: `redis-maint run backup` (dump.rdb + appendonlydir/, local dir or S3; no
   container check, it is not what is measured).
3. The archiver starts its generation (ships the base), then 1 h of increments are written: the VOLUME
   of --increments-min minutes at --rate writes/s (60% refreshes of existing sessions, 30% new ones,
   10% sign-outs: DEL), written as fast as this machine allows while the archiver ticks every second.
   `#TS` annotations cannot be faked: they carry the real seconds the writes took, so `--to-time` names
   one of those seconds (the middle one) and `latest`.
4. Whole CLI processes, alternating order per round: `backups restore ID --target DIR` (the nightly
   backup: download, verify sha256, lay out) against `backups restore --to-time T --target DIR`
   (download base + segments, assemble, truncate in a container, prove by loading in a throwaway
   redis-server in a container, lay out). Medians of wall time; the to-time run's own parts
   (durations_s: download, truncate, prove) beside them. Each DIR is removed after its run.

Why 100 writes/s: a 1 GiB store of ~1 KB sessions holds ~900k sessions; 100 writes/s is 360k session
writes an hour, every session refreshed about every 2.5 h (a 1 h access-token lifetime with users active
part of the day). It makes ~400 MB of increments an hour: 40% of the dataset, a heavy hour.
The proof server loads the whole dataset: docker.mem_limit is raised to 4g here (the 1g default is
too small for a 1 GiB dataset; an operator restoring one has to raise it too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
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
from tests.support.services.moto import MotoServer  # noqa: E402
from tests.support.services.redis import RedisServer, wait_aof_rewrite  # noqa: E402

BUCKET = "bench-rto"
WRITER = r"""
import json, os, random, sys, time, redis
port, start, total, existing = (int(a) for a in sys.argv[1:5])
r = redis.Redis(port=port)
rnd = random.Random(16)
def value(n):
    return json.dumps({"sub": f"user-{n}", "organisationId": f"org-{n % 50}", "createdAt": int(time.time()),
                       "claims": os.urandom(420).hex()})
nxt, done, t0 = start, 0, time.monotonic()
while done < total:
    pipe = r.pipeline(transaction=False)
    for _ in range(min(1000, total - done)):
        roll = rnd.random()
        if roll < 0.6:
            n = rnd.randrange(existing)
            pipe.set(f"session:{n}", value(n), ex=86400)
        elif roll < 0.9:
            pipe.set(f"session:{nxt}", value(nxt), ex=86400)
            nxt += 1
        else:
            pipe.delete(f"session:{rnd.randrange(existing)}")
        done += 1
    pipe.execute()
print(json.dumps({"writes": done, "seconds": time.monotonic() - t0, "next": nxt}))
"""


def build(client, target_bytes: int) -> int:
    """Session-sized values until used_memory reaches target_bytes; the number of keys."""
    n = 0
    while client.info("memory")["used_memory"] < target_bytes:
        pipe = client.pipeline(transaction=False)
        for _ in range(20_000):
            value = json.dumps(
                {"sub": f"user-{n}", "organisationId": f"org-{n % 50}", "createdAt": int(time.time()),
                 "claims": os.urandom(420).hex()}
            )  # fmt: skip
            pipe.set(f"session:{n}", value, ex=86400)
            n += 1
        pipe.execute()
    return n


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset-mib", type=int, default=1024, help="Redis used_memory to reach")
    ap.add_argument("--increments-min", type=float, default=60, help="minutes of increments (volume)")
    ap.add_argument("--rate", type=int, default=100, help="writes/s whose volume the increments have")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--s3", action="store_true", help="backups and archive on moto's S3 server (over HTTP)")
    ap.add_argument("--keep", action="store_true", help="leave the temp dir (printed) in place")
    args = ap.parse_args()
    logging.getLogger("redis_maint").setLevel(logging.ERROR)  # the in-process archiver's notices

    base_dir = Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    free = shutil.disk_usage(base_dir).free
    need = args.dataset_mib * 2**20 * 9
    print(f"free on {base_dir}: {free / 2**30:.1f} GiB (needs ~{need / 2**30:.1f} GiB)", flush=True)
    if free < need:
        raise SystemExit("not enough free disk for this dataset")
    root = Path(tempfile.mkdtemp(prefix="bench-rto-", dir=base_dir))
    server = RedisServer(
        dir=root / "redis",
        args={
            "aof-timestamp-enabled": "yes",
            "maxmemory": "0",
            "auto-aof-rewrite-percentage": "0",
            "aof-rewrite-incremental-fsync": "yes",
        },
    ).start()
    moto = MotoServer().start() if args.s3 else None
    target_uri = f"s3://{BUCKET}/redis" if moto else str(root / "backups")
    env = {
        **os.environ,
        "REDIS_MAINT_REDIS_URL": server.url,
        "REDIS_MAINT_DATA_DIR": str(server.dir),
        "REDIS_MAINT_HISTORY_URL": f"sqlite:///{root}/history.db",
        "REDIS_MAINT_TARGET__URI": target_uri,
        "REDIS_MAINT_STATE_DIR": str(root / "state"),
        "REDIS_MAINT_CHECK_IMAGE": CHECK_IMAGE,
        "REDIS_MAINT_DOCKER__PULL_POLICY": "never",
        "REDIS_MAINT_DOCKER__SNAPSHOT_DIR": str(root / "check"),
        "REDIS_MAINT_DOCKER__MEM_LIMIT": "4g",
        "REDIS_MAINT_DOCKER__TIMEOUT": "30m",
        "REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD": "false",
        "REDIS_MAINT_JOBS__BACKUP__STAGING_DIR": str(root / "staging"),
        "REDIS_MAINT_LOG_FORMAT": "json",
        "REDIS_MAINT_LOG_LEVEL": "WARNING",
    }
    if moto:
        env.update(moto.env())
        os.environ.update(moto.env())
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
    archiver = None
    try:
        client = server.client(socket_timeout=120)
        t = time.monotonic()
        keys = build(client, args.dataset_mib * 2**20)
        client.bgrewriteaof()
        wait_aof_rewrite(client, timeout=600)
        built = {
            "keys": keys,
            "used_memory_mib": mib(client.info("memory")["used_memory"]),
            "appendonlydir_mib": mib(du(server.dir / "appendonlydir")),
            "build_s": round(time.monotonic() - t, 1),
        }
        print(f"dataset: {json.dumps(built)}", flush=True)

        took, backup = timed_json(env, "run", "backup")
        backup_id = backup["summary"]["backup_id"]
        print(
            f"backup {backup_id}: {backup['summary'].get('bytes', 0) / 2**20:.0f} MiB in {took:.1f} s",
            flush=True,
        )

        store = HistoryStore(env["REDIS_MAINT_HISTORY_URL"])
        state = ArchiveState(store, "default")
        options = ArchiverOptions("default", server.dir, root / "arch-staging", interval_s=1.0)
        archiver = Archiver(options, client, open_target(target_uri), state)
        t = time.monotonic()
        archiver.tick()  # the first generation: ships the 1 GiB base
        base_s = time.monotonic() - t
        incr = increments(server, archiver, keys, round(args.increments_min * 60 * args.rate))
        incr["first_generation_base_s"] = round(base_s, 1)
        print(f"increments: {json.dumps(incr)}", flush=True)
        archiver.close()
        archiver = None

        seconds = incr["seconds_with_writes"]
        mid = seconds[len(seconds) // 2]
        when = datetime.fromtimestamp(mid, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        plans = {
            "plain restore (nightly backup)": [backup_id],
            f"--to-time {when} (mid)": ["--to-time", when],
            "--to-time latest": ["--to-time", "latest"],
        }
        results = measure(env, root, plans, args.rounds)
        report(args, built, incr, results, moto is not None, du(root))
    finally:
        if archiver is not None:
            archiver.close()
        server.stop()
        if moto:
            moto.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def increments(server: RedisServer, archiver: Archiver, existing: int, writes: int) -> dict:
    """`writes` commands as fast as they go, the archiver ticking every second; what the archive holds."""
    client = server.client()
    t0 = time.monotonic()
    before = client.info("persistence")["aof_current_size"]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(server.port), str(existing), str(writes), str(existing)],
        stdout=subprocess.PIPE,
    )
    ticks = 0
    while writer.poll() is None:
        time.sleep(1.0)
        archiver.tick()
        ticks += 1
    out = json.loads(writer.stdout.read())
    time.sleep(1.1)  # the last second's annotation is written; then everything is archived
    archiver.tick()
    gen = archiver.state.current()
    segs = archiver.state.segments(gen.generation)
    stamps = sorted({s for seg in segs for s in (seg.first_ts, seg.last_ts) if s is not None})
    return {
        "writes": out["writes"],
        "write_s": round(out["seconds"], 1),
        "writes_per_s": round(out["writes"] / out["seconds"]),
        "incr_mib": mib(client.info("persistence")["aof_current_size"] - before),
        "archived_mib": mib(sum(s.length for s in segs)),
        "segments": len(segs),
        "ticks": ticks + 1,
        "seconds_with_writes": list(range(stamps[0], stamps[-1] + 1)) if stamps else [],
        "took_s": round(time.monotonic() - t0, 1),
        "keys_after": client.dbsize(),
    }


def measure(env: dict, root: Path, plans: dict[str, list[str]], rounds: int) -> dict[str, dict]:
    results: dict[str, dict] = {k: {"wall": [], "parts": [], "keys": None} for k in plans}
    for r in range(rounds):
        order = list(plans)[r % len(plans) :] + list(plans)[: r % len(plans)]
        for name in order:
            out = root / f"restore-{r}"
            took, body = timed_json(env, "backups", "restore", *plans[name], "--target", str(out))
            shutil.rmtree(out, ignore_errors=True)
            summary = body  # `backups restore --json` prints the restore's result
            results[name]["wall"].append(took)
            results[name]["parts"].append(summary.get("durations_s") or {})
            results[name]["keys"] = (summary.get("proof") or {}).get("keys")
            print(
                f"round {r + 1} {name}: {took:.1f} s {json.dumps(summary.get('durations_s') or {})}",
                flush=True,
            )
    return results


def report(args, built: dict, incr: dict, results: dict, s3: bool, disk: int) -> None:
    rows = {}
    for name, res in results.items():
        row = {
            "wall_median_s": round(statistics.median(res["wall"]), 1),
            "wall_s": [round(w, 1) for w in res["wall"]],
        }
        if res["parts"] and res["parts"][0]:
            row["parts_median_s"] = {
                k: round(statistics.median(p[k] for p in res["parts"]), 1) for k in res["parts"][0]
            }
            row["proof_keys"] = res["keys"]
        rows[name] = row
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}",
                "target": "s3 (moto server over HTTP)" if s3 else "local dir",
                "dataset": built,
                "increments": {k: v for k, v in incr.items() if k != "seconds_with_writes"}
                | {"rate_modelled": args.rate, "minutes_modelled": args.increments_min},
                "rounds": args.rounds,
                "restores": rows,
                "disk_used_at_end_mib": mib(disk),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
