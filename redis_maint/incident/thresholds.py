"""The health job's threshold verdicts (its `reasons`, "level: what"), as diagnose findings: each
with the part it concerns, its runbook procedure and the next command. The texts are the health
rules' own (jobs/health_rules.py); a test runs every threshold through here so none falls through."""

from __future__ import annotations

from redis_maint.incident import findings as F
from redis_maint.incident.findings import Finding

# (start of the reason's text, topic, part, procedure, next commands)
TOPICS = (
    ("PING latency", "latency", "reachability", F.UNRESPONSIVE, (F.HEALTH_RUN, "redis-cli --latency")),
    ("memory used/max", "memory", "memory", F.MEMORY, (F.SWEEP_DRY, "redis-maint keys big")),
    ("keyspace hit ratio", "memory", "memory", F.MEMORY, ("redis-maint keys big", F.HEALTH_RUN)),
    ("maxmemory is not set", "config", "memory", F.CONFIG, ("redis-maint config show --origin",)),
    ("maxmemory-policy is", "config", "memory", F.CONFIG, ("redis-maint config show --origin",)),
    ("connected clients", "clients", "load", F.HEALTH, (F.HEALTH_RUN, "redis-cli CLIENT LIST")),
    ("blocked clients", "clients", "load", F.HEALTH, (F.HEALTH_RUN, "redis-cli CLIENT LIST")),
    ("appendonly is off", "persistence", "persistence", F.PERSISTENCE, (F.HEALTH_RUN,)),
    ("rdb_last_bgsave_status", "persistence", "persistence", F.CORRUPTION, (F.SAVE,)),
    ("aof_last_write_status", "persistence", "persistence", F.CORRUPTION, (F.AOF_CHECK,)),
)


def findings_from(reasons: list[str], *, skip_topics: set[str] = frozenset()) -> list[Finding]:
    out = []
    for reason in reasons:
        severity, _, text = reason.partition(": ")
        topic = next((t for t in TOPICS if text.startswith(t[0])), None)
        if topic is None:
            out.append(
                Finding(severity, "threshold.other", text, F.HEALTH, (F.HEALTH_RUN,), part="thresholds")
            )
            continue
        _start, name, part, procedure, nxt = topic
        if name in skip_topics:
            continue
        out.append(
            Finding(
                severity,
                f"threshold.{name}",
                text,
                procedure,
                nxt,
                part=part,
            )
        )
    return out
