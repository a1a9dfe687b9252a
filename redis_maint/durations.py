"""Durations such as `30s`, `15m`, `24h`, `7d`, `2w`, `1h30m`, `0.5s`.

A unit is required everywhere (CLI flags, TOML, environment): `--older-than 2` once meant two
seconds and deleted every session. The units are s, m, h, d and w, lower case only, so `1M`
cannot be read as a minute by someone who meant a month.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
HINT = "use a number with a unit: s, m, h, d or w (e.g. 30s, 15m, 12h, 7d, 1h30m)"


def parse_duration(text: str | timedelta) -> timedelta:
    """Parse `90s`, `15m`, `1h30m`, `7d`. A bare number is an error that suggests units."""
    if isinstance(text, timedelta):
        if text < timedelta(0):
            raise ValueError(f"a duration must not be negative (got {text})")
        return text
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"not a duration: {text!r}; {HINT}")
    s = str(text).strip().replace(" ", "")
    if _NUMBER.fullmatch(s):
        return _no_unit(s)
    if s.startswith("-"):
        raise ValueError(f'"{text}" is negative; a duration must be 0s or longer')
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m[1]) * UNITS[m[2]]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f'"{text}" is not a duration; {HINT}{_case_hint(s)}')
    return timedelta(seconds=total)


def _no_unit(number: str) -> timedelta:
    raise ValueError(f'"{number}" has no unit; did you mean {number}h or {number}d?')


def _case_hint(s: str) -> str:
    lowered = s.lower()
    if lowered != s and _PART.sub("", lowered) == "":
        return f" (units are lower case: did you mean {lowered}?)"
    return ""


def format_duration(td: timedelta) -> str:
    """Shortest exact rendering: 86400s -> 1d, 5400s -> 1h30m, 0.25s -> 0.25s."""
    total = td.total_seconds()
    whole = int(total)
    if total != whole:
        return f"{total:g}s"
    if whole == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, whole = divmod(whole, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
