"""Verdicts from redis-check-aof / redis-check-rdb exit codes and output (Redis 7.0).

Both tools exit 0 (valid) or 1 (anything else), so the verdict comes from the output:

- ``ok``: the tool said the file (set) is valid;
- ``truncated``: an AOF whose last command runs into the end of the file. Redis loads such a
  tail with ``aof-load-truncated yes``; ``offset`` is where the incomplete command starts
  (``ok_up_to``: what ``--fix`` would truncate to);
- ``corrupt``: bad data (format error, bad RDB base or dump, bad manifest), ``offset`` where
  the tool stopped when it says;
- ``error``: the tool could not check (missing file, permissions, killed, unknown output).

An RDB that ends early is ``corrupt``: unlike an AOF tail, Redis cannot load any of it.
Real outputs of Debian's 7.0.15 binaries are in tests/data/check-output/.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

OUTPUT_LINES = 12  # the tool's last lines kept in the summary

AOF_TOOL = "redis-check-aof"
RDB_TOOL = "redis-check-rdb"


class Verdict(StrEnum):
    OK = "ok"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    ERROR = "error"


@dataclass(frozen=True)
class CheckResult:
    """One tool's verdict on one file; `file` is relative to the checked directory."""

    file: str
    tool: str
    verdict: Verdict
    offset: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": str(self.verdict)}


_ANALYZED = re.compile(r"^AOF analyzed: filename=(?P<file>.+?), size=(?P<size>\d+), ok_up_to=(?P<ok>\d+),")
_NOT_VALID = re.compile(r"^AOF (?P<file>.+) is not valid\. Use the --fix option")
_FORMAT_ERROR = re.compile(r"^AOF (?P<file>.+) format error$")
_POS_ERROR = re.compile(r"^0x\s*(?P<pos>[0-9a-f]+): (?P<msg>.*)$")
_SHORT_READ = re.compile(r"Expected to read (?P<want>\d+) bytes, got (?P<got>\d+) bytes")
_BAD_NEWLINE = re.compile(r"Expected \\r\\n, got: (?P<a>[0-9a-f]{2})(?P<b>[0-9a-f]{2})")
_RDB_FILE = re.compile(r"^\[offset \d+\] Checking RDB file (?P<file>.+)$")
_RDB_OFFSET = re.compile(r"^\[offset (?P<offset>\d+)\] ")
_CANNOT_OPEN = re.compile(r"^Cannot open (?:BASE )?file:? (?P<file>[^:,]+)")
_AOF_VALID = ("All AOF files and manifest are valid",)
_RDB_ERROR = "--- RDB ERROR DETECTED ---"
_LINE_MAX = 128  # redis-check-aof reads RESP lines with fgets() into a 128-byte buffer


