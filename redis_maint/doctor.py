"""`redis-maint doctor`: one line per check of what the jobs depend on."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_maint.errors import MaintenanceError
from redis_maint.redact import redact


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


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
    from redis_maint.history import HistoryStore

    store = HistoryStore(settings.history_url)
    store.check_writable()
    return f"{store.safe_url} writable"


def check_docker(settings: Any) -> str:
    """The engine that runs the integrity checks answers, and the check image is there."""
    from redis_maint.containers import engine_status

    return engine_status(settings.docker, settings.check_image)


def check_backup_target(settings: Any) -> str:
    """The backup target answers and accepts a write (a probe object, deleted again)."""
    from jobs.backup import open_backup_target

    target = open_backup_target(settings)
    try:
        return target.check_writable()
    finally:
        target.close()


# Checks in the order they print; jobs' infrastructure modules add theirs here.
CHECKS: list[tuple[str, Callable[[Any], str]]] = [
    ("redis", check_redis),
    ("data dir", check_data_dir),
    ("history", check_history),
    ("backups", check_backup_target),
    ("docker", check_docker),
]


def run_checks(settings: Any) -> list[CheckResult]:
    results = []
    for name, check in CHECKS:
        try:
            results.append(CheckResult(name, True, check(settings)))
        except Exception as exc:
            results.append(CheckResult(name, False, redact(str(exc))))
    return results
