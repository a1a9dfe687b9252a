"""Connecting to the maintained Redis, with errors that say what to check.

A `redis+sentinel://` URL (redis_maint/topology/sentinel.py) connects to the primary Sentinel names,
and `call` then follows a failover: a command that finds the primary gone (connection refused,
READONLY from a demoted primary) is retried, each time on the primary Sentinel names then, for at
most the URL's `failover_wait`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import redis
from redis.exceptions import AuthenticationError, BusyLoadingError, ReadOnlyError, ResponseError

from redis_maint.errors import RedisUnavailableError
from redis_maint.redact import redact, redact_url

T = TypeVar("T")
log = logging.getLogger("redis_maint.redis_conn")
# Between two attempts while Sentinel fails over: its own checks run every 100 ms to 1 s.
FAILOVER_RETRY_S = 0.5


def connect(url: str, timeout: timedelta = timedelta(seconds=5)) -> redis.Redis:
    """A client for `url` (password and TLS come through the URL), proven with one PING."""
    from redis_maint.topology import sentinel

    secs = timeout.total_seconds()
    if sentinel.is_sentinel_url(url):
        client: redis.Redis = sentinel.master_client(url, timeout)
        try:
            call(url, client.ping)
        except BaseException:
            client.close()
            raise
        return client
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
    """Run one Redis command, turning connection and auth failures into RedisUnavailableError.

    Through Sentinel, a lost primary is waited for (see the module's doc): `fn` runs again from the
    start, so it must be safe to repeat (reads, and the sweep's byte-compared check-and-act are).
    """
    from redis_maint.topology import sentinel

    if not sentinel.is_sentinel_url(url):
        return _call_once(url, fn, *args, **kwargs)
    wait = sentinel.failover_wait(url)
    deadline = time.monotonic() + wait.total_seconds()
    attempts = 0
    while True:
        attempts += 1
        try:
            return _call_once(url, fn, *args, **kwargs)
        except _PrimaryLost as lost:
            if time.monotonic() >= deadline:
                raise RedisUnavailableError(
                    f"no primary answered through Sentinel {redact_url(url)} within failover_wait "
                    f"({wait.total_seconds():g}s, {attempts} attempts); last error: {lost}. Check "
                    "`redis-cli -p 26379 SENTINEL MASTERS` and the nodes; raise ?failover_wait= in the URL "
                    "if failovers take longer"
                ) from None
            if attempts == 1:
                log.warning(
                    "the Redis primary did not answer; waiting for Sentinel to name one that does",
                    extra={"error": str(lost), "failover_wait_s": wait.total_seconds()},
                )
            time.sleep(FAILOVER_RETRY_S)


def call_pass(url: str, fn: Callable[[], T], *, restart_point: Callable[[], Callable[[], None]]) -> T:
    """`call` for a whole pass over a node (a scan, a sweep). Through Sentinel a lost primary makes
    `call` run the pass again from its start on the new primary (a SCAN cursor means nothing on another
    server). `restart_point()`, taken before the first attempt (only through Sentinel: nothing else
    runs a pass twice), returns what to call before each further attempt to take back what the lost
    one counted, so no key is counted twice."""
    from redis_maint.topology import sentinel

    if not sentinel.is_sentinel_url(url):
        return call(url, fn)
    restart = restart_point()
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            restart()
            log.warning("the pass lost its primary; starting it again", extra={"attempt": attempts})
        return fn()

    return call(url, attempt)


class _PrimaryLost(Exception):
    """The primary went away (or turned replica): through Sentinel, worth another attempt."""


def _call_once(url: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    from redis_maint.topology.sentinel import is_sentinel_url

    try:
        return fn(*args, **kwargs)
    except AuthenticationError as exc:
        raise RedisUnavailableError(
            f"Redis at {redact_url(url)} refused our credentials ({redact(str(exc))}); "
            "check the user and password in REDIS_MAINT_REDIS_URL"
        ) from None
    except ReadOnlyError as exc:
        if is_sentinel_url(url):
            raise _PrimaryLost(redact(str(exc))) from None
        raise
    except ResponseError as exc:
        text = str(exc)
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise RedisUnavailableError(
                f"Redis at {redact_url(url)} refused: {redact(text)}; "
                "check the credentials and ACL of the user in REDIS_MAINT_REDIS_URL"
            ) from None
        raise
    except BusyLoadingError:
        if is_sentinel_url(url):
            raise _PrimaryLost("the primary is loading its dataset (LOADING)") from None
        raise RedisUnavailableError(
            f"Redis at {redact_url(url)} is loading its dataset into memory and answers LOADING until it "
            "has; try again once it has loaded (`redis-maint diagnose` shows how far it is)"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if is_sentinel_url(url):
            raise _PrimaryLost(redact(str(exc))) from None
        raise RedisUnavailableError(
            f"cannot reach Redis at {redact_url(url)}: {redact(str(exc))}; "
            "check that it is running and that REDIS_MAINT_REDIS_URL points at it"
        ) from None


def info(client: redis.Redis, section: str | None = None) -> dict[str, Any]:
    """INFO as a dict (redis-py already parses numbers)."""
    return client.info(section) if section else client.info()