def tail(output: str, lines: int = OUTPUT_LINES) -> str:
    """The tool's last non-blank lines, as the summary keeps them."""
    kept = [line.rstrip() for line in output.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def parse_aof(exit_code: int | None, output: str, path: str) -> CheckResult:
    """Verdict of `redis-check-aof PATH` (a manifest, or a single legacy AOF)."""
    lines = [line.rstrip() for line in output.splitlines()]
    base_dir = posixpath.dirname(path) if path.endswith(".manifest") else ""

    def result(verdict: Verdict, file: str = path, offset: int | None = None) -> CheckResult:
        return CheckResult(_relative(base_dir, file, path), AOF_TOOL, verdict, offset, tail(output))

    if exit_code == 0 and _aof_valid(lines):
        return result(Verdict.OK)
    if exit_code not in (0, 1):
        return result(Verdict.ERROR)
    if any("FATAL AOF MANIFEST FILE ERROR" in line for line in lines):
        return result(Verdict.CORRUPT)
    if _RDB_ERROR in lines or any("RDB preamble of AOF file is not sane" in line for line in lines):
        return result(Verdict.CORRUPT, _last_rdb_file(lines) or path, _rdb_error_offset(lines))
    invalid = _first_match(_NOT_VALID, lines)
    if invalid is None:
        opened = _first_match(_CANNOT_OPEN, lines)
        return result(Verdict.ERROR, opened.group("file") if opened else path)
    file = invalid.group("file")
    analyzed = _analyzed(lines, file)
    offset = int(analyzed.group("ok")) if analyzed else None
    size = int(analyzed.group("size")) if analyzed else None
    verdict = Verdict.TRUNCATED if _truncated_tail(lines, file, size) else Verdict.CORRUPT
    return result(verdict, file, offset)


def parse_rdb(exit_code: int | None, output: str, path: str) -> CheckResult:
    """Verdict of `redis-check-rdb PATH`."""
    lines = [line.rstrip() for line in output.splitlines()]

    def result(verdict: Verdict, offset: int | None = None) -> CheckResult:
        return CheckResult(path, RDB_TOOL, verdict, offset, tail(output))

    if exit_code == 0 and any("RDB looks OK!" in line for line in lines):
        return result(Verdict.OK)
    if exit_code in (0, 1) and _RDB_ERROR in lines:
        return result(Verdict.CORRUPT, _rdb_error_offset(lines))
    # Exit 1 with only "Checking RDB file": the file could not be opened.
    return result(Verdict.ERROR)


def parse(tool: str, exit_code: int | None, output: str, path: str) -> CheckResult:
    if tool == AOF_TOOL:
        return parse_aof(exit_code, output, path)
    if tool == RDB_TOOL:
        return parse_rdb(exit_code, output, path)
    raise ValueError(f"unknown check tool {tool!r}")


def failed(tool: str, path: str, reason: str, output: str = "") -> CheckResult:
    """An `error` verdict for a check that did not finish (killed, timed out, engine gone)."""
    text = tail(f"{output}\n{reason}" if output else reason)
    return CheckResult(path, tool, Verdict.ERROR, None, text)


def _aof_valid(lines: list[str]) -> bool:
    if any(line in _AOF_VALID for line in lines):
        return True
    # A single (legacy) AOF: "AOF F is valid" or "AOF F is empty".
    return any(re.match(r"^AOF .+ is (valid|empty)$", line) for line in lines)


def _truncated_tail(lines: list[str], file: str, size: int | None) -> bool:
    """Did the check of `file` stop because the file ended in the middle of a command?"""
    if any(_FORMAT_ERROR.match(line) for line in lines):
        return False
    error = _error_line(lines, file)
    if error is None:
        # No message at all: a RESP line could not be read because the file ended.
        return True
    msg, pos = error.group("msg"), int(error.group("pos"), 16)
    if msg.startswith("Reached EOF before reading EXEC for MULTI"):
        return True
    short = _SHORT_READ.search(msg)
    if short:
        # fread() returns fewer bytes only at the end of the file.
        return int(short.group("got")) < int(short.group("want"))
    newline = _BAD_NEWLINE.search(msg)
    if newline and size is not None and size - pos < _LINE_MAX:
        # fgets() stopped at EOF: the digits are followed by the string's NUL, not \r\n.
        a, b = newline.group("a"), newline.group("b")
        return a == "00" or (a == "0d" and b == "00")
    return False


def _error_line(lines: list[str], file: str) -> re.Match[str] | None:
    """The `0x<pos>: message` line printed just before `file`'s "AOF analyzed" line."""
    for i, line in enumerate(lines):
        analyzed = _ANALYZED.match(line)
        if analyzed and analyzed.group("file") == file:
            return _POS_ERROR.match(lines[i - 1]) if i else None
    return None


def _analyzed(lines: list[str], file: str) -> re.Match[str] | None:
    for line in lines:
        match = _ANALYZED.match(line)
        if match and match.group("file") == file:
            return match
    return None


def _last_rdb_file(lines: list[str]) -> str | None:
    names = [m.group("file") for m in (_RDB_FILE.match(line) for line in lines) if m]
    return names[-1] if names else None


def _rdb_error_offset(lines: list[str]) -> int | None:
    if _RDB_ERROR not in lines:
        return None
    for line in lines[lines.index(_RDB_ERROR) + 1 :]:
        match = _RDB_OFFSET.match(line)
        if match:
            return int(match.group("offset"))
    return None


def _first_match(pattern: re.Pattern[str], lines: list[str]) -> re.Match[str] | None:
    for line in lines:
        match = pattern.match(line)
        if match:
            return match
    return None


def _relative(base_dir: str, file: str, path: str) -> str:
    """Names in a manifest are relative to its directory; report them relative to the checked dir."""
    if file == path or "/" in file or not base_dir:
        return file
    return posixpath.join(base_dir, file)
