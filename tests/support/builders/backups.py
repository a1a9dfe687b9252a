"""Helpers for the backup tests: sessions in a real Redis, digests, objects in moto's server."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import boto3

from tests.support.services.redis import RedisServer

BUCKET = "redis-backups"
SECRET = "testing-secret-key-do-not-log"  # tests/support/services/moto.py MotoServer's AWS_SECRET_ACCESS_KEY


def fill_sessions(client, n: int, *, start: int = 0, batch: int = 5000) -> None:
    """`n` runbook-style sessions (JSON strings with a 24h TTL), pipelined."""
    rng = random.Random(start)
    for lo in range(start, start + n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(lo, min(lo + batch, start + n)):
            body = {"sub": f"user-{i}", "organisationId": f"org-{i % 97}", "createdAt": 1_700_000_000_000 + i}
            body["roles"] = rng.sample(["admin", "viewer", "editor", "owner"], 2)
            pipe.set(f"session:{i:08d}", json.dumps(body), ex=86400)
        pipe.execute()


def fill_types(client) -> None:
    """One key of each type, some with TTLs, so a digest covers more than strings."""
    client.hset("h:1", mapping={"a": "1", "b": "2"})
    client.rpush("l:1", *[str(i) for i in range(50)])
    client.sadd("s:1", *[f"m{i}" for i in range(30)])
    client.zadd("z:1", {f"m{i}": i / 3 for i in range(40)})
    client.xadd("x:1", {"event": "login"})
    client.set("ttl:1", "v", ex=3600)


def digest(client) -> bytes:
    return client.execute_command("DEBUG", "DIGEST")


def start_on(dir: Path, appendonly: bool) -> RedisServer:
    """A fresh redis-server on a restored directory (the caller stops it)."""
    return RedisServer(dir=dir, args={"appendonly": "yes" if appendonly else "no"}).start()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def objects(bucket: str = BUCKET) -> dict[str, bytes]:
    client = boto3.client("s3")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def multipart_uploads(bucket: str = BUCKET) -> list:
    return boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def staged(staging: Path) -> list[Path]:
    """Backup staging dirs left behind (the AOF-guard note is not one)."""
    if not staging.exists():
        return []
    return [p for inst in staging.iterdir() if inst.is_dir() for p in inst.iterdir() if p.is_dir()]
