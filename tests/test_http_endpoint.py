"""The daemon's /healthz and /metrics, over real HTTP, with a real Redis going away."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from redis_maint.observe.http_endpoint import HttpEndpoint, _handler
from redis_maint.observe.http_server import PooledHTTPServer
from tests.support.common import ROOT, free_port, in_ci, wait_for
from tests.support.metrics import scrape_text
from tests.support.services.redis import frozen
from tests.support.services.webhook import WebhookServer

WAIT_S = 120  # a safety net for a loaded machine (parallel tests), never a speed assertion


class Daemon:
    def __init__(self, **env: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "REDIS_MAINT_HTTP__PORT": str(self.port), **env},
        )
        wait_for(lambda: self.get("/healthz")[0] in (200, 503), timeout=WAIT_S, what="the HTTP endpoint")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict:
        code, text = self.get("/metrics")
        assert code == 200
        return scrape_text(text)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def daemon_factory():
    started: list[Daemon] = []

    def start(**env: str) -> Daemon:
        started.append(Daemon(**env))
        return started[-1]

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop()


def _runs(sample: dict, job: str, status: str) -> float:
    return sample.get(("redis_maint_job_runs_total", (("job", job), ("status", status))), 0)


def test_healthz_is_ok_and_metrics_move_then_redis_down_shows_in_metrics_not_healthz(
    daemon_factory, redis_server, monkeypatch
):
    hook = WebhookServer().start()
    d = daemon_factory(
        REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1s",
        REDIS_MAINT_REDIS_TIMEOUT="1s",
        REDIS_MAINT_NOTIFY__WEBHOOK_URL=hook.url,
        # A loaded test machine must not flip the health level (a webhook of its own) before the failure.
        REDIS_MAINT_JOBS__HEALTH__PING_WARNING_MS="1000",
        REDIS_MAINT_JOBS__HEALTH__PING_CRITICAL_MS="2000",
    )
    # Up before its scheduler starts (then 503 "scheduler is not running"): ok once the scheduler runs.
    ok = (200, json.dumps({"status": "ok"}))
    wait_for(lambda: d.get("/healthz") == ok, timeout=WAIT_S, what="healthz ok")
    wait_for(lambda: _runs(d.metrics(), "health", "succeeded") >= 1, timeout=WAIT_S, what="a first run")
    before = _runs(d.metrics(), "health", "succeeded")
    wait_for(
        lambda: _runs(d.metrics(), "health", "succeeded") >= before + 2,
        timeout=WAIT_S,
        what="counters moving",
    )
    sample = d.metrics()
    assert sample[("redis_maint_redis_up", ())] == 1
    assert sample[("redis_maint_redis_memory_ratio", ())] >= 0
    assert sample[("redis_maint_last_success_timestamp_seconds", (("job", "health"),))] > time.time() - 30

    redis_server.stop()
    wait_for(lambda: d.metrics()[("redis_maint_redis_up", ())] == 0, timeout=WAIT_S, what="redis_up 0")
    time.sleep(2)  # a few more failing runs
    assert d.get("/healthz")[0] == 200, "an unreachable Redis does not make the sidecar unhealthy"
    assert d.metrics()[("redis_maint_job_failing", (("job", "health"),))] == 1
    health_calls = [c["event"] for c in hook.posted() if c["job"] == "health"]
    assert health_calls.count("failure") == 1, f"once per transition, not every run: {health_calls}"
    code, err = d.stop()
    hook.stop()
    assert code == 0, err
    assert '"msg": "http endpoint stopped"' in err


def test_nothing_but_healthz_and_metrics_is_served(daemon_factory, redis_server):
    d = daemon_factory(REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h")
    for path in ("/", "/debug", "/metrics/../config", "/healthz/x"):
        assert d.get(path)[0] == 404
    code, text = d.get("/metrics")
    assert code == 200 and "redis_maint_job_runs_total" in text
    assert redis_server.url.split("@")[-1] not in text and "sqlite" not in text


def test_a_run_stuck_past_its_timeout_makes_healthz_503_with_the_reason(daemon_factory, redis_server):
    with frozen(redis_server):  # the catch-up run blocks on Redis until the test lets it go
        d = daemon_factory(
            REDIS_MAINT_JOBS__HEALTH__SCHEDULE="every 1h",
            REDIS_MAINT_JOBS__HEALTH__TIMEOUT="1s",
            REDIS_MAINT_HTTP__STUCK_GRACE="0s",
            REDIS_MAINT_REDIS_TIMEOUT="300s",
        )
        # Until the scheduler runs, healthz is 503 for that ("scheduler is not running"): wait for the stuck run.
        wait_for(
            lambda: "past its timeout" in d.get("/healthz")[1], timeout=WAIT_S, what="healthz: run stuck"
        )
        code, body = d.get("/healthz")
        reason = json.loads(body)
        assert code == 503 and reason["status"] == "unhealthy"
        assert "of health is past its timeout" in reason["reasons"][0]
        assert d.metrics()[("redis_maint_job_running", (("job", "health"),))] == 1
    wait_for(lambda: d.get("/healthz")[0] == 200, timeout=WAIT_S, what="healthz back to 200")


def test_a_port_in_use_is_a_clear_startup_error(redis_server, cli_process):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli_process("daemon", env={"REDIS_MAINT_HTTP__PORT": str(port)}, timeout=30)
    # A port in use is a setting to change, not a failed run: exit 2, naming the port and what to change.
    assert result.returncode == 2
    assert (
        f"127.0.0.1:{port} is already in use" in result.stderr and "REDIS_MAINT_HTTP__PORT" in result.stderr
    )
    assert "Traceback" not in result.stderr


# --- the endpoint under load: a backlog, a bounded pool and a per-connection timeout -----------


@pytest.fixture
def endpoint_factory():
    started: list[HttpEndpoint] = []

    def start(health=lambda: [], metrics=lambda: b"redis_maint_up 1\n", **options) -> HttpEndpoint:
        endpoint = HttpEndpoint("127.0.0.1", 0, health=health, metrics=metrics, **options)
        endpoint.start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


def _half_sent(
    port: int, n: int, sent: bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
) -> list[socket.socket]:
    """`n` connections that start a request and never finish it."""
    sockets = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if sent:
            s.sendall(sent)
        sockets.append(s)
    return sockets


def _closed_by_server(s: socket.socket) -> bool:
    """Wait (up to the socket's timeout) for the server to close `s`."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _get(port: int, path: str = "/healthz") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _burst(port: int, n: int) -> list[int | str]:
    """`n` simultaneous GET /healthz; each one's status code, or the error it met."""

    async def one() -> int | str:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = await reader.read()
            writer.close()
            return int(reply.split(b" ", 2)[1])
        except (OSError, IndexError, ValueError) as exc:
            return type(exc).__name__

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=60)


