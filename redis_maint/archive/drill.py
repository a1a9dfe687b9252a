"""The weekly restore drill's archive part: restore the AOF archive to `latest` and count its keys.

1. At the drill's start, the source's key count (INFO keyspace, every db) and Redis's clock `t0`.
2. Wait (bounded) until the archive is safe up to `t0`: a restore to `latest` then holds every write
   acknowledged before the count was taken. An archive that does not catch up fails the drill: the
   RPO it promises is not being kept.
3. Restore to `latest` (archive/restore.py: download, sha256, truncate in a container, load in a
   throwaway redis-server) into a private directory, removed afterwards.
4. The source's key count again. The restored dataset is the source at an instant between the two
   counts, so its keys (loaded as a replica: nothing expired) must lie between them, give or take the
   keys whose TTL ran out since (the proof server's `expired_keys`: gone from the source, still in
   the archive). Outside that range the drill fails and says by how much.

The summary part: `archive: {to, keys, source_keys, expired, ok}` and the figures behind them.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from redis_maint.archive import restore as pitr
from redis_maint.archive.state import ArchiveState
from redis_maint.backup.live_redis import DirCheck
from redis_maint.checks.containers import CheckEnv
from redis_maint.errors import MaintenanceError
from redis_maint.history.runs import HistoryStore
from redis_maint.snapshot.bgsave import redis_call, server_time
from redis_maint.storage import Target
from redis_maint.timeutil import as_utc, isoformat

POLL_S = 0.2


def source_keys(client: redis.Redis) -> int:
    """Keys of every database of the source (INFO keyspace), as the proof server counts them."""
    info = redis_call(client, client.info, "keyspace")
    return sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))


def keys_match(loaded: int, before: int, after: int, expired: int) -> bool:
    """The restored keys against the source's counts taken before and after the restore."""
    low, high = min(before, after), max(before, after)
    return low - expired <= loaded <= high + expired


def wait_until_safe(
    state: ArchiveState, t0: datetime, timeout_s: float, checkpoint: Callable[[], None] | None = None
) -> datetime | None:
    """The archive's safe_until once it reaches `t0`, else None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        cur = state.current()
        safe = cur.safe_until if cur is not None else None
        if safe is not None and as_utc(safe) >= t0:
            return safe
        if time.monotonic() >= deadline:
            return None
        if checkpoint is not None:
            checkpoint()
        time.sleep(POLL_S)


def drill(
    env: CheckEnv,
    target: Target,
    store: HistoryStore,
    instance: str,
    client: redis.Redis,
    req: pitr.Request,
    *,
    catch_up_s: float,
) -> dict[str, Any]:
    """Restore the archive to `latest` and check its keys against the source; `ok` says whether it passed."""
    before = source_keys(client)
    t0 = datetime.fromtimestamp(server_time(client), UTC)
    out: dict[str, Any] = {"to": None, "keys": None, "source_keys": before, "expired": None, "ok": False}
    state = ArchiveState(store, instance)
    safe = wait_until_safe(state, t0, catch_up_s, req.checkpoint)
    if safe is None:
        cur = state.current()
        out["error"] = (
            f"the AOF archive did not catch up with the drill's start ({isoformat(t0)}) within "
            f"{catch_up_s:.0f}s: it is safe only up to "
            f"{isoformat(cur.safe_until) if cur and cur.safe_until else 'no instant yet'}; "
            "check the archiver (`redis-maint archive status`: lag and problem)"
        )
        return out
    work = Path(env.docker.snapshot_dir) / f"pitr-drill-{req.run_id}-{secrets.token_hex(3)}"
    try:
        result = pitr.restore(
            env, target, store, instance, _into(req, work), probe=lambda d: DirCheck(str(d))
        )
    except MaintenanceError as exc:
        out["error"] = f"the restore of the AOF archive to latest failed: {exc}"
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
    after = source_keys(client)
    proof = result["proof"]
    loaded, expired = proof["loaded_keys"], proof["expired_keys"]
    ok = keys_match(loaded, before, after, expired)
    out.update(
        to=result["window"]["end"],
        to_time="latest",
        generation=result["generation"],
        keys=loaded,
        live_keys=proof["keys"],
        expired=expired,
        source_keys_after=after,
        safe_until=isoformat(safe),
        digest=proof["digest"],
        segments=result["segments"],
        durations_s=result["durations_s"],
        ok=ok,
    )
    if not ok:
        out["error"] = (
            f"the AOF archive restored to latest ({out['to']}) loaded {loaded} keys, but the source had "
            f"{before} at the drill's start and {after} after the restore ({expired} keys expired by TTL "
            "since, allowed for): the archive is missing writes or holds extra ones; restore a time "
            "with `redis-maint backups restore --to-time` and compare, and check `redis-maint archive status`"
        )
    return out


def _into(req: pitr.Request, work: Path) -> pitr.Request:
    from dataclasses import replace

    return replace(req, directory=work / "restored", force=False, to_ts=None)
