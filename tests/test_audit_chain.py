"""The history's evidence chain: every run write, catalog event and lease hand-over is chained;
`audit verify` names the first record an intruder changed, deleted, moved or slipped in, on real
SQLite files (edited with the stdlib sqlite3 module) and on PostgreSQL (plain SQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from redis_maint.audit.checkpoints import write_checkpoint
from redis_maint.audit.verify import check_chain, snapshot
from redis_maint.history.catalog import Catalog
from redis_maint.history.leases import Lease
from redis_maint.storage import open_target
from redis_maint.timeutil import utcnow
from tests.support.audit import (
    OLD_BACKUP,
    OLD_RUNS,
    events_without,
    ledger,
    old_history,
    sha256_link,
    some_history,
    tamper,
    verify,
)
from tests.support.builders.stored import fake_backup
from tests.support.common import ROOT, json_out
from tests.support.history import current_store


@pytest.fixture
def chained(history_url):
    """A history as operators leave it (runs, a verified backup), with a checkpoint on the target."""
    store = current_store()
    runs = some_history(store)
    catalog = Catalog(store)
    target = open_target(os.environ["REDIS_MAINT_TARGET__URI"])
    backup = fake_backup(target, catalog, utcnow() - timedelta(hours=1))
    catalog.record_verify(backup, {"ok": True, "files_checked": 1})
    write_checkpoint(store.engine, target, instance="default")
    return SimpleNamespace(url=history_url, store=store, runs=runs, backup=backup)


def _zero_deleted(h) -> None:
    if h.url.startswith("sqlite"):
        sql = "UPDATE runs SET summary = json_set(summary, '$.deleted', 0) WHERE id = ?"
    else:
        sql = "UPDATE runs SET summary = jsonb_set(summary::jsonb, '{deleted}', '0')::json WHERE id = ?"
    tamper(h.url, sql, (h.runs["delete"],))


def _seq_of(h, kind: str, ref, event: str) -> int:
    for r in ledger(h.url):
        record = json.loads(r["record"])
        if r["kind"] == kind and r["ref"] == str(ref) and record["event"] == event:
            return r["seq"]
    raise AssertionError(f"no {event} record of {kind} {ref}")


def _swap(h, a: int, b: int) -> None:
    cols = "at, kind, ref, record, prev_hash, hash"
    rows = {s: tamper(h.url, f"SELECT {cols} FROM ledger WHERE seq = ?", (s,))[0] for s in (a, b)}
    for seq, other in ((a, b), (b, a)):
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        tamper(h.url, f"UPDATE ledger SET {sets} WHERE seq = ?", (*rows[other], seq))


def _rehash_edit(h, seq: int) -> None:
    """Edit a ledger record and recompute its own hash, as an intruder who knows the formula would."""
    (prev, record), *_ = tamper(h.url, "SELECT prev_hash, record FROM ledger WHERE seq = ?", (seq,))
    forged = record.replace("alice", "mallory")
    tamper(
        h.url,
        "UPDATE ledger SET record = ?, hash = ? WHERE seq = ?",
        (forged, sha256_link(prev, forged), seq),
    )


def _add_run(h) -> None:
    tamper(
        h.url,
        "INSERT INTO runs (job, trigger, requested_by, started_at, status) VALUES (?, ?, ?, ?, ?)",
        ("session-delete", "manual", "mallory", "2026-01-01 00:00:00", "succeeded"),
    )


# (tamper, expected first break: seq (a function of the history, or None), kind, ref, how, detail part)
CASES = {
    "requester-to-mallory": (
        lambda h: tamper(h.url, "UPDATE runs SET requested_by = 'mallory' WHERE id = ?", (h.runs["delete"],)),
        lambda h: _seq_of(h, "run", h.runs["delete"], "finished"),
        "run",
        lambda h: h.runs["delete"],
        "edited",
        "requested_by 'alice' -> 'mallory'",
    ),
    "deleted-count-zeroed": (
        _zero_deleted,
        lambda h: _seq_of(h, "run", h.runs["delete"], "finished"),
        "run",
        lambda h: h.runs["delete"],
        "edited",
        "summary.deleted 610 -> 0",
    ),
    "run-deleted": (
        lambda h: tamper(h.url, "DELETE FROM runs WHERE id = ?", (h.runs["sweep"],)),
        lambda h: _seq_of(h, "run", h.runs["sweep"], "finished"),
        "run",
        lambda h: h.runs["sweep"],
        "deleted",
        "gone from the history",
    ),
    "verified-event-removed": (
        lambda h: events_without(h.url, h.backup, "verified"),
        lambda h: _seq_of(h, "backup", h.backup, "verified"),
        "backup",
        lambda h: h.backup,
        "edited",
        "'verified'",
    ),
    "ledger-rows-swapped": (
        lambda h: _swap(h, 2, 3),
        lambda h: 2,
        "run",
        lambda h: h.runs["sweep"],  # record 3 (the sweep's start) now sits at 2
        "reordered",
        "was chained as record 3",
    ),
    "ledger-record-edited": (
        lambda h: tamper(
            h.url, "UPDATE ledger SET record = replace(record, 'alice', 'mallory') WHERE seq = 1"
        ),
        lambda h: 1,
        "run",
        lambda h: h.runs["delete"],
        "edited",
        "does not match its hash",
    ),
    "ledger-record-edited-and-rehashed": (
        lambda h: _rehash_edit(h, 1),
        lambda h: 1,
        "chain",
        lambda h: 1,
        "edited",
        "rewritten and re-hashed",
    ),
    "ledger-record-deleted": (
        lambda h: tamper(h.url, "DELETE FROM ledger WHERE seq = 3"),
        lambda h: 3,
        "chain",
        lambda h: 3,
        "deleted",
        "record 3 is gone",
    ),
    "run-slipped-in": (
        _add_run,
        lambda h: None,
        "run",
        lambda h: tamper(h.url, "SELECT max(id) FROM runs")[0][0],
        "added",
        "not in the chain",
    ),
}


def test_an_untouched_history_is_intact(chained, cli):
    code, result = verify(cli)

    assert code == 0, result
    assert result["intact"] is True and result["breaks"] == [] and result["breaks_total"] == 0
    assert result["original_from"] == 1 and result["adopted"] == 0
    rows = ledger(chained.url)
    # The verification's own final row is chained after the check.
    *checked, own = rows
    assert (own["ref"], json.loads(own["record"])["event"]) == (str(result["run_id"]), "finished")
    assert result["records"] == len(checked) and result["head_hash"] == checked[-1]["hash"]
    assert result["chain_id"] == rows[0]["hash"]
    assert result["checkpoint"]["status"] == "ok" and result["checkpoint"]["checked"] == 1
    # The verification is itself a run in history, chained like any other.
    run = json_out(cli("history", "show", str(result["run_id"]), "--json"))
    assert run["job"] == "audit-verify" and run["status"] == "succeeded"
    assert run["summary"]["intact"] is True


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_caught_and_named(chained, cli, case):
    act, seq, kind, ref, how, detail = CASES[case]
    expected_seq = seq(chained)  # before the tampering moves things
    assert verify(cli)[0] == 0

    act(chained)
    expected_ref = str(ref(chained))
    code, result = verify(cli)

    assert code == 1
    assert result["intact"] is False
    first = result["breaks"][0]
    assert (first["seq"], first["kind"], first["ref"], first["how"]) == (
        expected_seq,
        kind,
        expected_ref,
        how,
    ), first
    assert detail in first["detail"], first
    # The failed verification is recorded, naming the break.
    run = json_out(cli("history", "show", str(result["run_id"]), "--json"))
    assert run["status"] == "failed" and how in run["error"] and f"{kind} {expected_ref}" in run["error"]


def test_people_are_told_which_record_broke_and_how_without_a_traceback(chained, cli):
    tamper(chained.url, "UPDATE runs SET requested_by = 'mallory' WHERE id = ?", (chained.runs["delete"],))

    result = cli("audit", "verify")

    assert result.exit_code == 1
    assert result.stdout.startswith("audit verify: NOT INTACT")
    assert (
        f"edited      record {_seq_of(chained, 'run', chained.runs['delete'], 'finished')}" in result.stdout
    )
    assert "requested_by 'alice' -> 'mallory'" in result.stdout
    assert "Traceback" not in result.output + result.stderr


def test_every_record_links_to_the_one_before_as_documented(chained, cli):
    """sha256(prev_hash + record), the record canonical JSON; each row carries its latest record's hash."""
    cli("run", "audit-checkpoint")
    rows = ledger(chained.url)
    prev = "0" * 64
    for n, row in enumerate(rows, start=1):
        assert row["seq"] == n and row["prev_hash"] == prev
        assert row["hash"] == sha256_link(prev, row["record"])
        record = json.loads(row["record"])
        assert row["record"] == json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert record["seq"] == n and record["at"].endswith("Z") and "null" not in row["record"]
        prev = row["hash"]
    for run in json_out(cli("history", "--json")):
        latest = [r for r in rows if r["kind"] == "run" and r["ref"] == str(run["id"])][-1]
        assert run["hash"] == latest["hash"] and run["prev_hash"] == latest["prev_hash"]
    started, finished = (
        json.loads(r["record"])
        for r in rows
        if r["kind"] == "run" and r["ref"] == str(chained.runs["delete"])
    )
    assert (started["event"], started["data"]["status"]) == ("started", "running")
    assert (finished["event"], finished["data"]["summary"]["deleted"]) == ("finished", 610)


