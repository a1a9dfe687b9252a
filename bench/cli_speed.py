"""How fast the CLI answers, as whole processes, against the floor its libraries set.

    .venv/bin/python bench/cli_speed.py [--repeat 7]

Every command runs `--repeat` times in an interleaved order (so a noisy spell hits them all alike)
against a temporary SQLite history holding 300 runs and 60 backups; the warm-up round also writes
the job catalog (`<state_dir>/job-catalog.json`) that `jobs` reads instead of importing every job.
Each command's wall time and CPU time (user + system) are reported. PYTHONDONTWRITEBYTECODE is
dropped, so the project's modules load from .pyc files as an installed package's do. The floor is
`python -c "import sqlalchemy, pydantic, click, rich.table"`: a read-only command that needs the
history cannot start faster than the libraries it must load. The goal is at most 1.25x that floor
for `jobs`, `history` and `backups list`, and at most 1.5x `redis-maint --help` for `config show`,
`config sample` and every `--help`. Those two must load pydantic to validate and print every
setting, so they are also shown against the libraries alone (`import click, pydantic.types`).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = [PY, str(ROOT / "scheduler.py")]

FLOOR = (
    "floor: import sqlalchemy, pydantic, click, rich.table",
    [PY, "-c", "import sqlalchemy, pydantic, click, rich.table"],
)
HELP = ("redis-maint --help", [*CLI, "--help"])
# What `config show` and `config sample` cannot do without: the libraries that parse and validate
# settings. Shown for comparison; the rest of their time is building the settings models.
SETTINGS_FLOOR = (
    "settings floor: import click, pydantic.types",
    [PY, "-c", "import click, pydantic.types; from pydantic import BaseModel"],
)
HISTORY_COMMANDS = [
    ("jobs --json", [*CLI, "jobs", "--json"]),
    ("history --json", [*CLI, "history", "--json"]),
    ("backups list --json", [*CLI, "backups", "list", "--json"]),
]
HELP_COMMANDS = [
    ("config show", [*CLI, "config", "show"]),
    ("config sample", [*CLI, "config", "sample"]),
    ("run --help", [*CLI, "run", "--help"]),
    ("backups --help", [*CLI, "backups", "--help"]),
    ("history --help", [*CLI, "history", "--help"]),
]
# Not goals, shown for comparison: the default piped output (tsv) and the auditors' CSV export.
OTHER_COMMANDS = [
    ("history (piped: tsv)", [*CLI, "history"]),
    ("history --csv --all", [*CLI, "history", "--csv", "--all"]),
]


def seed_history(env: dict[str, str], runs: int = 300, backups: int = 60) -> None:
    """A history with real rows, written through the project's own store and catalog."""
    code = f"""
from datetime import timedelta
from redis_maint.backup.stored import location_for, new_backup_id
from redis_maint.history.catalog import BackupRecord, Catalog
from redis_maint.history.runs import HistoryStore, RunStatus
from redis_maint.timeutil import utcnow
store = HistoryStore({env["REDIS_MAINT_HISTORY_URL"]!r})
for i in range({runs}):
    store.record("health", "scheduled", RunStatus.SUCCEEDED, requested_by="daemon", summary={{"level": "ok", "i": i}})
catalog = Catalog(store)
for i in range({backups}):
    at = utcnow() - timedelta(days=i)
    backup_id = new_backup_id(at)
    location = location_for("default", backup_id, at)
    catalog.add(BackupRecord(id=backup_id, run_id=None, instance="default", target="/b/" + location,
                             target_root="/b", location=location, created_at=at, status="pending"))
    files = [{{"path": "dump.rdb", "size": 1000 + i, "sha256": "0" * 64}}]
    catalog.mark_complete(backup_id, size=1000 + i, files=files)
"""
    subprocess.run([PY, "-c", code], env=env, cwd=ROOT, check=True)


def time_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="redis-maint-cli-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_MAINT_")}
    # As installed: the project's modules from .pyc files (written in the warm-up round), like the
    # libraries in site-packages; PYTHONDONTWRITEBYTECODE would compile them on every call.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        REDIS_MAINT_HISTORY_URL=f"sqlite:///{tmp}/history.db",
        REDIS_MAINT_TARGET__URI=str(tmp / "backups"),
        REDIS_MAINT_STATE_DIR=str(tmp),
    )
    seed_history(env)
    commands = [FLOOR, HELP, SETTINGS_FLOOR, *HISTORY_COMMANDS, *HELP_COMMANDS, *OTHER_COMMANDS]
    for _, cmd in commands:  # warm the page cache, .pyc files and the job catalog (state_dir)
        time_once(cmd, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in commands}
    for round_ in range(args.repeat):
        order = commands if round_ % 2 == 0 else list(reversed(commands))
        for name, cmd in order:
            samples[name].append(time_once(cmd, env))
    med = {name: statistics.median(w for w, _ in s) for name, s in samples.items()}
    cpu = {name: statistics.median(c for _, c in s) for name, s in samples.items()}
    floor, help_ = med[FLOOR[0]], med[HELP[0]]
    cpu_floor, cpu_help = cpu[FLOOR[0]], cpu[HELP[0]]
    print(f"medians of {args.repeat}, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("wall: elapsed time; cpu: user + system time of the process (less moved by other work on the host)")
    print(
        f"{'command':<54} {'wall s':>7} {'vs floor':>8} {'vs help':>8} {'cpu s':>7} {'vs floor':>8} "
        f"{'vs help':>8}  goal (wall)"
    )
    for name, _ in commands:
        goal = ""
        if (name, _) in HISTORY_COMMANDS:
            goal = "<=1.25x floor " + ("ok" if med[name] <= 1.25 * floor else "MISSED")
        elif (name, _) in HELP_COMMANDS:
            goal = "<=1.5x --help " + ("ok" if med[name] <= 1.5 * help_ else "MISSED")
        print(
            f"{name:<54} {med[name]:>7.3f} {med[name] / floor:>7.2f}x {med[name] / help_:>7.2f}x "
            f"{cpu[name]:>7.3f} {cpu[name] / cpu_floor:>7.2f}x {cpu[name] / cpu_help:>7.2f}x  {goal}"
        )
    settings_floor = SETTINGS_FLOOR[0]
    print(
        f"{settings_floor}: --help is {med[HELP[0]] / med[settings_floor]:.2f}x of it (cpu "
        f"{cpu[HELP[0]] / cpu[settings_floor]:.2f}x); config show {med['config show'] / med[settings_floor]:.2f}x "
        f"(cpu {cpu['config show'] / cpu[settings_floor]:.2f}x), config sample "
        f"{med['config sample'] / med[settings_floor]:.2f}x (cpu {cpu['config sample'] / cpu[settings_floor]:.2f}x)"
    )


if __name__ == "__main__":
    main()
