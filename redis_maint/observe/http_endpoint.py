"""The daemon's HTTP endpoint: /healthz and /metrics, nothing else.

Two read-only routes need no framework. The server is redis_maint.observe.http_server: a backlog of
128, a fixed pool of workers and a per-connection timeout, so a burst of probes is answered at
once and idle or half-sent connections cannot starve /healthz or pile up threads.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable
from datetime import timedelta

from redis_maint.errors import ConfigError
from redis_maint.observe.http_server import BACKLOG, TIMEOUT, WORKERS, BufferedHandler, PooledHTTPServer

log = logging.getLogger("redis_maint.http")

HealthCheck = Callable[[], list[str]]
MetricsFn = Callable[[], bytes]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpEndpoint:
    def __init__(
        self,
        bind: str,
        port: int,
        health: HealthCheck,
        metrics: MetricsFn,
        *,
        workers: int = WORKERS,
        timeout: timedelta = timedelta(seconds=TIMEOUT),
        backlog: int = BACKLOG,
    ):
        self.bind, self.port = bind, port
        self.health, self.metrics = health, metrics
        self.workers, self.timeout, self.backlog = workers, timeout, backlog
        self.server: PooledHTTPServer | None = None

    def start(self) -> int:
        """Listen and serve in the background; returns the bound port."""
        try:
            self.server = PooledHTTPServer(
                (self.bind, self.port),
                _handler(self),
                workers=self.workers,
                timeout=self.timeout.total_seconds(),
                backlog=self.backlog,
            )
        except OSError as exc:
            # A port in use or an address this host lacks is a setting to change: exit 2, not a failure.
            what = (
                "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            )
            raise ConfigError(
                [
                    f"http.port: {self.bind}:{self.port} {what}, so /healthz and /metrics cannot be served; "
                    "set REDIS_MAINT_HTTP__PORT (http.port) to a free port, REDIS_MAINT_HTTP__BIND to an "
                    "address of this host, or the port to 0 to turn the endpoint off"
                ]
            ) from None
        self.port = self.server.server_address[1]
        self.server.start()
        log.info(
            "http endpoint listening",
            extra={"bind": self.bind, "port": self.port, "workers": self.workers, "backlog": self.backlog},
        )
        return self.port

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.stop()
        self.server = None
        log.info("http endpoint stopped")


def _handler(endpoint: HttpEndpoint) -> type[BufferedHandler]:
    class Handler(BufferedHandler):
        server_version = "redis-maint"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._healthz()
            elif path == "/metrics":
                self._send(200, METRICS_CONTENT_TYPE, endpoint.metrics())
            else:
                self._json(404, {"error": "not found; this endpoint serves /healthz and /metrics"})

        def do_HEAD(self) -> None:
            self.do_GET()

        def _healthz(self) -> None:
            try:
                reasons = endpoint.health()
            except Exception as exc:  # a broken check is itself a reason to restart
                reasons = [f"health check failed: {type(exc).__name__}"]
            if reasons:
                self._json(503, {"status": "unhealthy", "reasons": reasons})
            else:
                self._json(200, {"status": "ok"})

        def _json(self, code: int, body: dict) -> None:
            self._send(code, "application/json", json.dumps(body).encode())

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            log.debug("http request", extra={"request": format % args})

    return Handler
