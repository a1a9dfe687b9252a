"""Benchmark of the session sweep against the naive loop, on a throwaway local redis-server.

    python bench/sweep.py                      # 1M sessions (~400 bytes, half stale), naive on 50k
    python bench/sweep.py --sessions 200000    # smaller
    python bench/sweep.py --no-ttl 0.01        # 1% of sessions without TTL (the sweep probes TTLs)
    python bench/sweep.py --compare-cpu        # also our sweep at normal CPU priority, in turn
    python bench/sweep.py --floor              # also the engine with unchecked UNLINKs (racy; a reference)

Each approach runs --repeat times (default 3), in alternating order, and the medians are reported:
the hosts here are shared, and one run can be a third slower than the next.

For each approach it reports sessions examined per second, what a concurrent client that PINGs Redis
every millisecond saw (p50/p99/max), the sweeping process's peak RSS, and how many Redis commands took
longer than 1 ms (SLOWLOG). Each approach runs in its own process, so the RSS figures are its own.
The naive loop (KEYS, then GET and DEL per key) runs on a smaller sample: at ~6k keys/s, 1M would take
minutes, and its KEYS would block Redis for the whole key space at once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


# -- the server ---------------------------------------------------------------------------------------


def start_redis(workdir: Path, aof: bool) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        shutil.which("redis-server") or "/usr/bin/redis-server",
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
        "--appendonly", "yes" if aof else "no", "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- data ---------------------------------------------------------------------------------------------


def session_value(i: int, created_ms: int, size: int) -> bytes:
    head = (
        f'{{"createdAt":{created_ms},"organisationId":"org-{i % 97:04d}","userId":"user-{i:09d}",'
        f'"email":"user{i}@example.com","roles":["member"],"pad":"'
    )
    return (head + "x" * max(0, size - len(head) - 2) + '"}').encode()


def seed(port: int, n: int, stale: float, no_ttl: float, size: int, prefix: bytes = b"session:") -> None:
    """SET n sessions over one raw socket in big pipelined chunks (fast: ~1-2 s per 100k here)."""
    import redis

    now = redis.Redis(port=port).time()[0] * 1000
    stale_every = round(1 / stale) if stale else 0
    no_ttl_every = round(1 / no_ttl) if no_ttl else 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for start in range(0, n, 10_000):
            chunk = []
            for i in range(start, min(n, start + 10_000)):
                old = stale_every and i % stale_every == 0
                created = now - (30 if old else 2) * HOUR_MS - (i % 3600) * 1000
                key, value = prefix + b"%09d" % i, session_value(i, created, size)
                ttl = not (no_ttl_every and i % no_ttl_every == 1)
                parts = [b"SET", key, value, b"PX", b"86400000"] if ttl else [b"SET", key, value]
                chunk.append(
                    b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
                )
            sock.sendall(b"".join(chunk))
            _read_exactly(sock, 5 * len(chunk))  # one "+OK\r\n" per SET


def _read_exactly(sock: socket.socket, n: int) -> None:
    while n > 0:
        n -= len(sock.recv(min(n, 1 << 20)))


def settle(port: int) -> None:
    """Wait out the AOF rewrite that seeding triggers: its fork and child are not the sweep's cost."""
    import redis

    client = redis.Redis(port=port)
    time.sleep(0.2)  # serverCron schedules the rewrite
    while True:
        info = client.info("persistence")
        if not (info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")):
            return
        time.sleep(0.2)


# -- the pinging client -------------------------------------------------------------------------------


def pinger(port: int, stop, out) -> None:
    """PING every millisecond until told to stop; send back the round-trip times in ms."""
    import redis

    client = redis.Redis(port=port)
    client.ping()
    samples = []
    next_at = time.perf_counter()
    while not stop.is_set():
        t0 = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - t0) * 1000)
        next_at += 0.001
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.perf_counter()
    out.put(samples)


