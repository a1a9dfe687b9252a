"""Verdicts parsed from real redis-check-aof / redis-check-rdb 7.0.15 outputs (no services).

The outputs in tests/data/check-output/ were made by capture.sh there: Debian's binaries run
on files written by a real redis-server, then truncated or overwritten on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_maint.checks.verdicts import AOF_TOOL, RDB_TOOL, Verdict, failed, parse, tail

OUTPUTS = Path(__file__).parent / "data" / "check-output"
MANIFEST = "appendonlydir/appendonly.aof.manifest"
INCR = "appendonlydir/appendonly.aof.2.incr.aof"
BASE = "appendonlydir/appendonly.aof.2.base.rdb"

# case: (tool, path given to the tool, exit code, verdict, file reported, offset)
CASES = {
    "aof-ok": (AOF_TOOL, MANIFEST, 0, Verdict.OK, MANIFEST, None),
    "rdb-ok": (RDB_TOOL, "dump.rdb", 0, Verdict.OK, "dump.rdb", None),
    "aof-truncated-mid-bulk": (AOF_TOOL, MANIFEST, 1, Verdict.TRUNCATED, INCR, 463),
    "aof-truncated-mid-line": (AOF_TOOL, MANIFEST, 1, Verdict.TRUNCATED, INCR, 463),
    "aof-truncated-after-line": (AOF_TOOL, MANIFEST, 1, Verdict.TRUNCATED, INCR, 463),
    "aof-multi-without-exec": (AOF_TOOL, MANIFEST, 1, Verdict.TRUNCATED, INCR, 490),
    "aof-incr-format-error": (AOF_TOOL, MANIFEST, 1, Verdict.CORRUPT, INCR, 463),
    "aof-incr-bad-newline": (AOF_TOOL, MANIFEST, 1, Verdict.CORRUPT, INCR, 463),
    "aof-base-flipped": (AOF_TOOL, MANIFEST, 1, Verdict.CORRUPT, BASE, 1126),
    "aof-bad-manifest": (AOF_TOOL, MANIFEST, 1, Verdict.CORRUPT, MANIFEST, None),
    "aof-missing-incr": (AOF_TOOL, MANIFEST, 1, Verdict.ERROR, INCR, None),
    "aof-no-manifest": (
        AOF_TOOL,
        "appendonlydir/nothere.manifest",
        1,
        Verdict.ERROR,
        "appendonlydir/nothere.manifest",
        None,
    ),
    "legacy-ok": (AOF_TOOL, "legacy.aof", 0, Verdict.OK, "legacy.aof", None),
    "legacy-empty": (AOF_TOOL, "legacy.aof", 0, Verdict.OK, "legacy.aof", None),
    "legacy-truncated": (AOF_TOOL, "legacy.aof", 1, Verdict.TRUNCATED, "legacy.aof", 463),
    "rdb-crc": (RDB_TOOL, "dump.rdb", 1, Verdict.CORRUPT, "dump.rdb", 1126),
    "rdb-flipped": (RDB_TOOL, "dump.rdb", 1, Verdict.CORRUPT, "dump.rdb", 1126),
    "rdb-truncated": (RDB_TOOL, "dump.rdb", 1, Verdict.CORRUPT, "dump.rdb", 695),
    "rdb-missing": (RDB_TOOL, "nope.rdb", 1, Verdict.ERROR, "nope.rdb", None),
    "usage": (AOF_TOOL, MANIFEST, 1, Verdict.ERROR, MANIFEST, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_tool_output_gives_verdict_file_and_offset(case):
    tool, path, code, verdict, file, offset = CASES[case]
    output = (OUTPUTS / f"{case}.txt").read_text()
    result = parse(tool, code, output, path)
    assert (result.verdict, result.file, result.offset) == (verdict, file, offset)
    assert result.tool == tool
    assert result.output == tail(output)


def test_every_captured_output_has_an_expectation():
    assert {p.stem for p in OUTPUTS.glob("*.txt")} == set(CASES)


def test_output_keeps_the_tools_last_lines():
    output = (OUTPUTS / "aof-truncated-mid-bulk.txt").read_text()
    result = parse(AOF_TOOL, 1, output, MANIFEST)
    lines = result.output.splitlines()
    assert len(lines) == 12
    assert lines[-1].startswith(f"AOF {Path(INCR).name} is not valid")
    assert "Expected to read 9 bytes, got 4 bytes" in result.output


def test_killed_tool_is_an_error_whatever_it_printed():
    output = (OUTPUTS / "aof-ok.txt").read_text()
    assert parse(AOF_TOOL, 137, output, MANIFEST).verdict == Verdict.ERROR


def test_exit_zero_without_a_valid_line_is_an_error():
    assert parse(RDB_TOOL, 0, "[offset 0] Checking RDB file dump.rdb\n", "dump.rdb").verdict == Verdict.ERROR
    assert parse(AOF_TOOL, 0, "", MANIFEST).verdict == Verdict.ERROR


def test_bad_newline_with_real_data_far_from_the_end_is_corrupt():
    # Same message as a truncated line, but the bytes read are data, not the end of the file.
    output = (
        "0x             1d3: Expected \\r\\n, got: 0d00\n"
        "AOF analyzed: filename=x.aof, size=4000, ok_up_to=463, ok_up_to_line=77, diff=3537\n"
        "AOF x.aof is not valid. Use the --fix option to try fixing it.\n"
    )
    assert parse(AOF_TOOL, 1, output, "x.aof").verdict == Verdict.CORRUPT


def test_failed_check_names_the_reason_and_has_no_offset():
    result = failed(AOF_TOOL, MANIFEST, "killed after 30s (docker.timeout)", output="Start checking")
    assert result.to_dict() == {
        "file": MANIFEST,
        "tool": AOF_TOOL,
        "verdict": "error",
        "offset": None,
        "output": "Start checking\nkilled after 30s (docker.timeout)",
    }
