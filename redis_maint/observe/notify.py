"""Webhooks after a run (an observer of the Runner): job failures, recoveries, health level changes, stale backups.

Events are transitions, derived from the history so they survive restarts and are the
same whichever process ran the job: a job that fails every minute notifies once when it
starts failing and once when it recovers. Delivery has a timeout and retries with backoff,
and never raises: a broken webhook must not fail the job it reports on.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis_maint.history.outcomes import is_real, previous_outcomes
from redis_maint.history.runs import HistoryStore, Run, RunStatus
from redis_maint.redact import redact
from redis_maint.timeutil import isoformat

log = logging.getLogger("redis_maint.observe.notify")

HEALTH_JOB = "health"
BACKUP_JOB = "backup"
BACKUP_AGE_JOB = "backup-age"
USER_AGENT = "redis-maint-notify/1"


@dataclass(frozen=True)
class Event:
    kind: str  # failure | recovery | health_level | backup_stale
    run: Run
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class Notifier:
    """The Runner's observer that sends what each run means. Never raises."""

    def __init__(self, cfg: Any, instance: str, store: HistoryStore):
        self.cfg = cfg  # the [notify] settings
        self.instance = instance
        self.store = store

    def __call__(self, run: Run) -> list[Event]:
        cfg = self.cfg
        if not (cfg.webhook_url or cfg.slack_webhook_url or cfg.ping_url):
            return []  # nothing configured: skip the history reads
        try:
            events = events_for(self.store, run)
            for event in events:
                deliver_event(cfg, self.instance, event)
            if is_real(run) and run.job == BACKUP_JOB and run.status == RunStatus.SUCCEEDED and cfg.ping_url:
                send(cfg, cfg.ping_url, None, what="dead-man's switch ping")
            return events
        except Exception:
            log.exception("notification step failed", extra={"job": run.job, "run_id": run.id})
            return []


def events_for(store: HistoryStore, run: Run) -> list[Event]:
    """What changed with this run, compared with the same job's previous real outcome."""
    if not is_real(run):
        return []
    previous = previous_outcomes(store, run)
    last = previous[0] if previous else None
    events = []
    if run.status == RunStatus.FAILED and (last is None or last.status != RunStatus.FAILED):
        events.append(_failure(run))
    if run.status == RunStatus.SUCCEEDED and last is not None and last.status == RunStatus.FAILED:
        events.append(Event("recovery", run, f"{run.job} recovered (run {run.id} succeeded)"))
    if run.job == HEALTH_JOB and run.status == RunStatus.SUCCEEDED:
        event = _health_change(run, previous)
        if event:
            events.append(event)
    return events


def _failure(run: Run) -> Event:
    if run.job == BACKUP_AGE_JOB:
        return Event("backup_stale", run, f"backups are older than the RPO: {run.error}")
    return Event("failure", run, f"{run.job} failed (run {run.id}): {run.error}")


def _health_change(run: Run, previous: list[Run]) -> Event | None:
    level = (run.summary or {}).get("level", "ok")
    ok_before = next((r for r in previous if r.status == RunStatus.SUCCEEDED), None)
    before = (ok_before.summary or {}).get("level", "ok") if ok_before else "ok"
    if level == before:
        return None
    reasons = list((run.summary or {}).get("reasons", []))
    text = f"Redis health is {level} (was {before})"
    if reasons:
        text += ": " + "; ".join(reasons)
    return Event("health_level", run, text, {"level": level, "previous_level": before, "reasons": reasons})


# -- payloads ---------------------------------------------------------------------------------
def payload(instance: str, event: Event) -> dict[str, Any]:
    """The generic webhook's JSON body (README: notifications). Everything in it is redacted."""
    run = event.run
    body = {
        "event": event.kind,
        "event_id": f"{run.id}:{event.kind}",  # lets a receiver drop a retried duplicate
        "instance": instance,
        "job": run.job,
        "run_id": run.id,
        "status": run.status,
        "trigger": run.trigger,
        "host": run.host,
        "started_at": isoformat(run.started_at),
        "finished_at": isoformat(run.finished_at),
        "error": redact(run.error) if run.error else None,
        "message": redact(event.message),
        "details": event.details,
    }
    return json.loads(redact(json.dumps(body)))


SLACK_ICONS = {"failure": ":red_circle:", "backup_stale": ":warning:", "recovery": ":large_green_circle:"}
LEVEL_ICONS = {"ok": ":large_green_circle:", "warning": ":warning:", "critical": ":red_circle:"}


def slack_payload(instance: str, event: Event) -> dict[str, Any]:
    icon = SLACK_ICONS.get(event.kind) or LEVEL_ICONS.get(event.details.get("level", ""), ":bell:")
    return {"text": redact(f"{icon} redis-maint [{instance}] {event.message}")}


def deliver_event(cfg: Any, instance: str, event: Event) -> None:
    log.info("notifying", extra={"event": event.kind, "job": event.run.job, "run_id": event.run.id})
    if cfg.webhook_url:
        send(cfg, cfg.webhook_url, payload(instance, event), what=f"{event.kind} webhook")
    if cfg.slack_webhook_url:
        send(cfg, cfg.slack_webhook_url, slack_payload(instance, event), what=f"{event.kind} Slack webhook")


# -- delivery ---------------------------------------------------------------------------------
def send(cfg: Any, url: str, body: dict[str, Any] | None, *, what: str) -> bool:
    """POST `body` as JSON (GET when None), retrying with backoff. True when delivered."""
    delay = cfg.backoff.total_seconds()
    attempts = cfg.retries + 1
    for attempt in range(1, attempts + 1):
        retry, reason = _attempt(url, body, cfg.timeout.total_seconds())
        if reason is None:
            return True
        if not retry or attempt == attempts:
            # The URL itself is a secret (Slack and ping URLs carry tokens): name the host only.
            log.error(
                f"{what} not delivered; check notify settings",
                extra={"host": _host(url), "attempts": attempt, "reason": reason},
            )
            return False
        time.sleep(delay)
        delay *= 2
    return False


def _attempt(url: str, body: dict[str, Any] | None, timeout: float) -> tuple[bool, str | None]:
    """One request: (worth retrying, reason) on failure, (False, None) on success."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")  # noqa: S310
    request.add_header("User-Agent", USER_AGENT)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https checked in settings)
            response.read()
        return False, None
    except urllib.error.HTTPError as exc:
        # 4xx means the URL or payload is wrong; only throttling and server errors can pass.
        return exc.code == 429 or exc.code >= 500, f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return True, redact(f"{type(exc).__name__}: {reason}")


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