def latency(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"pings": 0}
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 3)  # noqa: E731
    return {"pings": len(s), "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(s[-1], 3)}


# -- the approaches, each in its own process -----------------------------------------------------------


def our_sweep(port: int, out, batching: dict, idle_cpu: bool = True, name: str = "") -> None:
    import redis

    from redis_maint import sessions

    client = redis.Redis(port=port)
    plan = sessions.Plan(mode=sessions.Mode.SWEEP)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    report = sessions.sweep(
        client,
        f"redis://127.0.0.1:{port}/0",
        plan,
        batching=sessions.Batching(**batching),
        idle_cpu=idle_cpu,
    )
    took = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deleted = sum(report.deleted.values())
    name = name or ("our sweep" if idle_cpu else "ours, normal CPU priority")
    out.put(_figures(name, report.scanned, deleted + report.ttl_repaired, took, rss0, rss, cpu0))


def our_sweep_normal_cpu(port: int, out, batching: dict) -> None:
    our_sweep(port, out, batching, idle_cpu=False)


def unchecked_floor(port: int, out, batching: dict) -> None:
    """Our engine with a plain UNLINK in place of the check-and-act: racy, so never a product path.
    Its Redis CPU per key is what a sweep costs before any check."""
    from redis_maint.sessions.engine import NodeSweep

    def send_unlink(self, chunk):
        keys = [action[0] for action in chunk]
        self.wire.send(("UNLINK", *keys), lambda n: self._count(chunk, [1] * len(chunk)))

    NodeSweep._send_act = send_unlink
    our_sweep(port, out, batching, name="unchecked floor (racy)")


# The "server-side Lua batches over SCAN" (~170k keys/s on its machine): the client SCANs, and a
# script per batch reads, parses with cjson and unlinks on the server. Redis does all the parsing.
LUA_SWEEP = """
local cutoff, doomed = tonumber(ARGV[1]), {}
local values = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  if values[i] then
    local ok, doc = pcall(cjson.decode, values[i])
    if ok and type(doc) == 'table' and type(doc.createdAt) == 'number' and doc.createdAt < cutoff then
      doomed[#doomed + 1] = KEYS[i]
    end
  end
end
if #doomed > 0 then redis.call('UNLINK', unpack(doomed)) end
return #doomed
"""


def lua_batches(port: int, out, batching: dict) -> None:
    import redis

    client = redis.Redis(port=port)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = _cpu_s()
    sha = client.script_load(LUA_SWEEP)
    cutoff = client.time()[0] * 1000 - DAY_MS
    t0 = time.perf_counter()
    cursor, scanned, deleted, step = 0, 0, 0, batching["act_batch"]
    while True:
        cursor, keys = client.scan(cursor, match="session:*", count=batching["scan_count"])
        scanned += len(keys)
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(keys), step):
            chunk = keys[start : start + step]
            pipe.evalsha(sha, len(chunk), *chunk, cutoff)
        deleted += sum(pipe.execute())
        if cursor == 0:
            break
    took = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put(_figures("Lua batches over SCAN", scanned, deleted, took, rss0, rss, cpu0))


def naive_loop(port: int, out, _batching: dict) -> None:
    """The naive redis-py loop: KEYS, then GET, parse and DEL per key."""
    import redis

    client = redis.Redis(port=port)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = _cpu_s()
    now = client.time()[0] * 1000
    t0 = time.perf_counter()
    deleted = 0
    keys = client.keys("session:*")
    for key in keys:
        raw = client.get(key)
        try:
            created = json.loads(raw)["createdAt"]
        except (TypeError, ValueError, KeyError):
            continue
        if created < now - DAY_MS:
            deleted += client.delete(key)
    took = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put(_figures("naive loop", len(keys), deleted, took, rss0, rss, cpu0))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _figures(
    name: str, examined: int, changed: int, took: float, rss0_kb: int, rss_kb: int, cpu0_s: float
) -> dict:
    return {
        "approach": name,
        "sessions": examined,
        "changed": changed,
        "seconds": round(took, 3),
        "keys_per_s": round(examined / took) if took else None,
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "rss_growth_mb": round((rss_kb - rss0_kb) / 1024, 1),
        "client_cpu_us_per_key": round((_cpu_s() - cpu0_s) / max(1, examined) * 1e6, 2),
    }


