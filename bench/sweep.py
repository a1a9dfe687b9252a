"""Benchmark of the session sweep against reference sweeps, on a throwaway local redis-server.

    python bench/sweep.py                      # 1M sessions (~400 bytes, half stale, 1% without TTL)
    python bench/sweep.py --sessions 200000    # smaller (what `make bench` runs)
    python bench/sweep.py --compare-cpu        # also our sweep at normal CPU priority, in turn
    python bench/sweep.py --floor              # also the engine with unchecked UNLINKs (racy; a reference)

Approaches, all on the same freshly seeded dataset and under the same rules (bench/sweep_refs.py):
- our sweep: `redis_maint.sessions.sweep`, as the session-sweep job runs it (idle CPU priority);
- Lua, SCAN inside the script: the strongest reference. One EVALSHA per batch runs the SCAN itself,
  MGETs, parses with cjson, deletes and repairs TTLs, and returns the next cursor: one round trip
  per batch, and the client does nothing but loop;
- Lua batches, client SCAN: the client SCANs and pipelines one script call per 100 keys;
- naive loop: KEYS, then GET/DEL (PTTL/PEXPIREAT) per key. It runs on the full dataset, KEYS and
  all, but stops after --naive-seconds (30 s): its keys/s is measured on the same data as the
  others, and the output says where it stopped.

Each approach runs --repeat times (default 3), in alternating order, and the medians are reported:
the hosts here are shared, and one run can be a third slower than the next. The ratios of our
keys/s against each reference are given as the ratio of the medians and as the median of the
ratios within each round.

For each approach it reports sessions examined per second, what a concurrent client that PINGs
Redis every millisecond saw (p50/p99/max), the sweeping process's peak RSS, Redis's and the
sweeper's CPU per key, and how many Redis commands took longer than 1 ms (SLOWLOG). Each approach
runs in its own process, and only its sweep is measured: the process starts, connects and loads
its scripts first, then waits for a go; the timings, Redis CPU, SLOWLOG and the pinging client's
samples cover only the time from go to the end of the sweep. Each full run is checked against
the dataset: the stale sessions gone, every other session left, none without a TTL.
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
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from statistics import median

import sweep_refs

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# The sweep rules every approach applies (the job's defaults).
RULES = {
    "pattern": "session:*",
    "created_field": "createdAt",
    "stale_after_ms": DAY_MS,
    "lifetime_ms": DAY_MS,
    "future_skew_ms": 300_000,
}


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


def seed(port: int, n: int, stale: float, no_ttl: float, size: int, prefix: bytes = b"session:") -> dict:
    """SET n sessions over one raw socket in big pipelined chunks (fast: ~1-2 s per 100k here).

    Stale sessions are every (1/stale)-th key. Sessions without a TTL come in runs of 7 consecutive
    keys, so they fall on stale and fresh sessions alike: the sweep deletes some (expired) and
    repairs the TTL of the rest. Returns what a correct full sweep must do."""
    import redis

    now = redis.Redis(port=port).time()[0] * 1000
    stale_every = round(1 / stale) if stale else 0
    no_ttl_every = round(7 / no_ttl) if no_ttl else 0
    expect = {"sessions": n, "stale": 0, "no_ttl": 0, "repairs": 0}
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for start in range(0, n, 10_000):
            chunk = []
            for i in range(start, min(n, start + 10_000)):
                old = bool(stale_every) and i % stale_every == 0
                created = now - (30 if old else 2) * HOUR_MS - (i % 3600) * 1000
                key, value = prefix + b"%09d" % i, session_value(i, created, size)
                persistent = bool(no_ttl_every) and i % no_ttl_every < 7
                expect["stale"] += old
                expect["no_ttl"] += persistent
                expect["repairs"] += persistent and not old
                parts = [b"SET", key, value] if persistent else [b"SET", key, value, b"PX", b"86400000"]
                chunk.append(
                    b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
                )
            sock.sendall(b"".join(chunk))
            _read_exactly(sock, 5 * len(chunk))  # one "+OK\r\n" per SET
    return expect


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


def end_state(port: int, expect: dict, figures: dict) -> dict:
    """What a full run left, against what the dataset says it must leave."""
    import redis

    client = redis.Redis(port=port)
    space = client.info("keyspace").get("db0", {"keys": 0, "expires": 0})
    left, no_ttl_left = int(space["keys"]), int(space["keys"]) - int(space["expires"])
    ok = (
        left == expect["sessions"] - expect["stale"]
        and no_ttl_left == 0
        and figures["deleted"] == expect["stale"]
        and figures["repaired"] == expect["repairs"]
    )
    return {"keys_left": left, "no_ttl_left": no_ttl_left, "ok": ok}


# -- the pinging client -------------------------------------------------------------------------------


def pinger(port: int, ready, stop, out) -> None:
    """PING every millisecond until told to stop; send back (start time, round trip in ms) pairs.

    Times are time.monotonic(), one clock for every process on the host, so the caller can keep
    only the pings sent while a sweep ran."""
    import redis

    client = redis.Redis(port=port)
    client.ping()
    ready.set()
    samples = []
    next_at = time.monotonic()
    while not stop.is_set():
        t0 = time.monotonic()
        client.ping()
        samples.append((t0, (time.monotonic() - t0) * 1000))
        next_at += 0.001
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    out.put(samples)


def latency(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"pings": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 3)  # noqa: E731
    return {"pings": len(s), "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(s[-1], 3)}


def in_window(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [rtt for t, rtt in samples if start <= t <= end]


# -- the approaches, each in its own process -----------------------------------------------------------


def ours(client, cfg: dict, idle_cpu: bool = True) -> Callable[[], dict]:
    from redis_maint import sessions

    rules = cfg["rules"]
    plan = sessions.Plan(
        mode=sessions.Mode.SWEEP,
        layout=sessions.Layout(pattern=rules["pattern"], created_field=rules["created_field"]),
        lifetime_ms=rules["lifetime_ms"],
        stale_after_ms=rules["stale_after_ms"],
        future_skew_ms=rules["future_skew_ms"],
    )
    batching = sessions.Batching(**cfg["batching"])
    url = f"redis://127.0.0.1:{cfg['port']}/0"

    def run() -> dict:
        report = sessions.sweep(client, url, plan, batching=batching, idle_cpu=idle_cpu)
        return {
            "examined": report.scanned,
            "deleted": sum(report.deleted.values()),
            "repaired": report.ttl_repaired,
            "unreadable": report.unreadable,
        }

    return run


def ours_normal_cpu(client, cfg: dict) -> Callable[[], dict]:
    return ours(client, cfg, idle_cpu=False)


def unchecked_floor(client, cfg: dict) -> Callable[[], dict]:
    """Our engine with a plain UNLINK in place of the check-and-act: racy, so never a product path.
    Its Redis CPU per key is what a sweep costs before any check (TTL repairs are not made)."""
    from redis_maint.sessions.engine import NodeSweep

    def send_unlink(self, chunk):
        keys = [action[0] for action in chunk if action[2] == b"D"]
        codes = [1 if action[2] == b"D" else 0 for action in chunk]
        if keys:
            self.wire.send(("UNLINK", *keys), lambda n: self._count(chunk, codes))

    NodeSweep._send_act = send_unlink
    return ours(client, cfg)


# name -> (label, factory). A factory does its setup and returns the sweep, which alone is timed.
APPROACHES: dict[str, tuple[str, Callable]] = {
    "ours": ("our sweep", ours),
    "ours-normal-cpu": ("ours, normal CPU priority", ours_normal_cpu),
    "floor": ("unchecked floor (racy)", unchecked_floor),
    "lua-server-scan": ("Lua, SCAN inside script", sweep_refs.lua_server_scan),
    "lua-client-scan": ("Lua batches, client SCAN", sweep_refs.lua_client_scan),
    "naive": ("naive loop", sweep_refs.naive_loop),
}
# the references our rate is compared with, strongest first
REFERENCES = ("lua-server-scan", "lua-client-scan", "naive")


def work(name: str, port: int, cfg: dict, out, go) -> None:
    """One approach's process: set up, say "ready", wait for go, sweep, send the figures."""
    try:
        import redis

        label, factory = APPROACHES[name]
        sweep = factory(redis.Redis(port=port), cfg)
        out.put(("ready", None))
        go.wait()
        cpu0 = _cpu_s()
        t0 = time.monotonic()
        result = sweep()
        t1 = time.monotonic()
        cpu = _cpu_s() - cpu0
    except BaseException:
        out.put(("error", traceback.format_exc()))
        return
    examined, took = result.pop("examined"), t1 - t0
    out.put(
        (
            "done",
            {
                "approach": label,
                "name": name,
                "sessions": examined,
                **result,
                "seconds": round(took, 3),
                "keys_per_s": round(examined / took) if took else None,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "client_cpu_us_per_key": round(cpu / max(1, examined) * 1e6, 2),
                "window": (t0, t1),
            },
        )
    )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reply(queue) -> object:
    kind, payload = queue.get()
    if kind == "error":
        raise SystemExit(f"an approach failed:\n{payload}")
    return payload


