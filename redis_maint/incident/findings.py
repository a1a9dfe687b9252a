"""What diagnose concludes: findings ranked by severity, each naming the runbook procedure
(docs/runbook.md, and the original runbook's Incident Response) and the commands to run next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("critical", "warning", "info")

# docs/runbook.md sections (each says which section of the original runbook it replaces).
UNRESPONSIVE = "Redis unresponsive (docs/runbook.md; runbook: Incident Response > Redis Unresponsive)"
MEMORY = "Memory (docs/runbook.md; runbook: Incident Response > Memory Exhaustion)"
CORRUPTION = "Data corruption (docs/runbook.md; runbook: Incident Response > Data Corruption)"
PERSISTENCE = "Persistence (docs/runbook.md; runbook: Persistence Management)"
HEALTH = "Health checks (docs/runbook.md; runbook: Monitoring)"
SLOW = "Health checks (docs/runbook.md; runbook: Performance Tuning > Monitor Slow Queries)"
CONFIG = "Setup (docs/runbook.md; runbook: Container Management)"

# The exact commands a finding names (redis-maint's own first).
DIAGNOSE = "redis-maint diagnose"
DOCTOR = "redis-maint doctor"
SWEEP_DRY = "redis-maint sessions sweep --older-than 12h --dry-run"
AOF_CHECK = "redis-maint run aof-check"
SAVE = "redis-maint run backup --no-prune"
HEALTH_RUN = "redis-maint run health"
HEALTH_FAILURES = "redis-maint history --job health --status failed --since 1h"
RESTORE = "redis-maint backups restore {backup_id} --target DIR"
NEWEST_BACKUP = "redis-maint backups list --status complete --limit 1"


@dataclass(frozen=True)
class Finding:
    severity: str  # critical | warning | info
    code: str  # stable, for scripts: "redis.refused", "memory.evicting", ...
    title: str  # one line: what is wrong
    procedure: str  # the runbook procedure that deals with it
    next: tuple[str, ...]  # commands to run next, in order (redis-maint's first)
    detail: str = ""  # what it means, what the figures are
    part: str = ""  # the part that found it (set by the part runner)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "part": self.part,
            "title": self.title,
            "detail": self.detail,
            "procedure": self.procedure,
            "next": list(self.next),
        }


@dataclass
class Findings:
    """What one part found, in the order it found it."""

    items: list[Finding] = field(default_factory=list)

    def add(
        self,
        severity: str,
        code: str,
        title: str,
        procedure: str,
        next: tuple[str, ...] | list[str] = (),
        detail: str = "",
    ) -> None:
        self.items.append(Finding(severity, code, title, procedure, tuple(next), detail))


def ranked(findings: list[Finding]) -> list[Finding]:
    """Critical first, then warnings, then notes; in the order found within a severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def level(findings: list[Finding]) -> str:
    """The worst severity found, or `ok`."""
    return ranked(findings)[0].severity if findings else "ok"
