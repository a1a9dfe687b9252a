"""`redis-check-aof --truncate-to-timestamp` on an assembled appendonlydir/, in a throwaway container.

The same hardened container as the integrity checks (no network, read-only root, no capabilities,
deadline, always removed) on a private directory. Given a time, the tool cuts the incr file at the
first `#TS` annotation later than it; without one (`latest`), it only checks the set. Either way
the tool must end by calling every file valid, or the restore stops.

Redis 7.0's tool refuses (exit 1, file untouched) when the incr file has no annotation at or before
the time ("has nothing before timestamp"): the time is before the first write of the generation, so
what is wanted is the base alone. The caller's RESP walk knows where the first annotation is; the
incr file is cut there and the set checked again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from redis_maint.checks import integrity
from redis_maint.checks.containers import CheckEnv, ContainerSpec, Engine, plan_mount
from redis_maint.checks.verdicts import AOF_TOOL, Verdict, parse_aof, tail
from redis_maint.errors import IntegrityError

NOTHING_BEFORE = "has nothing before timestamp"


@dataclass(frozen=True)
class Truncation:
    verdict: str  # the tool's verdict on the set after it ran: ok
    output: str  # the tool's last lines
    nothing_before: bool  # the tool found no annotation at or before the time (file untouched)
    duration_s: float


def run_tool(
    env: CheckEnv,
    root: Path,
    manifest: str,
    to_ts: int | None,
    *,
    run_id: int | str,
    cancel: threading.Event | None,
    timeout_s: float,
) -> Truncation:
    """Run the tool on `root/manifest` (truncating at `to_ts` when given); IntegrityError unless valid."""
    command = [AOF_TOOL]
    if to_ts is not None:
        command += ["--truncate-to-timestamp", str(to_ts)]
    engine = Engine(env.docker, run_id)
    try:
        engine.ensure_image(env.image)
        integrity.hand_over(root, env.docker.user)
        spec = ContainerSpec(env.image, [*command, manifest], "pitr-truncate", plan_mount(root, env.docker))
        finished = engine.run(spec, timeout_s, cancel)
    finally:
        engine.close()
    if finished.timed_out:
        raise IntegrityError(
            f"{AOF_TOOL} was still running after {timeout_s:.0f}s; raise docker.timeout (or the job's timeout)"
        )
    nothing = finished.exit_code == 1 and NOTHING_BEFORE in finished.output
    result = parse_aof(finished.exit_code, finished.output, manifest)
    if result.verdict != Verdict.OK and not nothing:
        at = f" at offset {result.offset}" if result.offset is not None else ""
        raise IntegrityError(
            f"{' '.join(command)} found the assembled AOF {result.verdict}{at} in {result.file}:\n"
            f"{tail(finished.output, 6)}"
        )
    return Truncation(str(result.verdict), tail(finished.output), nothing, finished.duration_s)
