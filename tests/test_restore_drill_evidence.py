"""Restore drills as evidence: RTO parts, expired keys apart from missing ones, depth and who in the
catalog, and only drills move the drill metric.

Real Redis 7 (keys with short TTLs that run out between the backup and the drill), a local backup
target, a real Docker engine for the drill's throwaway redis-server.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from datetime import timedelta

import pytest

from jobs import REGISTRY
from redis_maint.checks import restore_drill
from redis_maint.history.catalog import BackupRecord, BackupStatus, Catalog
from redis_maint.observe.metrics import Metrics
from redis_maint.timeutil import utcnow
from tests.support.common import json_out
from tests.support.history import current_store
from tests.support.metrics import scrape_text

LIVE, SHORT, LONG = (
    120,
    40,
    10,
)  # keys without a TTL, with one that runs out before the drill, with a long one
SHORT_TTL_S = 4
DRILL = "redis_maint_backup_last_verified_timestamp_seconds"
CHECKSUM = "redis_maint_backup_last_checksum_timestamp_seconds"


def _metrics() -> dict[str, float]:
    """The unlabelled series of a fresh scrape, by name."""
    sample = scrape_text(Metrics(current_store(), list(REGISTRY), "default").exposition().decode())
    return {name: value for (name, labels), value in sample.items() if not labels}


def _verified_events(cli, backup_id: str) -> list[dict]:
    shown = json_out(cli("backups", "show", backup_id, "--json"))
    return [e for e in shown["catalog"]["events"] if e["event"] == "verified"]


@pytest.mark.docker
def test_a_drill_records_its_rto_and_counts_expired_keys_apart_from_missing_ones(
    redis_server, backup_env, check_image, no_leftovers, cli, tmp_path
):
    client = redis_server.client()
    client.mset({f"session:{i}": json.dumps({"sub": i}) for i in range(LIVE)})
    pipe = client.pipeline()
    for i in range(SHORT):
        pipe.set(f"session:short:{i}", "{}", px=SHORT_TTL_S * 1000)
    for i in range(LONG):
        pipe.set(f"cache:{i}", "x", ex=3600)
    pipe.execute()
    set_at = time.monotonic()
    backup = json_out(cli("run", "backup", "--json"))
    assert backup["status"] == "succeeded", backup["error"]
    backup_id = backup["summary"]["backup_id"]
    assert backup["summary"]["redis"]["dbsize"] == LIVE + SHORT + LONG, "the short TTLs outlived the backup"
    time.sleep(max(SHORT_TTL_S + 0.5 - (time.monotonic() - set_at), 0))
    assert client.dbsize() == LIVE + LONG  # they are gone from the source now
    assert _metrics()[DRILL] == _metrics()[CHECKSUM] == 0

    # A checksum check: its own metric, never the drill's.
    checked = cli("backups", "verify", backup_id, "--json")
    assert checked.exit_code == 0, checked.stdout
    assert json_out(checked)["depth"] == "checksums" and "rto" not in json_out(checked)
    after_checksums = _metrics()
    assert after_checksums[DRILL] == 0
    assert abs(after_checksums[CHECKSUM] - utcnow().timestamp()) < 60

    # `backups verify --deep` is a restore drill: the keys whose TTL ran out are expired, not missing.
    deep = cli("backups", "verify", backup_id, "--deep", "--json")
    assert deep.exit_code == 0, deep.stdout
    out = json_out(deep)
    assert out["depth"] == "restore-drill"
    assert out["keys"] == {
        "source": LIVE + SHORT + LONG,
        "loaded": LIVE + SHORT + LONG,
        "expired": SHORT,
        "live": LIVE + LONG,
        "missing": 0,
        "extra": 0,
    }
    assert out["deep"]["server"]["keys"] == LIVE + LONG and out["deep"]["server"]["sessions"] == LIVE
    assert _metrics()[DRILL] > after_checksums[CHECKSUM] - 1

    # The weekly drill on a manifest that claims 3 more keys than the backup holds: 3 missing.
    (manifest_path,) = (tmp_path / "backups").rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["dbsize"] += 3
    manifest_path.write_text(json.dumps(manifest))
    drill = json_out(cli("run", "backup-verify", "--json", "--as", "auditor-test"))
    assert drill["status"] == "succeeded", drill["error"]
    summary = drill["summary"]
    assert summary["keys"]["missing"] == 3 and summary["keys"]["expired"] == SHORT
    rto = summary["rto"]
    assert rto["download_s"] > 0 and rto["load_s"] > 0
    assert rto["total_s"] == pytest.approx(rto["download_s"] + rto["load_s"], abs=0.002)
    assert summary["deep"]["drill_s"] >= rto["total_s"] and summary["deep"]["checks_s"] > 0
    people = cli("history", "show", str(drill["id"])).stdout
    assert (
        f"{LIVE + SHORT + LONG} of the source's {LIVE + SHORT + LONG + 3} loaded; {SHORT} expired" in people
    )
    assert f"rto      download {rto['download_s']}s + load {rto['load_s']}s = {rto['total_s']}s" in people

    events = _verified_events(cli, backup_id)
    assert [(e["depth"], e["ok"]) for e in events] == [
        ("checksums", True),
        ("restore-drill", True),
        ("restore-drill", True),
    ]
    me = pwd.getpwuid(os.getuid()).pw_name
    check_runs = json_out(cli("history", "--job", "backup-check", "--json"))
    assert [(e["run_id"], e["requested_by"], e["os_user"]) for e in events] == [
        (check_runs[1]["id"], "tester", me),
        (check_runs[0]["id"], "tester", me),
        (drill["id"], "auditor-test", me),
    ]
    assert events[2]["rto"] == rto and events[2]["keys"] == summary["keys"]
    assert "rto" not in events[0] and "keys" not in events[0]


def _complete_backup(catalog: Catalog, backup_id: str, hours_ago: float) -> None:
    catalog.add(
        BackupRecord(
            id=backup_id,
            run_id=None,
            instance="default",
            target="local",
            target_root="/x",
            location=f"/x/{backup_id}",
            created_at=utcnow() - timedelta(hours=hours_ago),
            status=BackupStatus.PENDING,
        )
    )
    catalog.mark_complete(backup_id, size=10, files=[])


def _drill_result(ok: bool = True) -> dict:
    return {"ok": ok, "problems": [], "deep": {"ok": ok, "server": {"keys": 1, "load_s": 0.2}}}


def test_only_restore_drills_move_the_drill_metric_and_a_later_checksum_check_does_not_hide_one():
    store = current_store()
    catalog = Catalog(store)
    _complete_backup(catalog, "b1", 30)
    _complete_backup(catalog, "b2", 2)
    catalog.record_verify("b1", _drill_result())
    drilled = _metrics()[DRILL]
    assert abs(drilled - utcnow().timestamp()) < 60 and _metrics()[CHECKSUM] == 0
    time.sleep(1.1)
    catalog.record_verify("b1", {"ok": True, "problems": []})  # its verify_result is now the checksum one
    catalog.record_verify("b2", {"ok": True, "problems": [], "deep": {"ok": False, "skipped": "sha256"}})
    catalog.record_verify("b2", _drill_result(ok=False))  # a failed drill proves nothing
    sample = _metrics()
    assert sample[DRILL] == drilled, "checksum checks and failed drills leave the drill metric alone"
    assert sample[CHECKSUM] > drilled
    depths = [(e["depth"], e["ok"]) for e in catalog.get("b2").events if e["event"] == "verified"]
    assert depths == [("checksums", True), ("restore-drill", False)]


def test_rows_from_before_depths_count_as_drills_only_when_a_server_loaded_them():
    from sqlalchemy import update

    from redis_maint.history import db

    store = current_store()
    catalog = Catalog(store)
    _complete_backup(catalog, "old-drill", 30)
    _complete_backup(catalog, "old-check", 20)
    catalog.record_verify("old-drill", _drill_result())
    catalog.record_verify("old-check", {"ok": True, "problems": []})
    legacy = {  # as an older version wrote them: events without a depth
        backup_id: [
            {k: v for k, v in e.items() if k in ("at", "event", "detail")}
            for e in catalog.get(backup_id).events
        ]
        for backup_id in ("old-drill", "old-check")
    }
    with store.engine.begin() as conn:
        for backup_id, events in legacy.items():
            conn.execute(update(db.backups).where(db.backups.c.id == backup_id).values(events=events))
    sample = _metrics()
    assert sample[DRILL] == catalog.get("old-drill").verified_at.timestamp()
    assert sample[CHECKSUM] == catalog.get("old-check").verified_at.timestamp()


def test_key_counts_and_rto_parts():
    server = {"keys": 7, "loaded_keys": 10, "expired_keys": 3}
    assert restore_drill.key_counts(12, server) == {
        "source": 12,
        "loaded": 10,
        "expired": 3,
        "live": 7,
        "missing": 2,
        "extra": 0,
    }
    assert restore_drill.key_counts(9, server)["extra"] == 1
    assert restore_drill.key_counts(None, server)["missing"] is None
    assert restore_drill.rto(1.25, 0.5) == {"download_s": 1.25, "load_s": 0.5, "total_s": 1.75}
    command = restore_drill.server_command({"rdb": "dump.rdb"}, "/check")
    assert command[command.index("--replicaof") + 1 :][:2] == ["127.0.0.1", "1"]


def test_the_drill_says_what_it_found_for_people():
    result = {
        "deep": {
            "checks": [],
            "server": {"keys": 7, "sessions": 5, "loaded_from": "rdb", "load_s": 0.5, "digest": "ab"},
            "source_keys": 12,
            "keys": restore_drill.key_counts(12, {"keys": 7, "loaded_keys": 10, "expired_keys": 3}),
            "rto": restore_drill.rto(1.25, 0.5),
        }
    }
    lines = restore_drill.describe(result)
    assert (
        "keys     10 of the source's 12 loaded; 3 expired since the backup (not missing); 2 missing" in lines
    )
    assert "rto      download 1.25s + load 0.5s = 1.75s" in lines
