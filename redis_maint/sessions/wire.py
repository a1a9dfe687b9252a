"""One connection with commands in flight: send now, read the replies later, in order.

redis-py's pipeline sends a batch and then waits for all of it. A sweep wants more: Redis works
through the next batch while this process parses the previous one, so the two cores overlap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from redis_maint.sessions.scripts import SOURCES

OnReply = Callable[[Any], None]

try:  # hiredis packs a command in C; redis-py's own packer costs ~1 us per argument here
    from hiredis import pack_command as _hiredis_pack

    def _pack(args: tuple[Any, ...]) -> list[bytes]:
        return [_hiredis_pack(args)]

except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    from redis.connection import PythonRespSerializer

    _serializer = PythonRespSerializer(6000, lambda a: a if isinstance(a, bytes) else str(a).encode())

    def _pack(args: tuple[Any, ...]) -> list[bytes]:
        return _serializer.pack(*args)


class Wire:
    """Replies go to the callback given with each command; an error reply is passed as the exception."""

    def __init__(self, client: redis.Redis):
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        self._pending: deque[tuple[tuple[Any, ...], OnReply]] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, args: tuple[Any, ...], on_reply: OnReply) -> None:
        # no health-check PING: its reply would be read in place of one still in flight
        self._conn.send_packed_command(_pack(args), check_health=False)
        self._pending.append((args, on_reply))

    def settle(self) -> None:
        """Read every reply in flight and hand each to its callback."""
        while self._pending:
            args, on_reply = self._pending.popleft()
            try:
                reply: Any = self._conn.read_response()
            except NoScriptError:
                # the script cache was flushed (restart, failover, SCRIPT FLUSH): EVAL loads it again
                self.send(("EVAL", SOURCES[args[1]], *args[2:]), on_reply)
                continue
            except ResponseError as exc:
                reply = exc
            on_reply(reply)

    def close(self) -> None:
        """Return the connection; one with replies still unread is dropped, never reused."""
        if self._pending:
            self._conn.disconnect()
            self._pending.clear()
        self._pool.release(self._conn)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
