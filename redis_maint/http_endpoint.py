"""The daemon's HTTP endpoint: /healthz and /metrics, nothing else.

A stdlib ThreadingHTTPServer in a daemon thread: two read-only routes need no framework,
and a slow scrape never blocks a health probe.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis_maint.errors import MaintenanceError

log = logging.getLogger("redis_maint.http")

HealthCheck = Callable[[], list[str]]
MetricsFn = Callable[[], bytes]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpEndpoint:
    def __init__(self, bind: str, port: int, health: HealthCheck, metrics: MetricsFn):
        self.bind, self.port = bind, port
        self.health, self.metrics = health, metrics
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen and serve in the background; returns the bound port."""
        try:
            self.server = ThreadingHTTPServer((self.bind, self.port), _handler(self))
        except OSError as exc:
            raise MaintenanceError(
                f"cannot serve /healthz and /metrics on {self.bind}:{self.port}: {exc.strerror}; "
                "set http.port (REDIS_MAINT_HTTP__PORT) to a free port, or 0 to turn the endpoint off"
            ) from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="http-endpoint", daemon=True)
        self.thread.start()
        log.info("http endpoint listening", extra={"bind": self.bind, "port": self.port})
        return self.port

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.server = None
        log.info("http endpoint stopped")


def _handler(endpoint: HttpEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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
