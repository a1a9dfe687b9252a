"""The daemon under test: as a real `scheduler.py daemon` process, or its real scheduler in a thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from config import load_settings
from redis_maint.run.daemon import Daemon
from tests.support.common import ROOT


def only_health_env(schedule: str) -> dict[str, str]:
    """Every job off except health, scheduled as `schedule`."""
    import jobs

    env = {f"REDIS_MAINT_JOBS__{name.upper().replace('-', '_')}__SCHEDULE": "off" for name in jobs.REGISTRY}
    return {**env, "REDIS_MAINT_JOBS__HEALTH__SCHEDULE": schedule}


def start_daemon(**env: str) -> subprocess.Popen:
    """`scheduler.py daemon` with only health scheduled (REDIS_MAINT_JOBS__HEALTH__SCHEDULE is required)."""
    env = {**only_health_env(env.pop("REDIS_MAINT_JOBS__HEALTH__SCHEDULE")), **env}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "daemon"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


WAIT_S = 120  # a safety net for a loaded machine (parallel tests), never a speed assertion


def stop_daemon(proc: subprocess.Popen) -> tuple[int, str]:
    """SIGTERM, then its exit code and stderr (the JSON log lines)."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, err


def wait_logged(proc: subprocess.Popen, msg: str, timeout: float = WAIT_S) -> str:
    """Read the daemon's stderr up to a log line with `"msg": msg`; returns what was read.

    "run started" is logged once the run is among the daemon's active runs (what its drain waits
    for); its history row is written a moment before that."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            seen.append(line)
            if f'"msg": "{msg}"' in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        raise TimeoutError(f"the daemon did not log {msg!r} within {timeout:.0f}s: {''.join(seen)[-2000:]}")
    return "".join(seen)


def stop_daemon_then(proc: subprocess.Popen, between: Callable[[], object]) -> tuple[int, str]:
    """SIGTERM; once the daemon has logged that it heard it ("stop requested"), call `between`; then its
    exit code and stderr. For what must happen while the daemon is draining, not before."""
    lines: list[str] = []
    heard = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if '"msg": "stop requested"' in line:
                heard.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.send_signal(signal.SIGTERM)
    heard.wait(WAIT_S)
    between()
    proc.wait(WAIT_S)
    reader.join(WAIT_S)
    return proc.returncode, "".join(lines)


def only_health_settings(schedule: str):
    """Settings from the environment with only health scheduled, as `schedule`."""
    import jobs

    return load_settings(environ={**os.environ, **only_health_env(schedule)}, jobs=jobs.REGISTRY)


class Scheduled:
    """A Daemon's real APScheduler scheduler, running in a thread (no signals, no catch-up)."""

    def __init__(self, settings):
        self.daemon = Daemon(settings)
        self.scheduler = self.daemon.build_scheduler()
        self.thread = threading.Thread(target=self.scheduler.start)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.scheduler.shutdown(wait=True)
        self.thread.join(30)
