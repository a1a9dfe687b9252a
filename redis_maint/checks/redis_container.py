"""The Redis container itself, through the Docker SDK, read-only: its state, restarts, OOM kill,
health, last log lines, and CPU and memory from one stats sample (`docker ps`, `docker logs`,
`docker stats` of the runbook's "Redis Unresponsive"). Nothing here starts, stops or changes it.

The name is a container name, or a compose service name (label com.docker.compose.service), so
`redis` finds infra/redis/docker-compose.yml's service whatever its project is called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from redis_maint.errors import ContainerError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

COMPOSE_SERVICE = "com.docker.compose.service"
LOG_LINE_CHARS = 500


def describe_container(url: str, name: str, *, log_lines: int, timeout_s: float) -> dict[str, Any] | None:
    """The container named `name` (or compose service `name`), or None when there is none.
    ContainerError when the engine cannot be reached."""
    client = _connect(url, timeout_s)
    try:
        container = _find(client, name)
        if container is None:
            return None
        state = container.attrs.get("State") or {}
        running = state.get("Status") == "running"
        return {
            **_state(container, state),
            "logs": _logs(container, log_lines),
            "stats": _stats(container) if running else None,
        }
    except ContainerError:
        raise
    except Exception as exc:
        raise ContainerError(f"Docker failed while reading container {name}: {_short(exc)}") from None
    finally:
        client.close()


def _connect(url: str, timeout_s: float) -> DockerClient:
    import docker

    where = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = (
            docker.DockerClient(base_url=url, timeout=timeout_s)
            if url
            else docker.from_env(timeout=timeout_s)
        )
        client.ping()
    except Exception as exc:
        raise ContainerError(
            f"cannot reach the Docker engine at {where} ({_short(exc)}); mount /var/run/docker.sock "
            "into the sidecar or set REDIS_MAINT_DOCKER__URL / DOCKER_HOST"
        ) from None
    return client


def _find(client: DockerClient, name: str) -> Container | None:
    from docker.errors import NotFound

    try:
        return client.containers.get(name)
    except NotFound:
        pass
    found = client.containers.list(all=True, filters={"label": f"{COMPOSE_SERVICE}={name}"})
    return found[0] if found else None


def _state(container: Container, state: dict[str, Any]) -> dict[str, Any]:
    health = state.get("Health") or None
    last_check = (health or {}).get("Log") or []
    return {
        "name": container.name,
        "id": container.short_id,
        "image": (container.attrs.get("Config") or {}).get("Image"),
        "state": state.get("Status"),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "error": state.get("Error") or None,
        "restarts": int(container.attrs.get("RestartCount") or 0),
        "started_at": state.get("StartedAt"),
        "finished_at": None if state.get("Status") == "running" else state.get("FinishedAt"),
        "health": None
        if health is None
        else {
            "status": health.get("Status"),
            "failing_streak": health.get("FailingStreak"),
            "last_output": (last_check[-1].get("Output") or "").strip()[-LOG_LINE_CHARS:]
            if last_check
            else None,
        },
    }


def _logs(container: Container, lines: int) -> list[str]:
    raw = container.logs(stdout=True, stderr=True, tail=lines, timestamps=False)
    text = raw.decode("utf-8", "replace")
    return [line[:LOG_LINE_CHARS] for line in text.splitlines()][-lines:]


def _stats(container: Container) -> dict[str, Any]:
    """One `docker stats` sample: the engine waits for a second reading, so CPU% is a real rate."""
    s = container.stats(stream=False)
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    mem = s.get("memory_stats") or {}
    usage = mem.get("usage")
    cache = (mem.get("stats") or {}).get("inactive_file", 0)
    used = None if usage is None else usage - cache
    limit = mem.get("limit")
    return {
        "cpu_percent": round(cpu_delta / system_delta * cpus * 100, 2) if system_delta > 0 else None,
        "memory_bytes": used,
        "memory_limit_bytes": limit,
        "memory_percent": round(used / limit * 100, 2) if used is not None and limit else None,
        "pids": (s.get("pids_stats") or {}).get("current"),
    }


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")
