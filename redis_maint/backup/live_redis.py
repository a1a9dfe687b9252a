"""Is a Redis running on a directory? Asked before a restore writes there.

A running Redis keeps its data in memory and rewrites its files from that memory: files
laid out under it are thrown away at the next save or rewrite, and it keeps appending to
whatever AOF it has open, even one that was moved aside. So a restore into a live data dir
"succeeds" and is then silently undone. Three cheap looks, each enough on its own:

1. the configured Redis answers and its `CONFIG GET dir` is the directory;
2. the configured Redis answers and the directory is `data_dir`, where this process sees
   Redis's dir (inside a container Redis reports its own path, e.g. /data);
3. a local `redis-server` process has the directory as its working directory (Redis chdirs
   to its `dir`), compared by device and inode, so symlinks and bind mounts cannot hide it.

A configured Redis that does not answer proves nothing (it may be starting, or the URL may be
stale), so look 3 always runs and the caller is told that look 1 and 2 could not.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis_maint.redact import redact, redact_url

PROC = Path("/proc")
MAX_WAIT = timedelta(seconds=2)  # a stopped Redis refuses at once; a hung one must not stall a restore
_PORT = re.compile(r":(\d+)$")


@dataclass(frozen=True)
class LiveRedis:
    """One Redis found running on the directory, and how to stop it."""

    how: str  # "config-dir" | "data-dir" | "process"
    detail: str
    stop: tuple[str, ...]  # shell commands, each pastable as it is (a `# why` comment at most)
    port: int | None = None


@dataclass
class DirCheck:
    directory: str  # the real path that was checked
    live: list[LiveRedis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # looks that could not be made, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": self.directory,
            "live": [{"how": r.how, "detail": r.detail} for r in self.live],
            "notes": self.notes,
        }


def check_dir(directory: Path, *, redis_url: str, data_dir: str, timeout: timedelta = MAX_WAIT) -> DirCheck:
    """Every Redis found running on `directory` (which need not exist)."""
    real = os.path.realpath(directory)
    result = DirCheck(real)
    answered, reported = _ask_configured(redis_url, min(timeout, MAX_WAIT), result.notes)
    if answered:
        where = redact_url(redis_url)
        stop = _stop_configured(redis_url)
        if reported is not None and _same_dir(reported, real):
            detail = f"the configured Redis ({where}) reports CONFIG GET dir = {reported}"
            result.live.append(LiveRedis("config-dir", detail, stop, _url_port(redis_url)))
        if _same_dir(data_dir, real):
            detail = (
                f"it is data_dir (REDIS_MAINT_DATA_DIR), where this process sees the data dir of the "
                f"configured Redis ({where}), which is running"
            )
            result.live.append(LiveRedis("data-dir", detail, stop, _url_port(redis_url)))
    result.live += _processes_on(real, result.notes)
    return result


def _ask_configured(url: str, timeout: timedelta, notes: list[str]) -> tuple[bool, str | None]:
    """(did it answer at all, its `dir` if it told us)."""
    import redis  # only a restore asks: listing jobs never loads redis-py

    secs = timeout.total_seconds()
    where = redact_url(url)
    try:
        client = redis.Redis.from_url(url, socket_timeout=secs, socket_connect_timeout=secs)
    except ValueError as exc:
        notes.append(
            f"the configured Redis URL cannot be used ({redact(str(exc))}): only processes were checked"
        )
        return False, None
    try:
        value = client.config_get("dir").get("dir")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if isinstance(exc, redis.AuthenticationError):
            return _refused(where, exc, notes)
        notes.append(
            f"the configured Redis ({where}) did not answer ({redact(str(exc))}); that does not prove it "
            "is stopped, so only local redis-server processes were checked"
        )
        return False, None
    except redis.ResponseError as exc:  # NOPERM, NOAUTH, WRONGPASS: it is up, it just won't say where
        return _refused(where, exc, notes)
    finally:
        client.close()
    return True, value if isinstance(value, str) else None


def _refused(where: str, exc: Exception, notes: list[str]) -> tuple[bool, None]:
    notes.append(f"the configured Redis ({where}) answered but refused CONFIG GET dir ({redact(str(exc))})")
    return True, None


def _processes_on(real: str, notes: list[str]) -> list[LiveRedis]:
    try:
        want = os.stat(real)
    except OSError:
        return []  # no such directory: no process can be working in it
    found = []
    for pid in _redis_pids():
        try:
            st = os.stat(PROC / pid / "cwd")
        except FileNotFoundError:
            continue  # it exited meanwhile
        except PermissionError:
            notes.append(
                f"cannot see the working directory of redis-server pid {pid} (run as root to check it)"
            )
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            found.append(_process(pid))
    return found


def _redis_pids() -> list[str]:
    pids = []
    for entry in PROC.glob("[0-9]*"):
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "redis-server":
            pids.append(entry.name)
    return sorted(pids, key=int)


def _process(pid: str) -> LiveRedis:
    """Redis sets its title to `redis-server HOST:PORT` (or `unixsocket:PATH`)."""
    try:
        title = (PROC / pid / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
    except OSError:
        title = "redis-server"
    match = _PORT.search(title.split(" ", 1)[-1])
    port = int(match[1]) if match and match[1] != "0" else None
    stop = (f"redis-cli -p {port} shutdown  # pid {pid}" if port else f"kill -TERM {pid}  # redis-server",)
    return LiveRedis("process", f"redis-server pid {pid} ({title}) works in it", stop, port)


def _same_dir(path: str, real: str) -> bool:
    if os.path.realpath(path) == real:
        return True
    try:
        return os.path.samefile(path, real)
    except (OSError, ValueError):
        return False


def _url_port(url: str) -> int | None:
    try:
        parts = urlsplit(url)
        return None if parts.scheme == "unix" else (parts.port or 6379)
    except ValueError:
        return None


def _stop_configured(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        local = f"redis-cli -s {shlex.quote(parts.path)} shutdown"
    else:
        local = f"redis-cli -h {shlex.quote(parts.hostname or 'localhost')} -p {_url_port(url)} shutdown"
    return ("docker-compose stop redis  # the compose stack", f"{local}  # the configured Redis")
