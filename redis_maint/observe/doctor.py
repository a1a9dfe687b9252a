"""`redis-maint doctor`: one line per check of what the jobs depend on."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from redis_maint.errors import MaintenanceError
from redis_maint.redact import redact


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


class Skipped(Exception):
    """A check that does not apply to this configuration; the message says why."""


def check_redis(settings: Any) -> str:
    from redis_maint.redis_conn import connect

    client = connect(settings.redis_url, settings.redis_timeout)
    try:
        server = client.info("server")
        return f"PONG from Redis {server.get('redis_version')} ({server.get('redis_mode')})"
    finally:
        client.close()


def check_data_dir(settings: Any) -> str:
    path = Path(settings.data_dir)
    if not path.is_dir():
        raise MaintenanceError(f"{path} is not a directory; set REDIS_MAINT_DATA_DIR to Redis's data dir")
    names = sorted(os.listdir(path))
    for name in ("dump.rdb",):
        if (path / name).exists() and not os.access(path / name, os.R_OK):
            raise MaintenanceError(f"{path / name} is not readable by uid {os.getuid()}")
    return f"{path} readable ({', '.join(names[:6]) or 'empty'})"


def check_history(settings: Any) -> str:
    from redis_maint.history.runs import HistoryStore

    store = HistoryStore(settings.history_url)
    store.check_writable()
    return f"{store.safe_url} writable"


def check_daemon(settings: Any) -> str:
    """A daemon that stopped beating without a clean shutdown fails: nothing runs the schedules."""
    from redis_maint.history.daemons import all_daemons
    from redis_maint.history.runs import HistoryStore
    from redis_maint.timeutil import isoformat, utcnow

    now = utcnow()
    daemons = all_daemons(HistoryStore(settings.history_url))
    stale = [(d, why) for d in daemons if (why := d.gone(now)) is not None]
    if stale:
        raise MaintenanceError(
            "; ".join(
                f"daemon on {d.where()} last seen {isoformat(d.heartbeat_at)} "
                f"({(now - d.heartbeat_at).total_seconds():.0f}s ago) and never stopped cleanly: {why}"
                for d, why in stale
            )
            + ". Start `redis-maint daemon` again (a restart on that host clears this) and check its log"
        )
    live = [d for d in daemons if d.live(now)]
    if live:
        return "; ".join(
            f"live on {d.where()}, heartbeat {(now - d.heartbeat_at).total_seconds():.0f}s ago" for d in live
        )
    if not daemons:
        raise Skipped("no daemon has used this history store yet")
    last = daemons[0]
    return f"no daemon running; the last, on {last.where()}, stopped at {isoformat(last.stopped_at)}"


def check_docker(settings: Any, needs: list[tuple[bool, str]]) -> str:
    """The engine that runs the integrity checks answers, and the check image is there; only
    when an enabled job will start containers (a sidecar without the Docker socket is fine)."""
    from redis_maint.checks.containers import engine_status

    verdicts = needs
    users = [why for needed, why in verdicts if needed]
    if not users:
        raise Skipped(
            f"no enabled job needs Docker ({'; '.join(why for _n, why in verdicts)}); "
            "ad hoc `run aof-check` and `backups verify --deep` still need it"
        )
    return f"{engine_status(settings.docker, settings.check_image)} (needed by {'; '.join(users)})"


def check_backup_target(settings: Any) -> str:
    """The backup target answers and accepts a write (a probe object, deleted again)."""
    target = settings.target.open()
    try:
        return target.check_writable()
    finally:
        target.close()


def check_archive(settings: Any) -> str:
    """With archive.enabled: Redis writes the `#TS` annotations a restore to a time needs, and the lag."""
    if not settings.archive.enabled:
        raise Skipped("archive.enabled is false")
    from redis_maint.archive.service import timestamps_enabled
    from redis_maint.redis_conn import connect

    client = connect(settings.node_redis_url, settings.redis_timeout)
    try:
        stamped = timestamps_enabled(client)
    finally:
        client.close()
    if not stamped and not settings.archive.configure_redis:
        raise MaintenanceError(
            "aof-timestamp-enabled is no on Redis: the archive has no #TS annotations to restore to a time by; "
            "add `aof-timestamp-enabled yes` to redis.conf (CONFIG SET it now), or set archive.configure_redis = true"
        )
    note = (
        "aof-timestamp-enabled yes"
        if stamped
        else "aof-timestamp-enabled no (the archiver sets it: configure_redis)"
    )
    return f"{note}; {_archive_lag(settings)}"


def _archive_lag(settings: Any) -> str:
    from redis_maint.archive.state import ArchiveState
    from redis_maint.archive.status import lag_seconds
    from redis_maint.history.runs import HistoryStore
    from redis_maint.timeutil import utcnow

    state = ArchiveState(HistoryStore(settings.history_url), settings.instance)
    gens = state.generations()
    current = state.current()
    if current is None:
        return "nothing archived yet"
    lag = lag_seconds(gens, utcnow())
    return f"generation {current.generation}, lag {'unknown' if lag is None else f'{lag:.1f} s'}"


def run_checks(settings: Any, docker_needs: list[tuple[bool, str]]) -> list[CheckResult]:
    """Every check in the order it prints. `docker_needs`: (needs Docker, why) per job that can
    start containers, so the engine is checked only when an enabled job will use it."""
    checks: list[tuple[str, Callable[[Any], str]]] = [
        ("redis", check_redis),
        ("data dir", check_data_dir),
        ("history", check_history),
        ("daemon", check_daemon),
        ("backups", check_backup_target),
        ("docker", partial(check_docker, needs=docker_needs)),
        ("archive", check_archive),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(CheckResult(name, True, check(settings)))
        except Skipped as exc:
            results.append(CheckResult(name, True, f"skipped: {redact(str(exc))}", skipped=True))
        except Exception as exc:
            results.append(CheckResult(name, False, redact(str(exc))))
    return results
