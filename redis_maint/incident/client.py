"""Redis connections for diagnose: one per part, bound by the part's time, never retried
(redis-py retries a timed-out command three times by default, which would multiply the bound)."""

from __future__ import annotations

import errno

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_maint.errors import RedisUnavailableError
from redis_maint.redact import redact_url


def open_client(url: str, timeout_s: float) -> redis.Redis:
    """A client that connects on first use; every command waits at most `timeout_s`."""
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise RedisUnavailableError(
            f"redis_url is not a Redis URL (got {redact_url(url)!r}): {exc}. "
            "Try: redis://:PASSWORD@host:6379/0 or rediss://… for TLS"
        ) from None


def classify(exc: BaseException) -> str:
    """What an error from Redis means for an operator: loading, misconf, busy, auth, noperm,
    timeout, refused, unreachable, or error (any other reply)."""
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return "loading"
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return "auth"
    if isinstance(exc, redis.exceptions.TimeoutError):
        return "timeout"
    if isinstance(exc, redis.exceptions.ConnectionError):
        return "refused" if _refused(exc) else "unreachable"
    text = str(exc)
    for prefix, state in (
        ("LOADING", "loading"),
        ("MISCONF", "misconf"),
        ("BUSY", "busy"),
        ("NOAUTH", "auth"),
        ("WRONGPASS", "auth"),
        ("NOPERM", "noperm"),
    ):
        if text.startswith(prefix):
            return state
    return "error"


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return True
        seen = seen.__cause__ or seen.__context__
    return "refused" in str(exc).lower()
