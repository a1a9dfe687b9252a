"""A small HTTP/1.0 server that stays responsive under bursts and slow or idle clients.

Why not the stdlib's ThreadingHTTPServer: it listens with a backlog of 5, so a burst of 200
probes overflows the accept queue and waits for SYN retransmits (seconds), and it starts one
thread per connection that blocks reading with no timeout, so 1,000 half-sent requests hold
1,000 threads.

Here one thread owns every socket. It accepts (backlog 128), reads without blocking until a
request's head is complete, and only then hands the connection and its bytes to a fixed pool
of workers. An idle or slow client therefore costs a file descriptor, never a worker, and is
closed when its request is not complete within `timeout` of being accepted. Workers parse with
the stdlib's BaseHTTPRequestHandler (see BufferedHandler) and write the reply within `timeout`.
The open connections are capped: at the cap the oldest incomplete one is dropped, and when
all of them are complete requests waiting for a worker, new ones wait in the kernel's backlog.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import queue
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

log = logging.getLogger("redis_maint.http")

BACKLOG = 128
WORKERS = 8
TIMEOUT = 10.0
MAX_HEAD = 32 * 1024  # a GET's request line and headers; more is refused with 431
_ACCEPT_BATCH = 64
_PAUSE = 0.05  # how long accepting pauses when no connection can be taken right now


def default_max_connections() -> int:
    """1,024 open connections, or half the descriptor limit when that is lower."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))


@dataclass(eq=False)
class Request:
    """One connection: its bytes so far while being read, then the complete head."""

    conn: socket.socket
    address: tuple
    head: bytes = b""
    deadline: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)


class BufferedHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler over a head that was already read, for PooledHTTPServer.

    The reply is buffered and sent with a deadline, so a client that does not read cannot
    hold a worker longer than the server's timeout.
    """

    request: Request
    server: PooledHTTPServer

    def setup(self) -> None:
        self.connection = self.request.conn
        self.rfile = io.BytesIO(self.request.head)
        self.wfile = io.BytesIO()

    def handle(self) -> None:
        self.handle_one_request()  # HTTP/1.0: one request per connection

    def finish(self) -> None:
        send_all(self.connection, self.wfile.getvalue(), time.monotonic() + self.server.timeout)


def send_all(conn: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client did not read the reply in time")
        conn.settimeout(remaining)
        view = view[conn.send(view) :]


class PooledHTTPServer:
    """Listen on `address`; serve each request with `handler` on one of `workers` threads."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BufferedHandler],
        *,
        workers: int = WORKERS,
        timeout: float = TIMEOUT,
        backlog: int = BACKLOG,
        max_connections: int | None = None,
    ):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=backlog)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()[:2]
        self.handler, self.workers, self.timeout, self.backlog = handler, workers, timeout, backlog
        self.max_connections = max_connections or default_max_connections()
        self._pending: dict[socket.socket, Request] = {}  # insertion order is deadline order
        self._work: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._busy = 0  # requests queued or being handled; guarded by _lock
        self._lock = threading.Lock()
        self._paused_until: float | None = None
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._loop, name="http-endpoint", daemon=True)]
        self._threads += [
            threading.Thread(target=self._serve, name=f"http-worker-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close waiting connections, let workers finish their current request."""
        self._stopping = True
        if not self._threads:  # never started
            self._selector.close()
            for sock in (self.socket, self._wake_r, self._wake_w):
                sock.close()
            return
        self._wake_w.send(b"x")
        loop, workers = self._threads[0], self._threads[1:]
        loop.join(timeout)  # nothing is queued after the loop ends: the sentinels come last
        for _ in workers:
            self._work.put(None)
        for thread in workers:
            thread.join(timeout)
        self._wake_w.close()

    @property
    def open_connections(self) -> int:
        """Connections still being read, for tests and benchmarks."""
        return len(self._pending)

    @property
    def busy(self) -> int:
        """Requests read completely, waiting for a worker or being served."""
        with self._lock:
            return self._busy

    # --- the socket thread -------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stopping:
                for key, _events in self._selector.select(self._next_timeout()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._wake_r.recv(64)
                    else:
                        self._read(key.data)
        except Exception as exc:  # logged as JSON; /healthz stops answering, so the probe restarts us
            log.error("http endpoint stopped serving", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            for pending in list(self._pending.values()):
                self._drop(pending)
            self._selector.close()
            self._wake_r.close()
            self.socket.close()

    def _next_timeout(self) -> float | None:
        """Close requests past their deadline; return how long select may wait."""
        now = time.monotonic()
        waits = []
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.deadline > now:
                waits.append(oldest.deadline - now)
                break
            self._drop(oldest)
        if self._paused_until is not None:
            if now >= self._paused_until:
                self._paused_until = None
                self._selector.register(self.socket, selectors.EVENT_READ, "accept")
            else:
                waits.append(self._paused_until - now)
        return min(waits) if waits else None

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: free one, else wait
                if exc.errno in (errno.EMFILE, errno.ENFILE) and not self._drop_oldest():
                    self._pause()
                log.warning("http accept failed", extra={"error": exc.strerror})
                return
            conn.setblocking(False)
            request = Request(conn, address, deadline=time.monotonic() + self.timeout)
            self._pending[conn] = request
            self._selector.register(conn, selectors.EVENT_READ, request)
            if not self._within_cap():
                return

    def _within_cap(self) -> bool:
        """Drop the oldest incomplete requests beyond the cap; False when accepting must pause."""
        with self._lock:
            busy = self._busy
        while len(self._pending) + busy > self.max_connections and len(self._pending) > 1:
            self._drop_oldest()
        if busy + 1 >= self.max_connections:
            self._pause()  # every slot holds a complete request: let new ones wait in the backlog
            return False
        return True

    def _pause(self) -> None:
        if self._paused_until is None:
            self._selector.unregister(self.socket)
        self._paused_until = time.monotonic() + _PAUSE

    def _read(self, request: Request) -> None:
        try:
            data = request.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before finishing its request
            self._drop(request)
            return
        request.buffer += data
        if b"\r\n\r\n" in request.buffer or b"\n\n" in request.buffer:
            self._forget(request)
            request.head, request.buffer = bytes(request.buffer), bytearray()
            with self._lock:
                self._busy += 1
            self._work.put(request)
        elif len(request.buffer) > MAX_HEAD:
            _reply_now(request.conn, b"HTTP/1.0 431 Request Header Fields Too Large\r\n")
            self._drop(request)

    def _drop_oldest(self) -> bool:
        if not self._pending:
            return False
        self._drop(next(iter(self._pending.values())))
        return True

    def _forget(self, request: Request) -> None:
        del self._pending[request.conn]
        self._selector.unregister(request.conn)

    def _drop(self, request: Request) -> None:
        self._forget(request)
        request.conn.close()

    # --- the workers -------------------------------------------------------------------

    def _serve(self) -> None:
        while (request := self._work.get()) is not None:
            try:
                self.handler(request, request.address, self)
            except OSError as exc:  # the client went away or did not read its reply in time
                log.debug("http reply not delivered", extra={"error": f"{type(exc).__name__}: {exc}"})
            except Exception as exc:  # one bad request must not kill a worker
                log.warning("http request failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            finally:
                _close(request.conn)
                with self._lock:
                    self._busy -= 1


def _reply_now(conn: socket.socket, status_line: bytes) -> None:
    """A short error reply from the socket thread: best effort, never blocks."""
    with contextlib.suppress(OSError):
        conn.send(status_line + b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)  # lets the client read the whole reply before the close
    conn.close()