def test_a_lease_taken_over_from_a_lapsed_holder_is_chained(history_url, cli):
    store = current_store()
    first = Lease.acquire(store, "backup", timedelta(milliseconds=50))
    time.sleep(0.1)  # lapsed: never renewed

    second = Lease.acquire(store, "backup", timedelta(minutes=1))
    second.release()
    first.release()

    handover = json.loads(ledger(history_url)[-1]["record"])
    assert (handover["kind"], handover["ref"], handover["event"]) == ("lease", "backup", "handover")
    assert handover["data"]["reason"] == "expired"
    assert handover["data"]["from"]["pid"] == os.getpid() and "expires_at" in handover["data"]["from"]
    code, result = verify(cli)
    assert code == 0, result


WRITER = """
import sys, time
from pathlib import Path
from redis_maint.history.runs import HistoryStore, RunStatus
store = HistoryStore(sys.argv[1])
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
for i in range(int(sys.argv[3])):
    run = store.start_run("health", "manual", sys.argv[4])
    store.finish_run(run, RunStatus.SUCCEEDED, {"i": i}, None)
"""


def test_two_processes_appending_at_once_keep_one_valid_chain(history_url, tmp_path):
    current_store()  # the schema exists before the writers race
    go, n = tmp_path / "go", 25
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, history_url, str(go), str(n), f"writer-{w}"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (1, 2)
    ]
    time.sleep(0.5)  # both imported and waiting
    go.touch()
    for w in writers:
        assert w.wait(timeout=120) == 0, w.stderr.read()

    report = check_chain(current_store().engine)

    assert report.intact, report.breaks
    assert report.records == 2 * 2 * n
    rows = ledger(history_url)
    assert [r["seq"] for r in rows] == list(range(1, 4 * n + 1))
    by_writer = {json.loads(r["record"])["data"]["requested_by"] for r in rows}
    assert by_writer == {"writer-1", "writer-2"}


