"""The weekly restore drill on a fresh install: nothing to drill is not a failure."""

from __future__ import annotations

from tests.support.common import json_out


def test_backup_verify_with_no_backup_yet_succeeds_and_says_so(redis_server, cli):
    result = cli("run", "backup-verify", "--json")
    assert result.exit_code == 0, result.output
    summary = json_out(result)["summary"]
    assert summary["backup_id"] is None and summary["verified"] is False
    assert "no complete backup" in summary["reason"]
