"""Run diagnose's parts side by side, each within its own time bound.

Each part runs in a daemon thread of its own. A part past its bound is reported as `timeout`
(naming the step it was on) and left behind: its sockets carry the same bound, so it ends soon
after, and as a daemon thread it never holds the process open. (concurrent.futures' workers are
joined at interpreter exit, so one Redis that never answers would hang the command there.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis_maint.errors import JobCancelledError, MaintenanceError
from redis_maint.incident.findings import Finding, Findings
from redis_maint.progress import Progress
from redis_maint.redact import redact

log = logging.getLogger("redis_maint.incident.parts")

POLL_S = 0.05


class Skip(Exception):
    """A part that does not apply or cannot run; its message says why."""


@dataclass
class Probe:
    """What a part gets: where to note its step (named if it times out) and where to add findings."""

    findings: Findings = field(default_factory=Findings)
    step: str = "starting"
    shared: dict[str, Any] = field(default_factory=dict)  # handed to later parts, never reported

    def doing(self, step: str) -> None:
        self.step = step


PartFn = Callable[[Probe], dict[str, Any]]


@dataclass(frozen=True)
class Part:
    name: str
    fn: PartFn
    bound_s: float


@dataclass
class PartResult:
    name: str
    status: str  # ok | failed | timeout | skipped
    reason: str | None
    duration_s: float
    data: dict[str, Any]
    findings: list[Finding]
    shared: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "status": self.status, "reason": self.reason, "duration_s": self.duration_s}


def skipped(name: str, reason: str) -> PartResult:
    return PartResult(name, "skipped", reason, 0.0, {}, [], {})


def run_parts(
    parts: list[Part], *, cancel: threading.Event | None = None, progress: Progress | None = None
) -> dict[str, PartResult]:
    """Start every part at once; wait for each until its own bound; never longer."""
    progress = progress or Progress()
    started = time.monotonic()
    running = []
    for part in parts:
        probe, box = Probe(), {}
        thread = threading.Thread(
            target=_work, args=(part, probe, box), name=f"diagnose-{part.name}", daemon=True
        )
        thread.start()
        running.append((part, probe, box, thread))
    results: dict[str, PartResult] = {}
    pending = list(running)
    while pending:
        if cancel is not None and cancel.is_set():
            raise JobCancelledError("diagnose: stopped on request (SIGTERM/SIGINT)")
        now = time.monotonic()
        for item in list(pending):
            part, probe, box, thread = item
            if not thread.is_alive():
                results[part.name] = _finished(part, probe, box)
            elif now - started >= part.bound_s:
                results[part.name] = _timed_out(part, probe, now - started)
            else:
                continue
            pending.remove(item)
            progress.advance()
        if pending:
            time.sleep(POLL_S)
    return {p.name: results[p.name] for p in parts}


def _work(part: Part, probe: Probe, box: dict[str, Any]) -> None:
    t0 = time.monotonic()
    try:
        box["data"] = part.fn(probe) or {}
    except Skip as exc:
        box["skip"] = str(exc)
    except MaintenanceError as exc:
        box["error"] = str(exc)
    except Exception as exc:  # a part's bug or an unexpected reply: the other parts still report
        log.exception("diagnose part failed", extra={"part": part.name})
        box["error"] = f"unexpected {type(exc).__name__} while {probe.step}: {exc}"
    box["duration_s"] = round(time.monotonic() - t0, 3)


def _finished(part: Part, probe: Probe, box: dict[str, Any]) -> PartResult:
    findings = [_tagged(f, part.name) for f in probe.findings.items]
    took = box.get("duration_s", 0.0)
    if "skip" in box:
        return PartResult(part.name, "skipped", box["skip"], took, {}, findings, probe.shared)
    if "error" in box:
        return PartResult(part.name, "failed", redact(box["error"]), took, {}, findings, probe.shared)
    return PartResult(part.name, "ok", None, took, box.get("data", {}), findings, dict(probe.shared))


def _timed_out(part: Part, probe: Probe, waited: float) -> PartResult:
    reason = f"did not finish within {part.bound_s:g}s (still {probe.step}); left behind, the rest went on"
    findings = [_tagged(f, part.name) for f in list(probe.findings.items)]
    return PartResult(part.name, "timeout", reason, round(waited, 3), {}, findings, {})


def _tagged(finding: Finding, part: str) -> Finding:
    from dataclasses import replace

    return finding if finding.part else replace(finding, part=part)