def measure(port: int, name: str, cfg: dict) -> dict:
    """Run approach `name` in its own process while another process PINGs; add latency and SLOWLOG
    figures, all taken over the sweep alone (not the processes' start-up)."""
    import redis

    admin = redis.Redis(port=port)
    admin.config_set("slowlog-log-slower-than", 1000)
    admin.config_set("slowlog-max-len", 100_000)
    ctx = mp.get_context("spawn")
    ready, stop, go, results, pings = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    ping_proc = ctx.Process(target=pinger, args=(port, ready, stop, pings))
    ping_proc.start()
    worker = ctx.Process(target=work, args=(name, port, cfg, results, go))
    worker.start()
    try:
        _reply(results)  # set up and waiting
        ready.wait(30)
        time.sleep(0.2)  # let the pinger reach its steady pace
        admin.slowlog_reset()
        cpu0 = _redis_cpu(admin)
        go.set()
        figures = _reply(results)
        cpu = _redis_cpu(admin) - cpu0
        slow = admin.slowlog_get(100_000)
        slow_len = admin.slowlog_len()
    finally:
        stop.set()
        worker.join()
    samples = pings.get()
    ping_proc.join()
    start, end = figures.pop("window")
    figures["ping"] = latency(in_window(samples, start, end))
    figures["redis_cpu_us_per_key"] = round(cpu / max(1, figures["sessions"]) * 1e6, 2)
    figures["redis_busy"] = round(cpu / figures["seconds"], 2) if figures["seconds"] else None
    figures["slow_commands_over_1ms"] = slow_len
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
    ready, stop, pings = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=pinger, args=(port, ready, stop, pings))
    proc.start()
    ready.wait(30)
    time.sleep(0.2)
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    stop.set()
    samples = pings.get()
    proc.join()
    return latency(in_window(samples, start, end))


