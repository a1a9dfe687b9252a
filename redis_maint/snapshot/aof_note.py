"""The AOF-rewrite guard's note: the operator's `auto-aof-rewrite-percentage` and who paused it.

The note outlives a SIGKILLed process, so whoever finds it (the next guard, the daemon on
start, the health job) can tell a pause that is still needed from one left by a dead run.
Format (JSON): {"original": "100", "owners": [{job, run_id, host, pid, token, since}]}.
The old format, one number, is still read; its owner is unknown (`owners` is None).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis_maint.history.leases import PROCESS_TOKEN, active_holder, live_holders, pid_alive
from redis_maint.run.current_run import current_run
from redis_maint.timeutil import as_utc, isoformat, utcnow

if TYPE_CHECKING:
    from redis_maint.history.runs import HistoryStore


@dataclass(frozen=True)
class Owner:
    """One guard that paused rewrites: its run (None outside the run path) and its process."""

    job: str | None
    run_id: int | None
    host: str
    pid: int
    token: str
    since: datetime

    @classmethod
    def here(cls) -> Owner:
        ref = current_run.get()
        return cls(
            job=ref.job if ref else None,
            run_id=ref.run_id if ref else None,
            host=socket.gethostname(),
            pid=os.getpid(),
            token=PROCESS_TOKEN,
            since=utcnow(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "run_id": self.run_id,
            "host": self.host,
            "pid": self.pid,
            "token": self.token,
            "since": isoformat(self.since),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Owner:
        return cls(
            job=raw.get("job"),
            run_id=raw.get("run_id"),
            host=str(raw["host"]),
            pid=int(raw["pid"]),
            token=str(raw.get("token", "")),
            since=as_utc(datetime.fromisoformat(str(raw["since"]).replace("Z", "+00:00"))),
        )

    def describe(self) -> str:
        run = f"{self.job} run {self.run_id}" if self.run_id is not None else "a run"
        return f"{run} (host {self.host} pid {self.pid}) since {isoformat(self.since)}"


@dataclass
class Note:
    original: str
    owners: list[Owner] | None  # None: old one-number note, owner unknown

    def describe_owners(self) -> str:
        if self.owners is None:
            return "an unknown run (a note from an older redis-maint)"
        return "; ".join(o.describe() for o in self.owners) or "nobody (the last owner could not restore it)"


def read_note(path: Path) -> Note | None:
    """The note, or None when there is none (or it is unreadable: then nobody can be trusted with it)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if text.isdigit():
        return Note(original=text, owners=None)
    try:
        raw = json.loads(text)
        return Note(original=str(raw["original"]), owners=[Owner.from_json(o) for o in raw["owners"]])
    except (ValueError, KeyError, TypeError):
        return None


def write_note(path: Path, note: Note) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"original": note.original, "owners": [o.to_json() for o in note.owners or []]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body) + "\n")
    tmp.replace(path)  # atomic: a reader sees the old note or the new one, never half of one


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the note between processes (flock on a sibling file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def owner_alive(owner: Owner, store: HistoryStore | None, mine: list[Owner]) -> bool:
    """Could this owner still be copying the AOF? `mine` are this process's active guards.

    On this host a dead pid (or our pid with another token: a restarted container) is proof of
    death. With the history store, the owner's run must also be `running` with a live lease holder.
    Without a store, anything not provably dead counts as alive.
    """
    if owner.host == socket.gethostname():
        if owner.pid == os.getpid():
            if owner.token != PROCESS_TOKEN or owner not in mine:
                return False
        elif not pid_alive(owner.pid):
            return False
    if store is None or owner.run_id is None or owner.job is None:
        return True
    run = store.get(owner.run_id)
    if run is None or run.status != "running":
        return False
    holder = active_holder(store, owner.job)
    return holder is not None and holder.run_id == owner.run_id


def live_owners(note: Note, store: HistoryStore | None, mine: list[Owner]) -> list[str]:
    """Descriptions of the note's owners that may still be alive (empty: nobody needs the pause)."""
    if note.owners is not None:
        return [o.describe() for o in note.owners if owner_alive(o, store, mine)]
    if store is None:
        return ["an unknown run (a note from an older redis-maint)"]
    # Old note, owner unknown: any live run (other than the one asking) might have written it.
    ref = current_run.get()
    me = ref.run_id if ref else None
    return [f"{job} run {h.run_id} ({h.describe()})" for job, h in live_holders(store) if h.run_id != me]
