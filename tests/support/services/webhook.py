"""A real HTTP server in a thread that records webhook requests (for notification tests)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    """Records every request; answers with `codes` in turn (then 200)."""

    codes: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def start(self) -> WebhookServer:
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posted(self, path: str | None = None) -> list[dict]:
        return [r.json() for r in self.requests if r.method == "POST" and (path is None or r.path == path)]

    def _handler(self):
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with hook._lock:
                    hook.requests.append(Request(self.command, self.path, dict(self.headers), body))
                    code = hook.codes.pop(0) if hook.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = _record
            do_GET = _record

            def log_message(self, *args) -> None:
                pass

        return Handler