# -- main -----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1_000_000, help="sessions seeded for every approach")
    ap.add_argument(
        "--naive-seconds", type=float, default=30.0, help="stop the naive loop after this long (0: never)"
    )
    ap.add_argument("--stale", type=float, default=0.5, help="fraction of stale sessions (default 0.5)")
    ap.add_argument(
        "--no-ttl", type=float, default=0.01, help="fraction of sessions without TTL (default 0.01)"
    )
    ap.add_argument("--value-bytes", type=int, default=400, help="size of a session value")
    ap.add_argument("--no-aof", action="store_true", help="run Redis without AOF (the runbook runs AOF)")
    ap.add_argument("--scan-count", type=int, default=300, help="SCAN COUNT (jobs.session_sweep.scan_count)")
    ap.add_argument("--read-batch", type=int, default=300, help="keys per MGET")
    ap.add_argument("--act-batch", type=int, default=100, help="keys per check-and-act script call")
    ap.add_argument(
        "--command-bytes", type=int, default=12 * 1024, help="max bytes of one command (keys + values)"
    )
    ap.add_argument(
        "--lua-scan-count",
        type=int,
        help="SCAN COUNT inside the strongest Lua reference (default: --scan-count)",
    )
    ap.add_argument("--only", choices=list(APPROACHES), action="append", help="run these approaches only")
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
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    names = ["ours"] + ["ours-normal-cpu"] * args.compare_cpu + ["floor"] * args.floor + list(REFERENCES)
    if args.only:
        names = [n for n in APPROACHES if n in args.only]
    workdir = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    proc, port = start_redis(workdir, aof=not args.no_aof)
    try:
        cfg = {
            "port": port,
            "rules": RULES,
            "naive_seconds": args.naive_seconds,
            "batching": {
                "scan_count": args.scan_count,
                "read_batch": args.read_batch,
                "act_batch": args.act_batch,
                "command_bytes": args.command_bytes,
            },
        }
        machine = {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m": os.getloadavg()[0],
        }
        results: dict = {"machine": machine, "runs": [], "idle_ping": idle_latency(port)}
        for round_no in range(args.repeat):
            # alternate the order: on a shared host, a run's place in the sequence skews it
            for name in names if round_no % 2 == 0 else names[::-1]:
                results["runs"].append(run_one(port, name, cfg, args, round_no))
        results["medians"] = medians(results["runs"])
        results["ratios"] = ratios(results["runs"])
        results["settings"] = vars(args)
        print(json.dumps(results, indent=2) if args.json else render(results))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def run_one(port: int, name: str, cfg: dict, args: argparse.Namespace, round_no: int) -> dict:
    import redis

    redis.Redis(port=port).flushall()
    t0 = time.perf_counter()
    expect = seed(port, args.sessions, args.stale, args.no_ttl, args.value_bytes)
    settle(port)
    print(
        f"seeded {args.sessions} sessions in {time.perf_counter() - t0:.1f}s; running {name}", file=sys.stderr
    )
    if name == "lua-server-scan" and args.lua_scan_count:
        cfg = {**cfg, "batching": {**cfg["batching"], "scan_count": args.lua_scan_count}}
    figures = measure(port, name, cfg)
    figures["round"] = round_no
    if not figures.get("stopped_after_s"):
        figures["end_state"] = end_state(port, expect, figures)
    return figures


