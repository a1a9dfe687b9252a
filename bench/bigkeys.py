"""Benchmark of `redis-maint keys big` against `redis-cli --bigkeys` and `redis-cli --memkeys`.

    .venv/bin/python bench/bigkeys.py                            # 200k keys, 3 rounds (quick)
    .venv/bin/python bench/bigkeys.py --keys 1000000 --repeat 3  # a 1M-key store, the size the README's figures use

One throwaway redis-server (no persistence: every tool only reads) is seeded once: mostly sessions
(~1 KB of JSON, 24 h TTL, 1% without a TTL), then rate limits, cached hashes, queues, a handful of
big keys and a few keys without a prefix. Every round runs the three tools in turn, rotating the
order (with 3 rounds each goes first, second and last once), each as a whole process, exactly as an
operator types it (our CLI's start-up included; its own scan time is reported apart). While a tool
runs, a separate process PINGs Redis every millisecond (bench/sweep.py's pinger); only the pings
sent while that tool ran count. A no-load baseline of the pinger runs in every round too.

Per tool: wall time and keys/s, the pinger's p50/p99/max, Redis's main-thread CPU, the tool's own
CPU, and Redis commands over 1 ms (SLOWLOG). Medians over the rounds, and the ratios of medians.
Goal: faster than `--memkeys`, with a lower p99. As a check, the largest key we report
must be the one `--memkeys` names biggest.

Both redis-cli modes are Debian's redis-cli: SCAN (COUNT 10) and, per 10 keys, a pipelined TYPE
round trip, then a pipelined size round trip (STRLEN/LLEN/… for --bigkeys, MEMORY USAGE for
--memkeys).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from statistics import median

import redis
import sweep  # bench/sweep.py: the throwaway server, session seeding, the pinger and its figures

ROOT = Path(__file__).resolve().parents[1]
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
TOOLS = ("ours", "memkeys", "bigkeys")
LABELS = {"ours": "redis-maint keys big", "memkeys": "redis-cli --memkeys", "bigkeys": "redis-cli --bigkeys"}
SESSION_SHARE = 0.90


# -- data ---------------------------------------------------------------------------------------------


def seed(port: int, n: int) -> dict:
    """n keys: 90% sessions through sweep.seed, the rest other prefixes, big keys, no-prefix keys."""
    sessions = int(n * SESSION_SHARE)
    sweep.seed(port, sessions, stale=0.0, no_ttl=0.01, size=1000)
    client = redis.Redis(port=port)
    rest = n - sessions
    kinds = {"ratelimit": rest * 6 // 10, "cache": rest * 3 // 10}
    kinds["queue"] = rest - kinds["ratelimit"] - kinds["cache"] - 20
    pipe = client.pipeline(transaction=False)
    for i in range(kinds["ratelimit"]):
        pipe.set(f"ratelimit:{i:08d}", i % 50, ex=7200)
        _flush(pipe)
    for i in range(kinds["cache"]):
        pipe.hset(f"cache:user:{i:08d}", mapping={f"field{f}": f"value-{i}-{f}" for f in range(20)})
        _flush(pipe)
    for i in range(kinds["queue"]):
        pipe.rpush(f"queue:{i:08d}", *(f"job-{i}-{j}" for j in range(50)))
        _flush(pipe)
    for i in range(5):  # big keys: what an incident is about
        pipe.set(f"cache:blob:{i}", b"b" * (200_000 * (i + 1)))
    pipe.hset("cache:huge-hash", mapping={f"f{j}": "v" * 20 for j in range(50_000)})
    pipe.rpush("queue:backlog", *(f"job-{j}" for j in range(100_000)))
    for i in range(13):
        pipe.set(f"orphan{i}", "x" * 100)
    pipe.execute()
    return {"keys": client.dbsize(), "sessions": sessions, **kinds, "big": 7, "no_prefix": 13}


def _flush(pipe) -> None:
    if len(pipe) >= 2000:
        pipe.execute()


# -- one tool, measured -------------------------------------------------------------------------------


def command(tool: str, port: int) -> list[str]:
    if tool == "ours":
        return [sys.executable, str(ROOT / "scheduler.py"), "keys", "big", "--json"]
    return [REDIS_CLI, "-p", str(port), f"--{tool}"]


def measure(tool: str, port: int, env: dict[str, str]) -> dict:
    admin = redis.Redis(port=port)
    admin.config_set("slowlog-log-slower-than", 1000)
    admin.config_set("slowlog-max-len", 100_000)
    ctx = mp.get_context("spawn")
    ready, stop, pings = ctx.Event(), ctx.Event(), ctx.Queue()
    pinger = ctx.Process(target=sweep.pinger, args=(port, ready, stop, pings))
    pinger.start()
    try:
        ready.wait(30)
        time.sleep(0.2)  # the pinger's steady pace
        admin.slowlog_reset()
        cpu0, child0 = sweep._redis_cpu(admin), _children_cpu()
        t0 = time.monotonic()
        done = subprocess.run(command(tool, port), capture_output=True, text=True, env=env, check=False)
        t1 = time.monotonic()
        cpu, child = sweep._redis_cpu(admin) - cpu0, _children_cpu() - child0
        slow = admin.slowlog_get(100_000)
    finally:
        stop.set()
    samples = pings.get()
    pinger.join()
    if done.returncode != 0:
        raise SystemExit(f"{LABELS[tool]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    figures = {
        "tool": tool,
        "seconds": round(t1 - t0, 3),
        "ping": sweep.latency(sweep.in_window(samples, t0, t1)),
        "redis_cpu_s": round(cpu, 3),
        "client_cpu_s": round(child, 3),
        "slow_commands_over_1ms": len(slow),
        "slow_by_command": dict(Counter(e["command"].split(b" ")[0].decode() for e in slow).most_common(3)),
    }
    figures.update(_findings(tool, done.stdout))
    return figures


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_MEMKEYS_BIGGEST = re.compile(r"Biggest\s+\S+ found '\"?(.*?)\"?' has (\d+) bytes")
_SCANNED = re.compile(r"Sampled (\d+) keys")


def _findings(tool: str, stdout: str) -> dict:
    """What each tool found: the keys it saw and its largest key (bytes for ours and --memkeys)."""
    if tool == "ours":
        report = json.loads(stdout)
        top = report["top"][0]
        return {
            "scanned": report["scanned"],
            "scan_seconds": report["duration_s"],
            "largest": (top["key"], top["bytes"]),
        }
    scanned = _SCANNED.search(stdout)
    out: dict = {"scanned": int(scanned.group(1)) if scanned else None}
    if tool == "memkeys":
        found = [(key, int(size)) for key, size in _MEMKEYS_BIGGEST.findall(stdout)]
        out["largest"] = max(found, key=lambda kv: kv[1]) if found else None
    return out


# -- rounds, medians, ratios --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-bigkeys-"))
    proc, port = sweep.start_redis(workdir, aof=False)
    try:
        t0 = time.monotonic()
        dataset = seed(port, args.keys)
        dataset["seed_seconds"] = round(time.monotonic() - t0, 1)
        dataset["used_memory_mib"] = round(redis.Redis(port=port).info("memory")["used_memory"] / 2**20)
        print(f"seeded {dataset['keys']:,} keys in {dataset['seed_seconds']} s", file=sys.stderr)
        env = {
            **os.environ,
            "REDIS_MAINT_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "REDIS_MAINT_HISTORY_URL": f"sqlite:///{workdir}/history.db",
            "REDIS_MAINT_LOG_FORMAT": "json",
        }
        runs, idle = [], []
        for round_no in range(args.repeat):
            idle.append(sweep.idle_latency(port, seconds=2.0))
            order = TOOLS[round_no % len(TOOLS) :] + TOOLS[: round_no % len(TOOLS)]
            for tool in order:
                figures = measure(tool, port, env)
                figures["round"] = round_no
                runs.append(figures)
                print(
                    f"round {round_no}: {LABELS[tool]:<22} {figures['seconds']:>7.2f} s, "
                    f"ping p99 {figures['ping']['p99_ms']} ms",
                    file=sys.stderr,
                )
        return {
            "machine": _machine(port),
            "dataset": dataset,
            "idle_ping": {k: _median([i[k] for i in idle]) for k in ("p50_ms", "p99_ms", "max_ms")},
            "runs": runs,
            "medians": medians(runs, dataset["keys"]),
            "settings": vars(args),
        }
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _machine(port: int) -> dict:
    info = redis.Redis(port=port).info("server")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis": info["redis_version"],
        "redis_cli": subprocess.run([REDIS_CLI, "--version"], capture_output=True, text=True).stdout.strip(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(median(values), 3) if values else None


def medians(runs: list[dict], keys: int) -> dict[str, dict]:
    out = {}
    for tool in TOOLS:
        mine = [r for r in runs if r["tool"] == tool]
        row = {
            "seconds": _median([r["seconds"] for r in mine]),
            "redis_cpu_s": _median([r["redis_cpu_s"] for r in mine]),
            "client_cpu_s": _median([r["client_cpu_s"] for r in mine]),
            "slow_commands_over_1ms": _median([r["slow_commands_over_1ms"] for r in mine]),
            **{k: _median([r["ping"][k] for r in mine]) for k in ("p50_ms", "p99_ms", "max_ms")},
        }
        row["keys_per_s"] = round(keys / row["seconds"]) if row["seconds"] else None
        if tool == "ours":
            row["scan_seconds"] = _median([r["scan_seconds"] for r in mine])
        out[tool] = row
    return out


# -- output -------------------------------------------------------------------------------------------


def render(results: dict) -> str:
    m, d = results["medians"], results["dataset"]
    lines = [
        f"{d['keys']:,} keys ({d['sessions']:,} sessions of ~1 KB, {d['used_memory_mib']} MiB used); "
        f"medians of {results['settings']['repeat']} rounds",
        f"{'tool':<22} {'seconds':>8} {'keys/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'Redis CPU':>9} {'tool CPU':>9} {'>1ms cmds':>9}",
    ]
    for tool in TOOLS:
        r = m[tool]
        lines.append(
            f"{LABELS[tool]:<22} {r['seconds']:>8.2f} {r['keys_per_s']:>9,} {r['p50_ms']:>7} {r['p99_ms']:>7} "
            f"{r['max_ms']:>7} {r['redis_cpu_s']:>8.2f}s {r['client_cpu_s']:>8.2f}s "
            f"{r['slow_commands_over_1ms']:>9.0f}"
        )
    idle = results["idle_ping"]
    lines.append(
        f"{'no load (pinger alone)':<22} {'':>8} {'':>9} {idle['p50_ms']:>7} {idle['p99_ms']:>7} {idle['max_ms']:>7}"
    )
    ours = m["ours"]
    lines.append(f"our scan alone (without the CLI's start-up): {ours['scan_seconds']:.2f} s")
    for ref in ("memkeys", "bigkeys"):
        theirs = m[ref]
        lines.append(
            f"vs {LABELS[ref]}: {theirs['seconds'] / ours['seconds']:.2f}x faster (ratio of medians); "
            f"p99 {ours['p99_ms']} vs {theirs['p99_ms']} ms"
        )
    goal = ours["seconds"] < m["memkeys"]["seconds"] and ours["p99_ms"] < m["memkeys"]["p99_ms"]
    lines.append(f"goal (faster than --memkeys with a lower p99): {'met' if goal else 'NOT met'}")
    lines.append(_largest_check(results["runs"]))
    lines.append("each run (seconds, ping p99 ms):")
    for r in results["runs"]:
        lines.append(f"  {r['round']} {LABELS[r['tool']]:<22} {r['seconds']:>7.2f} {r['ping']['p99_ms']:>7}")
    machine = results["machine"]
    lines.append(
        f"machine: {machine['cpus']} CPUs, Python {machine['python']}, Redis {machine['redis']}, "
        f"{machine['redis_cli']}, load average (1 min) at the end {machine['load_avg_1m']}"
    )
    return "\n".join(lines)


def _largest_check(runs: list[dict]) -> str:
    ours = {tuple(r["largest"]) for r in runs if r["tool"] == "ours"}
    theirs = {tuple(r["largest"]) for r in runs if r["tool"] == "memkeys" and r.get("largest")}
    if ours == theirs and len(ours) == 1:
        key, size = next(iter(ours))
        return f"largest key: both name {key!r} ({size:,} bytes)"
    return f"LARGEST KEY DIFFERS: ours {sorted(ours)}, --memkeys {sorted(theirs)}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--keys", type=int, default=200_000, help="keys seeded (default 200k; the README's figures: 1M)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    results = run(args)
    print(json.dumps(results, indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