def test_a_database_from_before_the_chain_is_adopted_once_and_keeps_every_row(tmp_path, cli):
    db_path = tmp_path / "history.db"  # the conftest's REDIS_MAINT_HISTORY_URL
    old_history(db_path)
    url = f"sqlite:///{db_path}"

    code, result = verify(cli)

    assert code == 0, result
    assert result["intact"] is True and result["adopted"] == len(OLD_RUNS) + 1
    # record 1 is the anchor, 2-5 the adopted rows; the verification's own start is the first original
    assert result["original_from"] == len(OLD_RUNS) + 3
    rows = ledger(url)
    anchor = json.loads(rows[0]["record"])
    assert (anchor["kind"], anchor["event"]) == ("anchor", "adopted")
    assert anchor["data"]["original_from"] == result["original_from"] and "upgrade" in anchor["data"]["note"]
    assert [json.loads(r["record"]).get("adopted") for r in rows[1:5]] == [True] * 4
    assert (
        json.loads(rows[5]["record"]).get("adopted") is None
    )  # the verification itself: chained as it happened
    # every row is still there, as it was
    cols = 'id, job, "trigger", requested_by, host, pid, started_at, finished_at, status, summary, error'
    assert tamper(url, f"SELECT {cols} FROM runs WHERE id <= 3 ORDER BY id") == OLD_RUNS
    assert tamper(url, "SELECT id, status, events FROM backups") == [
        (OLD_BACKUP[0], "complete", OLD_BACKUP[-1])
    ]
    # adopted rows are protected like new ones, and the report says from where the chain is original
    tamper(url, "UPDATE runs SET requested_by = 'mallory' WHERE id = 2")
    human = cli("audit", "verify")
    assert human.exit_code == 1
    assert f"records before {result['original_from']} were chained at upgrade time" in human.stdout
    assert "run 2 differs from its chained record 3: requested_by 'alice' -> 'mallory'" in human.stdout


def test_verification_reads_one_snapshot_without_holding_off_writers(tmp_path):
    store = current_store()  # SQLite: every write transaction of the store is BEGIN IMMEDIATE
    some_history(store)
    with snapshot(store.engine) as conn:
        before = conn.execute(text("SELECT count(*) FROM ledger")).scalar()
        run = store.start_run("health", "scheduled", "daemon")  # a writer during the verification
        assert conn.execute(text("SELECT count(*) FROM ledger")).scalar() == before  # not in this snapshot
    assert store.get(run).status == "running"
    assert len(ledger(store.url)) == before + 1
