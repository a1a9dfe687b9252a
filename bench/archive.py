"""Benchmark of the AOF archiver under a session-store write load: archive lag p99, CPU, peak RSS.

    .venv/bin/python bench/archive.py                  # 60 s at 5,000 writes/s, local target, interval 5s
    .venv/bin/python bench/archive.py --seconds 20     # quicker
    .venv/bin/python bench/archive.py --s3             # the target is moto's S3 server (over HTTP)

It starts a real redis-server (appendonly yes, aof-timestamp-enabled yes, appendfsync everysec), a
writer process issuing SET session:<n> <~1 KB JSON> EX 86400 at the requested rate (pipelined in
10 ms batches, paced by the clock), and the archiver as the operator runs it, `redis-maint archive run`
(the daemon's loop, in the foreground) at the default interval. Every 0.5 s it samples the lag as
`archive status` defines it: Redis's TIME minus the newest instant safe in the archive (the history
store's safe_until). CPU is the archiver process's utime+stime over the measured period (after its
first segment) divided by the wall time; peak RSS is its VmHWM. At the end it checks that the
archived segments concatenate to the incr file.
Goals: lag p99 <= interval + 2 s; CPU <= 5% of one core; RSS bounded (no file read whole).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.services.moto import MotoServer  # noqa: E402
from tests.support.services.redis import RedisServer  # noqa: E402

WRITER = r"""
import json, os, sys, time, redis
port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
r = redis.Redis(port=port)
batch = max(rate // 100, 1)
n, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    pipe = r.pipeline(transaction=False)
    for _ in range(batch):
        value = json.dumps({"sub": f"user-{n}", "organisationId": f"org-{n % 50}", "createdAt": int(time.time()),
                            "claims": os.urandom(420).hex()})
        pipe.set(f"session:{n}", value, ex=86400)
        n += 1
    pipe.execute()
    due = start + n / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(json.dumps({"writes": n, "seconds": time.monotonic() - start}))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=int, default=5000, help="writes per second")
    ap.add_argument("--interval", default="5s", help="archive.interval")
    ap.add_argument("--s3", action="store_true", help="archive to moto's S3 server instead of a local dir")
    ap.add_argument(
        "--no-rewrite",
        action="store_true",
        help="auto-aof-rewrite-percentage 0: the steady state, no new generations",
    )
    args = ap.parse_args()

    from redis_maint.archive.state import ArchiveState
    from redis_maint.archive.status import lag_seconds
    from redis_maint.durations import parse_duration
    from redis_maint.history.runs import HistoryStore

    interval_s = parse_duration(args.interval).total_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        tmp = Path(tmp)
        server = RedisServer(
            dir=tmp / "redis", args={"aof-timestamp-enabled": "yes", "maxmemory": "1gb"}
        ).start()
        moto = MotoServer().start() if args.s3 else None
        env = {
            **os.environ,
            "REDIS_MAINT_REDIS_URL": server.url,
            "REDIS_MAINT_DATA_DIR": str(server.dir),
            "REDIS_MAINT_HISTORY_URL": f"sqlite:///{tmp}/history.db",
            "REDIS_MAINT_STATE_DIR": str(tmp / "state"),
            "REDIS_MAINT_ARCHIVE__INTERVAL": args.interval,
            "REDIS_MAINT_LOG_LEVEL": "WARNING",
            "REDIS_MAINT_TARGET__URI": "s3://bench-archive/redis" if moto else str(tmp / "target"),
        }
        if moto:
            env.update(moto.env())
            import boto3

            os.environ.update(moto.env())
            boto3.client("s3").create_bucket(Bucket="bench-archive")
        store = HistoryStore(env["REDIS_MAINT_HISTORY_URL"])
        state = ArchiveState(store, "default")
        client = server.client()
        archiver = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), "archive", "run"],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while state.current() is None or state.current().safe_until is None:
                if time.monotonic() > deadline or archiver.poll() is not None:
                    raise SystemExit(f"the archiver did not start: {archiver.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(server.port), str(args.rate), str(args.seconds)],
                stdout=subprocess.PIPE,
            )
            cpu0, t0 = cpu_seconds(archiver.pid), time.monotonic()
            rss0 = peak_rss_mib(archiver.pid, "VmRSS")
            lags: list[float] = []
            while writer.poll() is None:
                seconds, micros = client.time()
                lag = lag_seconds(state.generations(), _at(seconds + micros / 1e6))
                if lag is not None:
                    lags.append(lag)
                time.sleep(0.5)
            cpu1, t1 = cpu_seconds(archiver.pid), time.monotonic()
            wrote = json.loads(writer.stdout.read())
            rss = peak_rss_mib(archiver.pid)
            size = _incr(server).stat().st_size
            deadline = time.monotonic() + 3 * interval_s + 30
            while state.current().offset < size and time.monotonic() < deadline:
                time.sleep(0.2)
            gen = state.current()
            segments = state.segments(gen.generation)
        finally:
            archiver.send_signal(signal.SIGTERM)
            archiver.wait(30)
            server.stop()
            if moto:
                moto.stop()
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
            "rate_target": args.rate,
            "writes_per_s": round(wrote["writes"] / wrote["seconds"]),
            "seconds": round(wrote["seconds"], 1),
            "interval_s": interval_s,
            "target": "s3 (moto server)" if moto else "local dir",
            "aof_mib": round(size / 2**20, 1),
            "segments_in_current_generation": len(segments),
            "generations": [g.reason for g in state.generations()],
            "archived_to_end": gen.offset == size,
            "lag_s": {
                "p50": round(statistics.median(lags), 2),
                "p99": round(percentile(lags, 99), 2),
                "max": round(max(lags), 2),
                "samples": len(lags),
                "goal_p99": interval_s + 2,
            },
            "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "cpu_goal_pct": 5,
            "rss_before_load_mib": round(rss0, 1),
            "peak_rss_mib": round(rss, 1),
        }
        print(json.dumps(result, indent=2))


def _at(unix: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix, UTC)


def _incr(server: RedisServer) -> Path:
    manifest = (server.dir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    name = [line.split()[1] for line in manifest.splitlines() if line.endswith("type i")][-1]
    return server.dir / "appendonlydir" / name


if __name__ == "__main__":
    main()
