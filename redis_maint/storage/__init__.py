"""Backup targets: one small interface (base.Target), a local-directory and an S3 backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis_maint.storage.base import (
    ObjectInfo,
    ObjectLock,
    ObjectNotFound,
    Target,
    download,
    hash_object,
    join,
)

if TYPE_CHECKING:
    from redis_maint.storage.s3 import S3Options

__all__ = [
    "ObjectInfo",
    "ObjectLock",
    "ObjectNotFound",
    "Target",
    "download",
    "hash_object",
    "join",
    "open_target",
]


def open_target(uri: str, s3: S3Options | None = None) -> Target:
    """`s3://bucket/prefix` or a local directory. boto3 is imported only for S3 targets."""
    if uri.startswith("s3://"):
        from redis_maint.storage.s3 import S3Target

        return S3Target(uri, s3)
    from redis_maint.storage.local import LocalTarget

    return LocalTarget(uri)
