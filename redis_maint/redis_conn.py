"""Connecting to the maintained Redis, with errors that say what to check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import redis
from redis.exceptions import AuthenticationError, ResponseError

from redis_maint.errors import RedisUnavailableError
from redis_maint.redact import redact, redact_url

T = TypeVar("T")


def connect(url: str, timeout: timedelta = timedelta(seconds=5)) -> redis.Redis:
    """A client for `url` (password and TLS come through the URL), proven with one PING."""
    secs = timeout.total_seconds()
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=secs,
            socket_connect_timeout=secs,
            health_check_interval=30,
            client_name="redis-maint",
        )
    except ValueError as exc:
        raise RedisUnavailableError(
            f"redis_url is not a Redis URL (got {redact_url(url)!r}): {exc}. "
            "Try: redis://:PASSWORD@host:6379/0 or rediss://… for TLS"
        ) from None
    call(url, client.ping)
    return client


def call(url: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one Redis command, turning connection and auth failures into RedisUnavailableError."""
    try:
        return fn(*args, **kwargs)
    except AuthenticationError as exc:
        raise RedisUnavailableError(
            f"Redis at {redact_url(url)} refused our credentials ({redact(str(exc))}); "
            "check the user and password in REDIS_MAINT_REDIS_URL"
        ) from None
    except ResponseError as exc:
        text = str(exc)
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise RedisUnavailableError(
                f"Redis at {redact_url(url)} refused: {redact(text)}; "
                "check the credentials and ACL of the user in REDIS_MAINT_REDIS_URL"
            ) from None
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {redact_url(url)}: {redact(str(exc))}; "
            "check that it is running and that REDIS_MAINT_REDIS_URL points at it"
        ) from None


def info(client: redis.Redis, section: str | None = None) -> dict[str, Any]:
    """INFO as a dict (redis-py already parses numbers)."""
    return client.info(section) if section else client.info()
