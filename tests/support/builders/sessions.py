"""Session data for the sweep tests: values as the application writes them, seeding, snapshots."""

from __future__ import annotations

import json

import redis

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def server_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def session(created_ms: object, org: object = "org-a", **extra: object) -> bytes:
    """A session value as the application writes it (createdAt in epoch ms)."""
    return json.dumps({"createdAt": created_ms, "organisationId": org, "userId": "u", **extra}).encode()


def put(client: redis.Redis, key: str, value: bytes, ttl_ms: int | None = DAY_MS) -> None:
    client.set(key, value, px=ttl_ms)


def snapshot(client: redis.Redis) -> dict[bytes, tuple[str, bytes | None, int]]:
    """Every key: (type, value for strings, PEXPIRETIME). For small test datasets."""
    out = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value = client.get(key) if kind == "string" else None
        out[key] = (kind, value, client.pexpiretime(key))
    return out


def seed(
    client: redis.Redis, n: int, *, stale_every: int = 2, orgs: int = 7, prefix: str = "session:"
) -> int:
    """n sessions with a 24h TTL; every `stale_every`-th one was created 30h ago. Returns the stale count."""
    now = server_now_ms(client)
    pipe = client.pipeline(transaction=False)
    stale = 0
    for i in range(n):
        old = i % stale_every == 0
        stale += old
        created = now - (30 if old else 1) * HOUR_MS
        pipe.set(f"{prefix}{i:08d}", session(created, f"org-{i % orgs}"), px=DAY_MS)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    return stale
