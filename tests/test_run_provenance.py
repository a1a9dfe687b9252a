"""Who ran it and under which settings: every run records its OS user and the masked settings' hash."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import sqlite3

import pytest

from tests.support.common import json_out

DOCUMENTED = ["id", "job", "trigger", "requested_by", "host", "pid", "started_at", "finished_at", "status"]
DOCUMENTED += ["summary", "error"]


def _hash_of_masked(settings) -> str:
    dumped = settings.model_dump(mode="json")
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _run(cli) -> dict:
    result = cli("run", "backup-age", "--json")  # reads only the history: no Redis needed
    assert result.exit_code == 0, result.output
    return json_out(result)


@pytest.mark.usefixtures("history_url")  # SQLite and PostgreSQL
def test_every_run_records_the_os_user_and_the_hash_of_the_masked_settings(cli, settings, monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://:s3cret-pw-81@127.0.0.1:6390/0")
    row = _run(cli)

    assert row["requested_by"] == "tester"  # the claim ($USER)
    assert row["os_user"] == pwd.getpwuid(os.getuid()).pw_name  # what the OS says
    assert row["scheduled_for"] is None  # an ad hoc run belongs to no slot
    assert row["config_hash"] == _hash_of_masked(settings())
    assert "s3cret-pw-81" not in json.dumps(settings().model_dump(mode="json"))
    (listed,) = json_out(cli("history", "--json"))
    assert list(listed)[: len(DOCUMENTED)] == DOCUMENTED, "the documented keys keep their order"
    for key in ("os_user", "scheduled_for", "config_hash"):
        assert listed[key] == row[key]

    # The masked form is hashed: another password gives the same hash, another setting does not.
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", "redis://:other-pw-93@127.0.0.1:6390/0")
    assert _run(cli)["config_hash"] == row["config_hash"]
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP_AGE__RPO", "30h")
    changed = _run(cli)["config_hash"]
    assert changed != row["config_hash"] and changed == _hash_of_masked(settings())


def test_without_USER_or_LOGNAME_the_claim_falls_back_to_the_os_user(cli, monkeypatch):
    """`docker compose exec` sets neither: the run then names the image's user (redis-maint)."""
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("LOGNAME", raising=False)
    row = _run(cli)
    assert row["requested_by"] == row["os_user"] == pwd.getpwuid(os.getuid()).pw_name
    monkeypatch.setenv("LOGNAME", "carol")
    assert _run(cli)["requested_by"] == "carol"
    as_someone = cli("run", "backup-age", "--as", "dave", "--json")
    assert (json_out(as_someone)["requested_by"], json_out(as_someone)["os_user"]) == ("dave", row["os_user"])


def test_a_uid_without_a_passwd_entry_is_recorded_as_uid_n(monkeypatch):
    """`docker run --user 12345` gives a uid with no name: the row says so instead of failing."""
    from redis_maint import provenance

    def no_entry(uid: int):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(provenance.pwd, "getpwuid", no_entry)
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("LOGNAME", raising=False)
    provenance.os_user.cache_clear()
    try:
        assert provenance.os_user() == provenance.requester() == f"uid {os.getuid()}"
    finally:
        provenance.os_user.cache_clear()


def test_a_history_from_before_the_columns_keeps_its_rows_and_gains_them(tmp_path, monkeypatch, cli):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job VARCHAR(64) NOT NULL, "
            "trigger VARCHAR(16) NOT NULL, requested_by VARCHAR(128), host VARCHAR(255), pid INTEGER, "
            "started_at DATETIME NOT NULL, finished_at DATETIME, status VARCHAR(16) NOT NULL, "
            "summary JSON, error TEXT)"
        )
        conn.execute(
            "INSERT INTO runs (job, trigger, requested_by, host, pid, started_at, finished_at, status, summary) "
            "VALUES ('health', 'manual', 'alice', 'old-host', 7, '2026-01-01 03:00:00.000000', "
            "'2026-01-01 03:00:01.000000', 'succeeded', '{}')"
        )
    monkeypatch.setenv("REDIS_MAINT_HISTORY_URL", f"sqlite:///{path}")

    (old,) = json_out(cli("history", "--json"))

    assert (old["requested_by"], old["host"], old["status"]) == ("alice", "old-host", "succeeded")
    assert (old["os_user"], old["scheduled_for"], old["config_hash"]) == (None, None, None)
    new = _run(cli)
    assert new["os_user"] and new["config_hash"]
