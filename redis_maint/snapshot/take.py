"""Consistent copies of a live Redis's data files. Redis writes dump.rdb under a temp name and
renames it, so it can be copied live; the AOF set is copied while automatic rewrites are paused.

`take_snapshot` runs BGSAVE and waits for it, pauses automatic AOF rewrites, then copies
dump.rdb and the AOF set (Redis 7 manifest + the files it names, or a legacy single
appendonly.aof) into a staging dir, hashing each file while it is read once
(redis_maint.snapshot.datafiles). Nothing here is specific to one job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from redis_maint.errors import SnapshotError
from redis_maint.progress import Progress
from redis_maint.snapshot.aof_guard import aof_rewrite_paused
from redis_maint.snapshot.aof_manifest import live_files, parse_aof_manifest
from redis_maint.snapshot.bgsave import bgsave_and_wait, redis_call
from redis_maint.snapshot.datafiles import (
    SnapshotFile,
    check_data_dir,
    copy_consistent,
    decode,
    discover_layout,
)

log = logging.getLogger("redis_maint.snapshot.take")


@dataclass
class Snapshot:
    root: Path
    files: list[SnapshotFile]
    aof_manifest: str | None  # relative path of the manifest (Redis 7) or the legacy AOF
    rdb: str | None
    server: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    bgsave: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def take_snapshot(
    client: redis.Redis,
    data_dir: Path,
    staging_dir: Path,
    *,
    checkpoint: Callable[[], None],
    bgsave: bool = True,
    bgsave_timeout: timedelta = timedelta(minutes=10),
    rewrite_timeout: timedelta = timedelta(minutes=10),
    include_rdb: bool = True,
    include_aof: bool = True,
    guard_note: Path | None = None,
    progress: Progress | None = None,
) -> Snapshot:
    """BGSAVE (optional), then a consistent, hashed copy of the data files into `staging_dir`.

    `staging_dir` must be empty or absent; the caller removes it when done.
    """
    data_dir, staging_dir = Path(data_dir), Path(staging_dir)
    check_data_dir(data_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    layout = discover_layout(client)
    t0 = time.monotonic()
    save = (
        bgsave_and_wait(client, checkpoint=checkpoint, timeout=bgsave_timeout, progress=progress)
        if bgsave
        else None
    )
    t1 = time.monotonic()
    server = server_facts(client)
    want_aof = include_aof and layout.aof_enabled
    if save is not None and include_rdb:
        _check_rdb_is_fresh(data_dir / layout.rdb, save, client)
    with ExitStack() as stack:
        if want_aof:
            stack.enter_context(
                aof_rewrite_paused(client, checkpoint=checkpoint, timeout=rewrite_timeout, note=guard_note)
            )
        t2 = time.monotonic()
        files, manifest = copy_consistent(
            client,
            data_dir,
            staging_dir,
            layout,
            include_rdb=include_rdb,
            include_aof=want_aof,
            checkpoint=checkpoint,
        )
    t3 = time.monotonic()
    return Snapshot(
        root=staging_dir,
        files=files,
        aof_manifest=manifest,
        rdb=layout.rdb if include_rdb else None,
        server=server,
        timings={
            "bgsave_s": round(t1 - t0, 3),
            "aof_guard_s": round(t2 - t1, 3),
            "copy_s": round(t3 - t2, 3),
        },
        bgsave=save,
    )


def server_facts(client: redis.Redis) -> dict[str, Any]:
    """What a restore needs to know about the source, from one INFO call."""
    info = redis_call(client, client.info, "everything")
    keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    return {
        "redis_version": info.get("redis_version"),
        "run_id": info.get("run_id"),
        "role": info.get("role"),
        "master_replid": info.get("master_replid"),
        "master_repl_offset": info.get("master_repl_offset"),
        "rdb_last_save_time": info.get("rdb_last_save_time"),
        "dbsize": keys,
        "aof_enabled": int(info.get("aof_enabled", 0)),
    }


def _check_rdb_is_fresh(path: Path, save: dict[str, Any], client: redis.Redis) -> None:
    """A dump.rdb older than the save we just waited for means data_dir is not this Redis's dir."""
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise SnapshotError(
            f"{path}: {exc.strerror} after a successful BGSAVE; {_dir_hint(client)}"
        ) from None
    if mtime < save["requested_at"] - 60:
        raise SnapshotError(
            f"{path} was last written {int(save['requested_at'] - mtime)}s before the BGSAVE we waited for, "
            f"so it is not the file Redis just saved; {_dir_hint(client)}"
        )


def _dir_hint(client: redis.Redis) -> str:
    try:
        redis_dir = decode(client.config_get("dir")).get("dir")
    except redis.RedisError:
        redis_dir = "?"
    return f"Redis writes to {redis_dir} (its own view); REDIS_MAINT_DATA_DIR must be that directory as mounted here"


def planned_files(
    client: redis.Redis, data_dir: Path, *, include_rdb: bool = True, include_aof: bool = True
) -> list[dict[str, Any]]:
    """What take_snapshot would copy now, with current sizes (for dry runs); nothing is written."""
    layout = discover_layout(client)
    data_dir = Path(data_dir)
    check_data_dir(data_dir)
    rels = [layout.rdb] if include_rdb else []
    if include_aof and layout.aof_enabled:
        manifest_rel = f"{layout.aof_dir}/{layout.aof_file}.manifest" if layout.aof_dir else None
        if manifest_rel and (data_dir / manifest_rel).exists():
            text = (data_dir / manifest_rel).read_text()
            entries = live_files(parse_aof_manifest(text, source=str(data_dir / manifest_rel)))
            rels += [manifest_rel, *(f"{layout.aof_dir}/{e.name}" for e in entries)]
        else:
            rels.append(layout.aof_file)
    return [{"path": rel, "size": _size(data_dir / rel)} for rel in rels]


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
