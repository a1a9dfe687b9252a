"""How fast the CLI answers, as whole processes, against the floor its libraries set.

    .venv/bin/python bench/cli_speed.py [--repeat 7]

Every command runs `--repeat` times in an interleaved order (so a noisy spell hits them all alike)
against a temporary SQLite history holding a few hundred runs and backups. The floor is
`python -c "import sqlalchemy, pydantic, click, rich.table"`: a read-only command that needs the
history cannot start faster than the libraries it must load. The goal is at most 1.25x that floor
for `jobs`, `history` and `backups list`, and at most 1.5x `redis-maint --help` for `config show`,
`config sample` and every `--help`.
"""

from __future__ import annotations

import argparse
import os
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
]


def seed_history(env: dict[str, str], runs: int = 300) -> None:
    """A history with real rows, written through the project's own store."""
    code = f"""
from redis_maint.history.runs import HistoryStore, RunStatus
store = HistoryStore({env["REDIS_MAINT_HISTORY_URL"]!r})
for i in range({runs}):
    store.record("health", "scheduled", RunStatus.SUCCEEDED, requested_by="daemon", summary={{"level": "ok", "i": i}})
"""
    subprocess.run([PY, "-c", code], env=env, cwd=ROOT, check=True)


def time_once(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.decode()[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="redis-maint-cli-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_MAINT_")}
    env.update(
        REDIS_MAINT_HISTORY_URL=f"sqlite:///{tmp}/history.db",
        REDIS_MAINT_TARGET__URI=str(tmp / "backups"),
        REDIS_MAINT_STATE_DIR=str(tmp),
    )
    seed_history(env)
    commands = [FLOOR, HELP, *HISTORY_COMMANDS, *HELP_COMMANDS]
    for _, cmd in commands:  # warm the page cache and .pyc files
        time_once(cmd, env)
    samples: dict[str, list[float]] = {name: [] for name, _ in commands}
    for round_ in range(args.repeat):
        order = commands if round_ % 2 == 0 else list(reversed(commands))
        for name, cmd in order:
            samples[name].append(time_once(cmd, env))
    med = {name: statistics.median(s) for name, s in samples.items()}
    floor, help_ = med[FLOOR[0]], med[HELP[0]]
    print(f"medians of {args.repeat}, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"{'command':<58} {'median s':>9} {'vs floor':>9} {'vs --help':>9} {'goal':>10}")
    for name, _ in commands:
        goal = ""
        if (name, _) in HISTORY_COMMANDS:
            goal = "ok" if med[name] <= 1.25 * floor else "MISSED"
            goal = f"<=1.25x fl {goal}"
        elif (name, _) in HELP_COMMANDS:
            goal = "ok" if med[name] <= 1.5 * help_ else "MISSED"
            goal = f"<=1.5x hlp {goal}"
        print(f"{name:<58} {med[name]:>9.3f} {med[name] / floor:>8.2f}x {med[name] / help_:>8.2f}x  {goal}")


if __name__ == "__main__":
    main()
