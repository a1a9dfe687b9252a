"""Whole `redis-maint ... --json` processes for the benchmarks: wall time and the parsed JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_json(env: dict, *args: str) -> tuple[float, dict]:
    """(wall seconds, stdout JSON) of one CLI run; exits naming the command when it fails."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scheduler.py"), *args, "--json"], capture_output=True, text=True, env=env
    )
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(args)} exited {proc.returncode}: {proc.stdout[-1500:]} {proc.stderr[-2500:]}"
        )
    return took, json.loads(proc.stdout)
