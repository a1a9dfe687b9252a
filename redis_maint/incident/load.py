"""Latency and load: SLOWLOG entries newer than the previous diagnose run, grouped by command
(names and durations only, never arguments), and the clients; the thresholds are the health job's
and are applied by the job."""

from __future__ import annotations

from typing import Any

from redis_maint.incident import findings as F
from redis_maint.incident.client import open_client
from redis_maint.incident.parts import Probe

SLOWLOG_ENTRIES = 128
# Commands that block Redis for as long as they run over the whole keyspace.
BLOCKING = {
    "KEYS",
    "FLUSHALL",
    "FLUSHDB",
    "DEBUG",
    "SMEMBERS",
    "HGETALL",
    "LRANGE",
    "SORT",
    "EVAL",
    "EVALSHA",
}


def check(
    probe: Probe, url: str, info: dict[str, Any], *, timeout_s: float, since_epoch: float | None
) -> dict[str, Any]:
    probe.doing(f"SLOWLOG GET {SLOWLOG_ENTRIES}")
    client = open_client(url, timeout_s)
    try:
        entries = client.slowlog_get(SLOWLOG_ENTRIES)
        threshold = client.config_get("slowlog-log-slower-than")
    finally:
        client.close()
    fresh = [e for e in entries if since_epoch is None or int(e["start_time"]) > since_epoch]
    groups = group(fresh)
    data = {
        "clients": {
            "connected": int(info.get("connected_clients", 0)),
            "blocked": int(info.get("blocked_clients", 0)),
            "rejected_connections": int(info.get("rejected_connections", 0)),
        },
        "ops_per_sec": info.get("instantaneous_ops_per_sec"),
        "slowlog": {
            "since": since_epoch,
            "new_entries": len(fresh),
            "threshold_us": _int(_decode(threshold).get("slowlog-log-slower-than")),
            "by_command": groups,
        },
    }
    _judge(probe, data)
    return data


def group(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{command, count, max_us, total_us}], slowest total first."""
    by: dict[str, dict[str, Any]] = {}
    for e in entries:
        name = command_name(e.get("command")) or "?"
        row = by.setdefault(name, {"command": name, "count": 0, "max_us": 0, "total_us": 0})
        took = int(e.get("duration", 0))
        row["count"] += 1
        row["total_us"] += took
        row["max_us"] = max(row["max_us"], took)
    return sorted(by.values(), key=lambda r: -r["total_us"])


def command_name(command: bytes | str | None) -> str | None:
    if command is None:
        return None
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.split(" ", 1)[0].upper() or None


def _judge(probe: Probe, d: dict[str, Any]) -> None:
    slow = d["slowlog"]
    if not slow["new_entries"]:
        return
    top = ", ".join(
        f"{g['command']} x{g['count']} (max {g['max_us'] / 1000:.1f} ms)" for g in slow["by_command"][:5]
    )
    blocking = [g["command"] for g in slow["by_command"] if g["command"] in BLOCKING]
    probe.findings.add(
        "warning" if blocking else "info",
        "load.slowlog",
        f"{slow['new_entries']} slow commands since the last diagnose: {top}",
        F.SLOW,
        [F.HEALTH_RUN, "redis-cli SLOWLOG GET 10"],
        (
            f"{', '.join(blocking)} run over whole keys or the keyspace and block every other client. "
            if blocking
            else ""
        )
        + "Slow commands come from clients: find which one sends them (`redis-cli CLIENT LIST`).",
    )


def _decode(mapping: dict) -> dict[str, str]:
    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return {text(k): text(v) for k, v in mapping.items()}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