def test_200_concurrent_healthz_requests_all_get_200(endpoint_factory):
    endpoint = endpoint_factory()
    codes = asyncio.run(_burst(endpoint.port, 200))
    assert codes == [200] * 200


def test_healthz_answers_while_300_half_sent_requests_hold_no_threads(endpoint_factory):
    threads_before = threading.active_count()
    endpoint = endpoint_factory(workers=4)
    idle = _half_sent(endpoint.port, 300) + _half_sent(endpoint.port, 20, sent=b"")
    try:
        wait_for(lambda: endpoint.server.open_connections == 320, what="320 connections held open")
        assert _get(endpoint.port) == (200, json.dumps({"status": "ok"}))
        assert _get(endpoint.port, "/metrics") == (200, "redis_maint_up 1\n")
        # the socket thread and the pool, whatever the number of connections
        assert threading.active_count() <= threads_before + 4 + 1
        assert endpoint.server.open_connections == 320, "the half-sent requests were not dropped"
    finally:
        for s in idle:
            s.close()


def test_idle_and_half_sent_connections_are_closed_after_the_timeout(endpoint_factory):
    endpoint = endpoint_factory(timeout=timedelta(milliseconds=300))
    idle = _half_sent(endpoint.port, 5) + _half_sent(endpoint.port, 5, sent=b"")
    try:
        assert all(_closed_by_server(s) for s in idle)
        assert endpoint.server.open_connections == 0
        assert _get(endpoint.port)[0] == 200
    finally:
        for s in idle:
            s.close()


def test_the_listen_backlog_the_kernel_reports_is_at_least_128(endpoint_factory):
    ss = shutil.which("ss")
    if ss is None:
        message = "`ss` (iproute2) is needed to read a listening socket's backlog"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    endpoint = endpoint_factory()
    out = subprocess.run(
        [ss, "-ltn", f"sport = :{endpoint.port}"], capture_output=True, text=True, check=True
    )
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 1, out.stdout
    assert int(rows[0][2]) >= 128, f"Send-Q of a listening socket is its backlog: {out.stdout}"


def test_a_busy_pool_queues_requests_instead_of_starting_threads(endpoint_factory):
    release = threading.Event()

    def slow_health() -> list[str]:
        release.wait(20)
        return []

    threads_before = threading.active_count()
    endpoint = endpoint_factory(health=slow_health, workers=2)
    with ThreadPoolExecutor(max_workers=10) as clients:
        results = [clients.submit(_get, endpoint.port) for _ in range(10)]
        threads_with_clients = threads_before + 2 + 1 + 10
        wait_for(lambda: endpoint.server.busy == 10, what="all 10 requests read and queued")
        time.sleep(0.2)  # give a thread-per-connection server the chance to show itself
        assert threading.active_count() <= threads_with_clients
        assert not any(r.done() for r in results)
        release.set()
        assert [r.result()[0] for r in results] == [200] * 10


def test_a_client_that_does_not_read_its_reply_frees_the_worker_after_the_timeout(endpoint_factory):
    big = b"#" * (64 * 1024 * 1024)  # more than any socket buffer holds
    endpoint = endpoint_factory(metrics=lambda: big, workers=1, timeout=timedelta(milliseconds=500))
    stalled = socket.create_connection(("127.0.0.1", endpoint.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert _get(endpoint.port) == (200, json.dumps({"status": "ok"}))
    finally:
        stalled.close()


def test_beyond_the_connection_cap_the_oldest_incomplete_request_is_dropped():
    server = PooledHTTPServer(("127.0.0.1", 0), _handler(_stub_endpoint()), workers=1, max_connections=10)
    server.start()
    port = server.server_address[1]
    try:
        first = _half_sent(port, 5)
        wait_for(lambda: server.open_connections == 5, what="5 connections held")
        later = _half_sent(port, 10)
        assert all(_closed_by_server(s) for s in first)
        assert _get(port)[0] == 200
        for s in later:
            s.settimeout(0.2)
        assert not any(_closed_by_server(s) for s in later[1:])
    finally:
        for s in first + later:
            s.close()
        server.stop()


def test_an_oversized_or_malformed_request_gets_a_4xx(endpoint_factory):
    endpoint = endpoint_factory()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 40_000)
        assert s.recv(100).startswith(b"HTTP/1.0 431 ")
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as s:
        s.sendall(b"GET /health z HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 400 ")


def _stub_endpoint() -> HttpEndpoint:
    return HttpEndpoint("127.0.0.1", 0, health=lambda: [], metrics=lambda: b"")
