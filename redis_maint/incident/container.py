"""The Redis container, as `docker-compose ps`, `docker-compose logs --tail=100 redis` and
`docker stats redis` would show it, and what its state means."""

from __future__ import annotations

from typing import Any

from redis_maint.errors import ContainerError
from redis_maint.incident import findings as F
from redis_maint.incident.parts import Probe, Skip
from redis_maint.redact import redact

# Lines Redis logs when it cannot start or save, and the procedure each points to.
LOG_SIGNS = (
    ("Bad file format reading the append only file", F.CORRUPTION),
    ("Unexpected end of file reading the append only file", F.CORRUPTION),
    ("Short read or OOM loading DB", F.CORRUPTION),
    ("Wrong signature trying to load DB", F.CORRUPTION),
    ("Fatal error loading the DB", F.CORRUPTION),
    ("Can't save in background", F.PERSISTENCE),
    ("Background saving error", F.PERSISTENCE),
    ("Out Of Memory", F.MEMORY),
    ("Can't open the append-only file", F.PERSISTENCE),
)


def check(probe: Probe, docker_url: str, name: str, *, log_lines: int, timeout_s: float) -> dict[str, Any]:
    from redis_maint.checks.redis_container import describe_container

    if not name:
        raise Skip("jobs.diagnose.redis_container is empty: no container to look at")
    probe.doing(f"asking the Docker engine about container {name}")
    try:
        found = describe_container(docker_url, name, log_lines=log_lines, timeout_s=timeout_s)
    except ContainerError as exc:
        raise Skip(f"Docker engine not reachable: {exc}") from None
    if found is None:
        probe.findings.add(
            "info",
            "container.absent",
            f"no container or compose service named {name!r} on this Docker engine",
            F.CONFIG,
            ["docker ps -a", "redis-maint config show --origin"],
            "Redis may run elsewhere (another host, not in Docker); set jobs.diagnose.redis_container "
            "(REDIS_MAINT_JOBS__DIAGNOSE__REDIS_CONTAINER) to its name to have it looked at.",
        )
        return {"name": name, "found": False}
    found["logs"] = [redact(line) for line in found["logs"]]
    _judge(probe, found)
    return {"found": True, **found}


def _judge(probe: Probe, c: dict[str, Any]) -> None:
    add = probe.findings.add
    sign = _log_sign(c["logs"])
    said = f" Its log says: {sign[0]!r}." if sign else ""
    if c["oom_killed"]:
        add(
            "critical",
            "container.oom_killed",
            f"container {c['name']} was OOM-killed (status {c['state']})",
            F.MEMORY,
            ["docker-compose up -d redis", F.SWEEP_DRY, F.DIAGNOSE],
            "The kernel killed Redis for using more memory than the container may: maxmemory must stay "
            "well under the container's memory limit (a BGSAVE fork needs headroom too).",
        )
    if c["state"] in ("exited", "dead"):
        procedure = sign[1] if sign else F.UNRESPONSIVE
        nxt = [F.DIAGNOSE] if procedure != F.CORRUPTION else [F.AOF_CHECK, F.NEWEST_BACKUP]
        add(
            "critical",
            "container.exited",
            f"container {c['name']} is {c['state']} (exit code {c['exit_code']})",
            procedure,
            ["docker-compose logs --tail=100 redis", "docker-compose up -d redis", *nxt],
            f"Redis is not running in it.{said} Its last log lines are in this part's `logs`.",
        )
    elif c["state"] in ("restarting", "paused", "created"):
        add(
            "critical",
            f"container.{c['state']}",
            f"container {c['name']} is {c['state']}",
            F.UNRESPONSIVE,
            ["docker-compose logs --tail=100 redis", "docker-compose restart redis", F.DIAGNOSE],
            f"Redis does not serve while the container is {c['state']}.{said}",
        )
    if c["restarts"]:
        add(
            "warning",
            "container.restarts",
            f"container {c['name']} has restarted {c['restarts']} times",
            F.UNRESPONSIVE,
            ["docker-compose logs --tail=100 redis", F.DIAGNOSE],
            f"Each restart reloads the dataset from disk.{said}",
        )
    health = c.get("health") or {}
    if health.get("status") == "unhealthy":
        add(
            "critical",
            "container.unhealthy",
            f"container {c['name']} is unhealthy ({health.get('failing_streak')} failed checks)",
            F.UNRESPONSIVE,
            ["docker-compose ps", "docker-compose restart redis", F.DIAGNOSE],
            f"Last health check said: {health.get('last_output') or 'nothing'}",
        )
    stats = c.get("stats") or {}
    if (stats.get("memory_percent") or 0) >= 90:
        add(
            "warning",
            "container.memory",
            f"container {c['name']} uses {stats['memory_percent']}% of its memory limit",
            F.MEMORY,
            [F.SWEEP_DRY, F.DIAGNOSE],
            "Close to the limit the kernel OOM-kills Redis; a BGSAVE fork adds copy-on-write pages.",
        )


def _log_sign(lines: list[str]) -> tuple[str, str] | None:
    """The last log line that names a known failure, and its procedure."""
    for line in reversed(lines):
        for sign, procedure in LOG_SIGNS:
            if sign in line:
                return line.strip(), procedure
    return None
