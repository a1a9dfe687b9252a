"""The figures of one sweep, in the documented shape of the run summary (README: Sessions)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REASONS = ("stale", "expired_no_ttl", "unreadable", "organisation", "all")
TOP_ORGS = 10
# SCAN can return a key twice after Redis shrinks its table mid-sweep (once >90% of keys are gone).
# Changes are idempotent, but a count of unreadable keys should not double: remember that many.
UNREADABLE_DEDUP = 100_000


def largest_orgs(by_org: Counter | dict, n: int = TOP_ORGS) -> dict[str, int]:
    """The `n` organisations with the most sessions, largest first. The sessions without an
    organisation (key None) are not an organisation: they are counted apart, as `no_org`."""
    real = ((org, count) for org, count in by_org.items() if org is not None)
    return dict(sorted(real, key=lambda kv: (-kv[1], kv[0]))[:n])


def _text(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


@dataclass
class SweepReport:
    scanned: int = 0
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    ttl_repaired: int = 0
    unreadable: int = 0
    unreadable_samples: list[str] = field(default_factory=list)
    changed: int = 0  # rewritten, gone or given a TTL between our read and our change: left alone
    vanished: int = 0  # gone between SCAN and the read
    moved: int = 0  # Cluster: the slot moved mid-sweep; the next sweep sees these keys on their new node
    nodes: int = 0
    persistent_keys: int = 0  # keys without TTL when the sweep started; 0 lets it skip the TTL probe
    by_org: Counter = field(default_factory=Counter)  # organisation id (None: without one) -> sessions
    sample_limit: int = 5
    _unreadable_seen: set[bytes] = field(default_factory=set, repr=False)

    def note_unreadable(self, key: bytes) -> None:
        if key in self._unreadable_seen:
            return
        if len(self._unreadable_seen) < UNREADABLE_DEDUP:
            self._unreadable_seen.add(key)
        self.unreadable += 1
        if len(self.unreadable_samples) < self.sample_limit:
            self.unreadable_samples.append(_text(key))

    def remain(self, org: str | None) -> None:
        self.by_org[org] += 1

    def applied(self, reason: str, code: int, n: int = 1) -> None:
        """Count `n` changes by the code the check-and-act script returned (dry-run passes 1)."""
        if code == 0:
            self.changed += n
        elif reason == "ttl":
            self.ttl_repaired += n
        else:
            self.deleted[reason] += n

    def summary(self, duration_s: float) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "deleted": dict(self.deleted),
            "ttl_repaired": self.ttl_repaired,
            "unreadable": self.unreadable,
            "unreadable_samples": list(self.unreadable_samples),
            "changed_skipped": self.changed,
            "vanished": self.vanished,
            "moved": self.moved,
            "remaining": sum(self.by_org.values()),
            "remaining_by_org": largest_orgs(self.by_org),
            "remaining_no_org": self.by_org.get(None, 0),
            "nodes": self.nodes,
            "persistent_keys_at_start": self.persistent_keys,
            "duration_s": round(duration_s, 3),
            "keys_per_s": round(self.scanned / duration_s) if duration_s > 0 else None,
        }
