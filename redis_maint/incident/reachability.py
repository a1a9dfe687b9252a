"""Is Redis there, and does it answer? PING with its latency, or what stops it: the connection
error, or a LOADING, MISCONF or BUSY state, each with its runbook step. When INFO answers (also
while loading, or refusing writes), it is handed to the parts that read it."""

from __future__ import annotations

import time
from typing import Any

import redis

from redis_maint.incident import findings as F
from redis_maint.incident.client import classify, open_client
from redis_maint.incident.parts import Probe
from redis_maint.redact import redact, redact_url

PING_SAMPLES = 5


def check(probe: Probe, url: str, timeout_s: float) -> dict[str, Any]:
    where = redact_url(url)
    client = open_client(url, timeout_s)
    try:
        state, ping_ms, error = _ping(probe, client)
        info = _info(probe, client) if state in ("ok", "loading", "misconf") else None
    finally:
        client.close()
    probe.shared["state"] = state
    probe.shared["info"] = info
    probe.shared["ping_ms"] = ping_ms
    data: dict[str, Any] = {"url": where, "state": state, "ping_ms": ping_ms, "error": error}
    if info is not None:
        data["server"] = {
            "redis_version": info.get("redis_version"),
            "role": info.get("role"),
            "uptime_s": info.get("uptime_in_seconds"),
            "loading": int(info.get("loading", 0)),
        }
    _judge(probe, state, where, error, info, timeout_s)
    return data


def _ping(probe: Probe, client: redis.Redis) -> tuple[str, float | None, str | None]:
    samples = []
    for i in range(PING_SAMPLES):
        probe.doing(f"PING {i + 1} of {PING_SAMPLES}")
        t0 = time.perf_counter()
        try:
            client.ping()
        except redis.RedisError as exc:
            return classify(exc), None, redact(str(exc))
        samples.append((time.perf_counter() - t0) * 1000)
    return "ok", round(sorted(samples)[len(samples) // 2], 3), None


def _info(probe: Probe, client: redis.Redis) -> dict[str, Any] | None:
    probe.doing("INFO everything")
    try:
        return client.info("everything")
    except redis.RedisError:
        return None


def _judge(
    probe: Probe, state: str, where: str, error: str | None, info: dict[str, Any] | None, timeout_s: float
) -> None:
    add = probe.findings.add
    if state in ("refused", "unreachable"):
        add(
            "critical",
            f"redis.{state}",
            f"Redis at {where} is down: {error}",
            F.UNRESPONSIVE,
            [
                "docker-compose ps",
                "docker-compose logs --tail=100 redis",
                "docker-compose up -d redis",
                F.DIAGNOSE,
            ],
            "Nothing accepts connections there. The container and data-files parts say why it is not "
            "running (exited, OOM-killed, an AOF it cannot load).",
        )
    elif state == "timeout":
        add(
            "critical",
            "redis.timeout",
            f"Redis at {where} accepted the connection but did not answer PING within {timeout_s:g}s",
            F.UNRESPONSIVE,
            [F.HEALTH_FAILURES, "docker stats redis", "docker-compose restart redis", F.DIAGNOSE],
            "It is running but stuck: a long command (KEYS, DEBUG SLEEP, a big DEL), a fork on a "
            "starved host, or swapping. The container part shows its CPU and memory.",
        )
    elif state == "loading":
        add(
            "warning",
            "redis.loading",
            f"Redis at {where} is loading its dataset{_loading(info)}",
            F.UNRESPONSIVE,
            [F.DIAGNOSE],
            "It answers LOADING to every command until the RDB/AOF is in memory; run diagnose again "
            "when the eta has passed. A load that never ends is a Data corruption case.",
        )
    elif state == "misconf":
        add(
            "critical",
            "redis.misconf",
            f"Redis at {where} refuses writes: MISCONF (its last background save failed)",
            F.CORRUPTION,
            [F.SAVE, F.HEALTH_RUN],
            "With stop-writes-on-bgsave-error yes Redis refuses every write until a BGSAVE succeeds. "
            "Fix the cause first (the host part: the data dir's disk, its permissions), then "
            f"`{F.SAVE}` saves again, which lets writes through.",
        )
    elif state == "busy":
        add(
            "critical",
            "redis.busy",
            f"Redis at {where} is BUSY running a script or function past lua-time-limit",
            F.UNRESPONSIVE,
            ["redis-cli SCRIPT KILL", "redis-cli FUNCTION KILL", F.DIAGNOSE],
            "Every other command waits for the script. SCRIPT KILL works if it has not written; "
            "otherwise only SHUTDOWN NOSAVE ends it (losing writes since the last save).",
        )
    elif state in ("auth", "noperm"):
        add(
            "critical",
            f"redis.{state}",
            f"Redis at {where} refused redis-maint: {error}",
            F.CONFIG,
            [F.DOCTOR, "redis-maint config show --origin"],
            "Check the user and password in REDIS_MAINT_REDIS_URL and the ACL in redis.conf.",
        )
    elif state == "error":
        add(
            "warning",
            "redis.error",
            f"Redis at {where} answered PING with an error: {error}",
            F.UNRESPONSIVE,
            [F.DOCTOR],
        )


def _loading(info: dict[str, Any] | None) -> str:
    if not info or not int(info.get("loading", 0)):
        return ""
    done = info.get("loading_loaded_perc")
    eta = info.get("loading_eta_seconds")
    return f" ({done}% done, eta {eta}s)" if done is not None else ""
