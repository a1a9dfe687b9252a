"""What `redis-maint sessions` says when it refuses or finds nothing. Pure text, no Redis.

Every command a message suggests is quoted for a POSIX shell (`shlex.join`), so an organisation id
with spaces, quotes or `$(...)` is pasted back exactly as it is and never runs anything.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

PROG = "redis-maint"
LARGEST = 5  # organisations a no-match message lists: enough to make a typo obvious


def command(
    args: Sequence[str],
    *,
    config_path: str | None = None,
    log_format: str = "json",
    as_json: bool = False,
    requested_by: str | None = None,
) -> str:
    """The command line to suggest: the operator's own global options and --json/--as, quoted."""
    argv = [PROG]
    if config_path:
        argv += ["--config", config_path]
    if log_format != "json":
        argv += ["--log-format", log_format]
    argv += list(args)
    if as_json:
        argv.append("--json")
    if requested_by:
        argv += ["--as", requested_by]
    return shlex.join(argv)


def org_flags(org: str | None, no_org: bool = False) -> list[str]:
    """`--org ID` (or `--org=ID` for an id that starts with "-", so it cannot be read as a flag)."""
    if no_org:
        return ["--no-org"]
    if org is None:
        return ["--all"]
    return [f"--org={org}"] if org.startswith("-") else ["--org", org]


def sessions_of(n: int, org: str | None, no_org: bool) -> str:
    """`17 sessions of organisation 'acme'`, `3 sessions without an organisationId`."""
    return f"{n} sessions without an organisationId" if no_org else f"{n} sessions of organisation {org!r}"


def share(part: int, whole: int) -> str:
    if whole <= 0 or part <= 0:
        return "0%"
    pct = 100 * part / whole
    return "<0.1%" if pct < 0.1 else f"{pct:.1f}%"


def no_match(org: str | None, no_org: bool, by_org: Mapping[str, int], without_org: int) -> str:
    """No session matched: say so, and list the largest organisations so a typo stands out."""
    head = "no session is without an organisationId" if no_org else f"no session has organisationId {org!r}"
    lines = [f"{head}; nothing was deleted."]
    largest = sorted(by_org.items(), key=lambda kv: (-kv[1], kv[0]))[:LARGEST]
    if largest:
        lines.append("The largest organisations (sessions, --org value):")
        width = len(str(largest[0][1]))
        lines += [f"  {n:>{width}}  {shlex.quote(name)}" for name, n in largest]
    else:
        lines.append("No session has an organisationId.")
    if without_org and not no_org:
        lines.append(f"Sessions without an organisationId: {without_org} (address them with --no-org).")
    return "\n".join(lines)


def refusal(lead: str, cmd: str) -> str:
    """`lead`, then the exact command to go ahead on a line of its own (nothing else on it)."""
    return f"{lead} To do it, run:\n  {cmd}\n(or add --dry-run to see the run first)"


def would_delete(what: str) -> str:
    return f"this would delete {what}; nothing deleted."


def early_sweep(older_than: str, max_age: str, deleted: Mapping[str, int], scanned: int) -> str:
    """Why a sweep whose threshold is below max_age refuses, with its dry pass's counts."""
    n = sum(deleted.values())
    parts = ", ".join(f"{reason} {k}" for reason, k in deleted.items() if k)
    return (
        f"--older-than {older_than} is shorter than max_age ({max_age}): this sweep would delete sessions "
        "that are still live, which logs those users out.\n"
        f"A dry pass (the real sweep, changing nothing) found {n} of {scanned} sessions ({share(n, scanned)}) "
        f"to delete{f' [{parts}]' if parts else ''}; nothing deleted."
    )