def measure(port: int, target, batching: dict) -> dict:
    """Run `target` in its own process while another process PINGs; add latency and SLOWLOG figures."""
    import redis

    admin = redis.Redis(port=port)
    admin.config_set("slowlog-log-slower-than", 1000)
    admin.config_set("slowlog-max-len", 100_000)
    admin.slowlog_reset()
    ctx = mp.get_context("spawn")
    stop, results, pings = ctx.Event(), ctx.Queue(), ctx.Queue()
    ping_proc = ctx.Process(target=pinger, args=(port, stop, pings))
    ping_proc.start()
    time.sleep(0.5)  # let the pinger settle before the work starts
    cpu0 = _redis_cpu(admin)
    work = ctx.Process(target=target, args=(port, results, batching))
    work.start()
    figures = results.get()
    work.join()
    cpu = _redis_cpu(admin) - cpu0
    figures["redis_cpu_us_per_key"] = round(cpu / max(1, figures["sessions"]) * 1e6, 2)
    figures["redis_busy"] = round(cpu / figures["seconds"], 2) if figures["seconds"] else None
    stop.set()
    samples = pings.get()
    ping_proc.join()
    slow = admin.slowlog_get(100_000)
    figures["ping"] = latency(samples[450:])  # drop the settling period
    figures["slow_commands_over_1ms"] = admin.slowlog_len()
    figures["slowest_command_ms"] = round(max((e["duration"] for e in slow), default=0) / 1000, 3)
    figures["slow_by_command"] = dict(
        Counter(e["command"].split(b" ")[0].decode() for e in slow).most_common()
    )
    return figures


def _redis_cpu(client) -> float:
    """CPU seconds of Redis's main thread (user + system)."""
    info = client.info("cpu")
    return info["used_cpu_user_main_thread"] + info["used_cpu_sys_main_thread"]