# -- figures --------------------------------------------------------------------------------------------

FIGURES = (
    "sessions",
    "keys_per_s",
    "slow_commands_over_1ms",
    "peak_rss_mb",
    "redis_cpu_us_per_key",
    "redis_busy",
    "client_cpu_us_per_key",
)
PING = ("p50_ms", "p99_ms", "max_ms")


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(median(values), 3) if values else None


def medians(runs: list[dict]) -> list[dict]:
    """Per approach, the median of each figure over its runs (the host is shared and noisy)."""
    by_name: dict[str, list[dict]] = {}
    for run in runs:
        by_name.setdefault(run["name"], []).append(run)
    out = []
    for name, group in by_name.items():
        row = {"name": name, "approach": group[0]["approach"], "runs": len(group)}
        for field in FIGURES:
            row[field] = _median([r[field] for r in group])
        for field in PING:
            row[field] = _median([r["ping"][field] for r in group])
        stopped = [r["stopped_after_s"] for r in group if r.get("stopped_after_s")]
        if stopped:
            row["stopped_after_s"] = _median(stopped)
            row["total_keys"] = group[0]["total_keys"]
        out.append(row)
    return out


def ratios(runs: list[dict]) -> dict[str, dict]:
    """Our keys/s over each reference's: the ratio of the medians, and the median of the ratios
    of runs in the same round (which ran minutes apart, so a noisy spell hits both alike)."""
    ours_by_round = {r["round"]: r["keys_per_s"] for r in runs if r["name"] == "ours"}
    out = {}
    for ref in REFERENCES:
        theirs = {r["round"]: r["keys_per_s"] for r in runs if r["name"] == ref}
        rounds = sorted(set(ours_by_round) & set(theirs))
        if not rounds:
            continue
        paired = [ours_by_round[n] / theirs[n] for n in rounds]
        out[ref] = {
            "of_medians": round(
                median(ours_by_round[n] for n in rounds) / median(theirs[n] for n in rounds), 2
            ),
            "median_of_rounds": round(median(paired), 2),
            "per_round": [round(x, 2) for x in paired],
        }
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(results: dict) -> str:
    head = f"{'approach':<26} {'runs':>4} {'sessions':>9} {'keys/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
    head += f"{'>1ms cmds':>9} {'peak RSS':>9} {'Redis CPU/key':>13} {'client CPU/key':>14}"
    lines = ["medians:", head]
    for r in results["medians"]:
        lines.append(
            f"{r['approach']:<26} {r['runs']:>4} {r['sessions']:>9.0f} {r['keys_per_s']:>9.0f} "
            f"{_fmt(r['p50_ms'], '>7')} {_fmt(r['p99_ms'], '>7')} {_fmt(r['max_ms'], '>7')} "
            f"{r['slow_commands_over_1ms']:>9.0f} {r['peak_rss_mb']:>7}MB "
            f"{r['redis_cpu_us_per_key']:>10} us {r['client_cpu_us_per_key']:>11} us"
        )
    labels = {r["name"]: r["approach"] for r in results["medians"]}
    for ref, ratio in results["ratios"].items():
        lines.append(
            f"our sweep vs {labels[ref]}: {ratio['of_medians']:.2f}x the keys/s (ratio of medians); "
            f"within rounds {ratio['per_round']}, median {ratio['median_of_rounds']:.2f}x"
        )
    for r in results["medians"]:
        if r.get("stopped_after_s"):
            lines.append(
                f"{r['approach']}: stopped after {r['stopped_after_s']} s (median) having examined "
                f"{r['sessions']:.0f} of the same {r['total_keys']} sessions; its keys/s is measured "
                "on that dataset, KEYS included"
            )
    lines.append(_end_state_line(results["runs"]))
    lines.append("each run (keys/s, ping p99 ms):")
    for r in results["runs"]:
        lines.append(
            f"  {r['round']} {r['approach']:<26} {r['keys_per_s']:>9} {_fmt(r['ping']['p99_ms'], '>7')}"
        )
    idle = results["idle_ping"]
    lines.append(f"idle ping: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, max {idle['max_ms']} ms")
    lines.append(f"load average (1 min) at start: {results['machine']['load_avg_1m']:.2f}")
    return "\n".join(lines)


def _end_state_line(runs: list[dict]) -> str:
    checked = [r for r in runs if "end_state" in r and r["name"] != "floor"]
    wrong = [
        f"{r['approach']} (round {r['round']}): {r['end_state']}" for r in checked if not r["end_state"]["ok"]
    ]
    if wrong:
        return "END STATE WRONG (stale left, fresh deleted, or TTLs not repaired): " + "; ".join(wrong)
    return f"end state: all {len(checked)} full runs deleted every stale session, kept the rest and repaired every TTL"


if __name__ == "__main__":
    main()
