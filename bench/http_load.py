"""Benchmark of the daemon's HTTP endpoint under a burst and under idle half-sent connections.

    .venv/bin/python bench/http_load.py               # 5 rounds of 200, then 1,000 idle connections
    .venv/bin/python bench/http_load.py --rounds 10 --json

Two servers are measured in the same run, each in a process of its own serving the real
/healthz (liveness over a real SQLite history store and a running APScheduler) and /metrics:

- `pooled`: redis_maint.observe.http_endpoint.HttpEndpoint as shipped (backlog 128, 8 workers, 10 s timeout);
- `baseline`: the endpoint as it was before this change: the stdlib ThreadingHTTPServer with its
  defaults (backlog 5, one thread per connection, no timeout), with the same handler.

Phases, for each server:
1. burst: `--clients` (200) concurrent GET /healthz, `--rounds` times; per round, how long until
   every request was answered or had failed (no 200 within `--client-timeout`, 5 s, which then
   caps the figure); over all rounds, the failures and the share answered within 2 s;
2. idle: `--idle` (1,000) connections that send half a request and stop; with them open,
   `--probes` sequential GET /healthz (latency, failures) and the server's peak thread count
   (/proc/PID/task, sampled every 10 ms); then how many of them the server has closed once
   its timeout has passed.
Goal: every burst answered within 2 s; the idle connections neither block
/healthz nor grow the thread count past the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n"


# --- the served process ------------------------------------------------------------------


def serve(kind: str) -> None:
    """Serve /healthz and /metrics until stdin closes; print the port first."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from jobs import REGISTRY
    from redis_maint.history.runs import HistoryStore
    from redis_maint.observe import liveness
    from redis_maint.observe.http_endpoint import HttpEndpoint, _handler
    from redis_maint.observe.metrics import Metrics

    workdir = tempfile.mkdtemp(prefix="http-load-")
    store = HistoryStore(f"sqlite:///{workdir}/history.db")
    scheduler = BackgroundScheduler()
    scheduler.start()
    metrics = Metrics(store, list(REGISTRY), "bench")
    endpoint = HttpEndpoint(
        "127.0.0.1",
        0,
        health=lambda: liveness.problems(scheduler, store, timedelta(minutes=1)),
        metrics=metrics.exposition,
    )
    if kind == "pooled":
        port = endpoint.start()
    else:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from socketserver import StreamRequestHandler

        # The same routes on the stdlib's stream handler, as before the change.
        stream = {
            "setup": StreamRequestHandler.setup,
            "handle": BaseHTTPRequestHandler.handle,
            "finish": StreamRequestHandler.finish,
        }
        handler = type("Baseline", (_handler(endpoint),), stream)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.handle_error = lambda *_: None  # replies to clients that gave up: broken pipes
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    print(port, flush=True)
    sys.stdin.read()


# --- the client --------------------------------------------------------------------------


class Served:
    def __init__(self, kind: str):
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.port = int(self.proc.stdout.readline())
        self.peak = 0
        self._sampling = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def _sample(self) -> None:
        while self.proc.poll() is None:
            try:
                self.peak = max(self.peak, self.threads())
            except FileNotFoundError:
                return
            time.sleep(0.01)

    def reset_peak(self) -> None:
        self.peak = self.threads()

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def _one(port: int, timeout: float) -> float | None:
    """Seconds until a GET /healthz was answered with 200, or None."""
    t0 = time.monotonic()

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        try:
            return await reader.read()
        finally:
            writer.close()

    try:
        reply = await asyncio.wait_for(exchange(), timeout)
    except (TimeoutError, OSError):
        return None
    return time.monotonic() - t0 if reply.startswith(b"HTTP/1.0 200 ") else None


def burst(port: int, clients: int, timeout: float) -> tuple[float, list[float | None]]:
    """(seconds until all were answered or had failed, each request's latency or None)."""

    async def run() -> list[float | None]:
        return await asyncio.gather(*(_one(port, timeout) for _ in range(clients)))

    t0 = time.monotonic()
    results = asyncio.run(run())
    return time.monotonic() - t0, results


def half_sent(port: int, n: int) -> list[socket.socket]:
    sockets = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(HALF_REQUEST)
        sockets.append(s)
    return sockets


def closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def probes(port: int, n: int, timeout: float) -> tuple[list[float], int]:
    latencies = [asyncio.run(_one(port, timeout)) for _ in range(n)]
    answered = [x for x in latencies if x is not None]
    return answered, n - len(answered)


def measure(kind: str, args: argparse.Namespace) -> dict[str, object]:
    served = Served(kind)
    try:
        burst(served.port, 10, args.client_timeout)  # warm-up: imports, SQLite connection
        served.reset_peak()
        rounds = []
        for _ in range(args.rounds):
            rounds.append(burst(served.port, args.clients, args.client_timeout))
            time.sleep(0.5)
        burst_peak = served.peak
        served.reset_peak()
        idle = half_sent(served.port, args.idle)
        time.sleep(0.2)
        latencies, probe_failures = probes(served.port, args.probes, args.client_timeout)
        idle_peak = served.peak
        still_open = sum(not closed_by_server(s) for s in idle)
        time.sleep(args.linger)
        closed_later = sum(closed_by_server(s) for s in idle)
        for s in idle:
            s.close()
    finally:
        served.stop()
    times = [t for t, _ in rounds]
    latencies_all = [x for _, results in rounds for x in results]
    within_2s = sum(x is not None and x <= 2.0 for x in latencies_all)
    return {
        "server": kind,
        "burst_all_done_s_median": round(statistics.median(times), 3),
        "burst_all_done_s_max": round(max(times), 3),
        "burst_requests": len(latencies_all),
        "burst_failures": sum(x is None for x in latencies_all),
        "burst_answered_in_2s_pct": round(100 * within_2s / len(latencies_all), 1),
        "burst_peak_threads": burst_peak,
        "idle_open_during_probes": still_open,
        "idle_healthz_ms_median": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "idle_healthz_ms_max": round(max(latencies) * 1000, 1) if latencies else None,
        "idle_healthz_failures": probe_failures,
        "idle_peak_threads": idle_peak,
        f"idle_closed_after_{args.linger:g}s": closed_later,
    }


def table(rows: list[dict[str, object]]) -> str:
    keys = [k for k in rows[0] if k != "server"]
    width = max(len(k) for k in keys)
    lines = [f"{'':{width}}  " + "  ".join(f"{r['server']:>10}" for r in rows)]
    for key in keys:
        lines.append(f"{key:{width}}  " + "  ".join(f"{r[key]!s:>10}" for r in rows))
    return "\n".join(lines)


def machine() -> dict[str, object]:
    somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "somaxconn": int(somaxconn),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", choices=["pooled", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument(
        "--client-timeout", type=float, default=5.0, help="a request unanswered this long failed"
    )
    parser.add_argument(
        "--linger", type=float, default=11.0, help="wait before counting closed idle connections"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rows = [measure("baseline", args), measure("pooled", args)]
    result = {"machine": machine(), "results": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(json.dumps(result["machine"]))
    print(table(rows))


if __name__ == "__main__":
    main()