def idle_latency(port: int, seconds: float = 2.0) -> dict:
    ctx = mp.get_context("spawn")
    stop, pings = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=pinger, args=(port, stop, pings))
    proc.start()
    time.sleep(seconds)
    stop.set()
    samples = pings.get()
    proc.join()
    return latency(samples[100:])


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1_000_000, help="sessions for our sweep (default 1M)")
    ap.add_argument("--naive-sessions", type=int, default=50_000, help="sessions for the naive loop")
    ap.add_argument("--stale", type=float, default=0.5, help="fraction of stale sessions (default 0.5)")
    ap.add_argument("--no-ttl", type=float, default=0.0, help="fraction of sessions without TTL")
    ap.add_argument("--value-bytes", type=int, default=400, help="size of a session value")
    ap.add_argument("--no-aof", action="store_true", help="run Redis without AOF (the runbook runs AOF)")
    ap.add_argument("--scan-count", type=int, default=300, help="SCAN COUNT (jobs.session_sweep.scan_count)")
    ap.add_argument("--read-batch", type=int, default=300, help="keys per MGET")
    ap.add_argument("--act-batch", type=int, default=100, help="keys per check-and-act script call")
    ap.add_argument(
        "--command-bytes", type=int, default=12 * 1024, help="max bytes of one command (keys + values)"
    )
    ap.add_argument("--only", choices=["ours", "floor", "lua", "naive"], help="run one approach only")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each approach; medians are reported")
    ap.add_argument(
        "--compare-cpu", action="store_true", help="also run our sweep at normal CPU priority, in turn"
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also run our engine with unchecked UNLINKs (what Redis pays before any check)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    proc, port = start_redis(workdir, aof=not args.no_aof)
    try:
        batching = {
            "scan_count": args.scan_count,
            "read_batch": args.read_batch,
            "act_batch": args.act_batch,
            "command_bytes": args.command_bytes,
        }
        machine = {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m": os.getloadavg()[0],
        }
        results = {"machine": machine, "runs": []}
        results["idle_ping"] = idle_latency(port)
        approaches = [("ours", args.sessions, our_sweep)]
        if args.compare_cpu:
            approaches.append(("ours", args.sessions, our_sweep_normal_cpu))
        if args.floor:
            approaches.append(("floor", args.sessions, unchecked_floor))
        approaches.append(("lua", args.sessions, lua_batches))
        approaches.append(("naive", args.naive_sessions, naive_loop))
        approaches = [a for a in approaches if not args.only or a[0] == args.only]
        for round_no in range(args.repeat):
            # alternate the order: on a shared host, a run's place in the sequence skews it
            for name, n, target in approaches if round_no % 2 == 0 else approaches[::-1]:
                import redis

                redis.Redis(port=port).flushall()
                t0 = time.perf_counter()
                seed(port, n, args.stale, args.no_ttl, args.value_bytes)
                settle(port)
                print(
                    f"seeded {n} sessions in {time.perf_counter() - t0:.1f}s; running {name}", file=sys.stderr
                )
                results["runs"].append(measure(port, target, batching))
        results["medians"] = medians(results["runs"])
        results["settings"] = vars(args)
        print(json.dumps(results, indent=2) if args.json else render(results))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def medians(runs: list[dict]) -> list[dict]:
    """Per approach, the median of each figure over its runs (the host is shared and noisy)."""
    from statistics import median

    by_name: dict[str, list[dict]] = {}
    for run in runs:
        by_name.setdefault(run["approach"], []).append(run)
    out = []
    for name, group in by_name.items():
        row = {"approach": name, "runs": len(group), "sessions": group[0]["sessions"]}
        for field in FIGURES:
            row[field] = round(median(r[field] for r in group), 3)
        for field in PING:
            row[field] = round(median(r["ping"][field] for r in group), 3)
        out.append(row)
    return out


FIGURES = (
    "keys_per_s",
    "slow_commands_over_1ms",
    "peak_rss_mb",
    "redis_cpu_us_per_key",
    "redis_busy",
    "client_cpu_us_per_key",
)
PING = ("p50_ms", "p99_ms", "max_ms")


def render(results: dict) -> str:
    head = f"{'approach':<26} {'runs':>4} {'sessions':>9} {'keys/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
    head += f"{'>1ms cmds':>9} {'peak RSS':>9} {'Redis CPU/key':>13} {'our CPU/key':>11}"
    lines = ["medians:", head]
    for r in results["medians"]:
        lines.append(
            f"{r['approach']:<26} {r['runs']:>4} {r['sessions']:>9} {r['keys_per_s']:>9.0f} {r['p50_ms']:>7} "
            f"{r['p99_ms']:>7} {r['max_ms']:>7} {r['slow_commands_over_1ms']:>9.0f} {r['peak_rss_mb']:>7}MB "
            f"{r['redis_cpu_us_per_key']:>10} us {r['client_cpu_us_per_key']:>8} us"
        )
    rate = {r["approach"]: r["keys_per_s"] for r in results["medians"]}
    ours = rate.get("our sweep")
    for name in ("Lua batches over SCAN", "naive loop"):
        if ours and rate.get(name):
            lines.append(f"our sweep vs {name}: {ours / rate[name]:.2f}x the keys/s (medians, same run)")
    lines.append("each run (keys/s, ping p99 ms):")
    for r in results["runs"]:
        lines.append(f"  {r['approach']:<26} {r['keys_per_s']:>9} {r['ping']['p99_ms']:>7}")
    idle = results["idle_ping"]
    lines.append(f"idle ping: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, max {idle['max_ms']} ms")
    lines.append(f"load average (1 min) at start: {results['machine']['load_avg_1m']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
