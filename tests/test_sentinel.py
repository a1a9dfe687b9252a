"""Redis behind Sentinel, on a real primary, replica and redis-sentinel (tests/support/services/sentinel.py):
the redis+sentinel:// URL, health's view of roles and lag, which sidecar backs up, and a real failover."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from config import load_settings
from jobs import REGISTRY
from redis_maint.errors import ConfigError
from redis_maint.redact import redact, redact_url, url_secrets
from redis_maint.timeutil import utcnow
from redis_maint.topology import sentinel
from tests.support.builders.sessions import seed
from tests.support.common import json_out, wait_for
from tests.support.history import current_store
from tests.support.services.sentinel import PASSWORD, SERVICE

# -- the URL and masking (no services) ------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_credentials():
    cfg = sentinel.parse(
        "redis+sentinel://app:data-pw-123@s1:26380,s2,[::1]:26381/sessions/3"
        "?sentinel_password=sent-pw-456&failover_wait=5s"
    )
    assert cfg.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (cfg.service, cfg.db, cfg.username, cfg.password) == ("sessions", 3, "app", "data-pw-123")
    assert cfg.sentinel_password == "sent-pw-456" and cfg.sentinel_username is None
    assert cfg.failover_wait == timedelta(seconds=5)
    assert "data-pw-123" not in repr(cfg) and "sent-pw-456" not in repr(cfg)
    plain = sentinel.parse("redis+sentinel://s1/mymaster")
    assert (plain.db, plain.password, plain.failover_wait) == (0, None, sentinel.DEFAULT_FAILOVER_WAIT)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "no service name"),
        ("redis+sentinel://s1:26379/mymaster/x", "/service_name[/db]"),
        ("redis+sentinel://s1,,s2/mymaster", "empty Sentinel address"),
        ("redis+sentinel://s1:port/mymaster", "not a number"),
        ("redis+sentinel://s1/mymaster?failover_wait=30", "has no unit"),
        ("redis+sentinel://s1/mymaster?sentinel_pasword=x", "unknown option"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        sentinel.parse(url)


def test_a_multi_host_url_is_masked_everywhere():
    url = "redis+sentinel://:hunter2-data@s1:26379,s2:26379/sessions/0?sentinel_password=hunter2-sent"
    assert redact_url(url) == "redis+sentinel://:***@s1:26379,s2:26379/sessions/0?sentinel_password=***"
    assert set(url_secrets(url)) == {"hunter2-data", "hunter2-sent"}
    text = redact(f"cannot reach {url}: refused")
    assert "hunter2" not in text and "s1:26379,s2:26379" in text
    # a malformed port no longer stops the userinfo from being masked
    assert redact_url("redis://u:hunter2-x@h:notaport/0") == "redis://u:***@h:notaport/0"


def test_settings_take_a_sentinel_url_and_mask_it(tmp_path):
    url = "redis+sentinel://:hunter2-data@s1:26379,s2:26379/sessions/0"
    settings = load_settings(environ={"REDIS_MAINT_REDIS_URL": url}, jobs=REGISTRY)
    assert settings.redis_url == url and settings.node_redis_url == url
    dumped = json.dumps(settings.model_dump(mode="json"))
    assert "hunter2" not in dumped and "s1:26379,s2:26379" in dumped
    with pytest.raises(ConfigError) as err:
        load_settings(
            environ={"REDIS_MAINT_REDIS_URL": "redis+sentinel://:hunter2-data@s1,s2/"}, jobs=REGISTRY
        )
    assert "no service name" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match="node_url"):
        load_settings(environ={"REDIS_MAINT_NODE_URL": url}, jobs=REGISTRY)


# -- choosing the backup's source (pure) -----------------------------------------------------------


def _view(*replicas: sentinel.NodeState) -> sentinel.View:
    primary = sentinel.NodeState("10.0.0.1:6379", "primary", run_id="p", offset=1000)
    return sentinel.View(SERVICE, primary, list(replicas), 1, 1)


def _replica(addr: str, **kw) -> sentinel.NodeState:
    base = {"link": "up", "last_io_s": 0, "ack_lag_s": 0, "lag_bytes": 0}
    return sentinel.NodeState(addr, "replica", run_id=addr, **{**base, **kw})


def test_the_source_is_the_primary_the_freshest_fit_replica_or_auto_falls_back():
    lag = timedelta(seconds=10)
    fresh, behind = _replica("10.0.0.3:6379", lag_bytes=5), _replica("10.0.0.2:6379", lag_bytes=900)
    stale = _replica("10.0.0.4:6379", last_io_s=30)
    down = _replica("10.0.0.5:6379", healthy=False, problem="Sentinel flags it s_down")
    view = _view(behind, stale, fresh, down)
    assert sentinel.choose_source(view, "primary", lag).chosen is view.primary
    assert sentinel.choose_source(view, "replica", lag).chosen is fresh  # smallest byte gap of the fit
    assert sentinel.choose_source(view, "auto", lag).chosen is fresh
    unfit = _view(stale, down)
    auto = sentinel.choose_source(unfit, "auto", lag)
    assert auto.chosen is unfit.primary and "last heard from the primary 30s ago" in auto.why
    none = sentinel.choose_source(unfit, "replica", lag)
    assert none.chosen is None and "s_down" in none.why
    # one ACK older than the limit is enough to be unfit, and the limit is the setting
    assert sentinel.choose_source(_view(_replica("r:1", ack_lag_s=11)), "auto", lag).chosen.role == "primary"
    assert (
        sentinel.choose_source(_view(_replica("r:1", ack_lag_s=11)), "auto", 2 * lag).chosen.role == "replica"
    )


# -- a real primary, replica and Sentinel ----------------------------------------------------------


def _sidecar_env(bed, node, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the sidecar beside `node`: Sentinel for the topology, node_url for its files."""
    env = {k: v for k, v in os.environ.items() if k.startswith("REDIS_MAINT_")}
    env.update(
        REDIS_MAINT_REDIS_URL=bed.url,
        REDIS_MAINT_NODE_URL=node.url,
        REDIS_MAINT_DATA_DIR=str(node.dir),
        REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD="false",
        REDIS_MAINT_JOBS__BACKUP__STAGING_DIR=str(tmp_path / f"staging-{node.port}"),
        REDIS_MAINT_REDIS_TIMEOUT="2s",
        **extra,
    )
    return env


def _settings(env: dict[str, str]):
    return load_settings(environ=env, jobs=REGISTRY)


def _synced(bed) -> None:
    """Until every live replica has the primary's offset (writes made so far are on every node)."""
    primary = bed.node(bed.primary_port())

    def caught_up() -> bool:
        offset = primary.client().info("replication")["master_repl_offset"]
        others = [n for n in bed.nodes if n is not primary and n.proc is not None]
        return all(n.client().info("replication").get("slave_repl_offset") == offset for n in others)

    wait_for(caught_up, timeout=10, what="the replica to catch up")


def test_the_cli_connects_through_sentinel_to_the_primary(sentinel_bed, monkeypatch, cli):
    primary = sentinel_bed.node(sentinel_bed.primary_port())
    primary.client().flushall()
    seed(primary.client(), 6, stale_every=3)
    monkeypatch.setenv("REDIS_MAINT_REDIS_URL", sentinel_bed.url)
    result = cli("sessions", "count", "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result)["total"] == 6
    shown = cli("config", "show")
    assert shown.exit_code == 0, shown.output
    assert (
        PASSWORD not in shown.output and f"127.0.0.1:{sentinel_bed.sentinel_port}/{SERVICE}/0" in shown.output
    )


def test_health_beside_the_replica_reports_roles_lag_and_links(sentinel_bed, tmp_path, monkeypatch, cli):
    primary = sentinel_bed.node(sentinel_bed.primary_port())
    replica = next(n for n in sentinel_bed.nodes if n is not primary)
    primary.client().set("session:h", "{}")
    _synced(sentinel_bed)
    for key, value in _sidecar_env(sentinel_bed, replica, tmp_path).items():
        monkeypatch.setenv(key, value)
    row = json_out(cli("run", "health", "--json"))
    assert row["status"] == "succeeded", row["error"]
    summary = row["summary"]
    assert summary["role"] == "slave"  # the node beside this sidecar, not the primary
    repl = summary["replication"]
    assert (
        repl["role"] == "replica" and repl["link"] == "up" and repl["primary"] == f"127.0.0.1:{primary.port}"
    )
    view = summary["sentinel"]
    assert view["service"] == SERVICE and view["sentinels"] == {"answering": 1, "configured": 1}
    assert view["primary"]["address"] == f"127.0.0.1:{primary.port}" and view["primary"]["healthy"]
    (seen,) = view["replicas"]
    assert seen["address"] == f"127.0.0.1:{replica.port}" and seen["link"] == "up" and seen["healthy"]
    assert seen["lag_bytes"] == 0 and seen["last_io_s"] is not None and seen["last_io_s"] <= 1
    assert view["node"] == {"address": f"127.0.0.1:{replica.port}", "role": "replica"}
    assert not [r for r in summary["reasons"] if "replica" in r or "Sentinel" in r or "primary" in r]
    assert PASSWORD not in json.dumps(row)


def test_only_the_sidecar_beside_the_source_is_eligible(sentinel_bed, tmp_path):
    primary = sentinel_bed.node(sentinel_bed.primary_port())
    replica = next(n for n in sentinel_bed.nodes if n is not primary)
    job = REGISTRY["backup"]
    for source, eligible_node in (("auto", replica), ("replica", replica), ("primary", primary)):
        extra = {"REDIS_MAINT_JOBS__BACKUP__SOURCE": source}
        verdicts = {
            n.port: job.eligible(_settings(_sidecar_env(sentinel_bed, n, tmp_path, **extra)))
            for n in sentinel_bed.nodes
        }
        assert verdicts[eligible_node.port] is None, (source, verdicts)
        (other,) = [v for port, v in verdicts.items() if port != eligible_node.port]
        assert f"the backup comes from 127.0.0.1:{eligible_node.port}" in other
    # jobs without a source of their own run on any sidecar; a sidecar with no Sentinel is always eligible
    assert (
        REGISTRY["session-sweep"].eligible(_settings(_sidecar_env(sentinel_bed, primary, tmp_path))) is None
    )
    assert job.eligible(_settings({"REDIS_MAINT_REDIS_URL": primary.url})) is None


def _fire(daemon, name: str, slot: datetime) -> None:
    """The daemon's scheduled fire of `name` for `slot` (each sidecar claims the same slot)."""
    from redis_maint.history.runs import Trigger

    daemon._slot_of = lambda _name: slot
    daemon._fire(name, Trigger.SCHEDULED)


def _slots(n: int) -> list[datetime]:
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    return [hour - timedelta(hours=n - i) for i in range(n)]


def _runs(job: str) -> list:
    return current_store().list(job=job, limit=100)  # newest first


def _manifest(summary: dict) -> dict:
    return json.loads((Path(summary["target"]) / "manifest.json").read_text())


def test_after_a_failover_the_next_backup_and_sweep_run_once_against_the_new_roles(
    sentinel_bed_to_fail, tmp_path, monkeypatch
):
    from redis_maint.run.daemon import Daemon

    bed = sentinel_bed_to_fail
    node_a, node_b = bed.nodes  # a: the primary, b: its replica
    assert bed.primary_port() == node_a.port
    stale = seed(node_a.client(), 9, stale_every=3)
    _synced(bed)
    # Two sidecars, one beside each node, sharing one history and target; backups from the primary.
    primary_only = {"REDIS_MAINT_JOBS__BACKUP__SOURCE": "primary"}
    sidecars = {
        n.port: Daemon(_settings(_sidecar_env(bed, n, tmp_path, **primary_only))) for n in (node_a, node_b)
    }
    slot1, slot2, slot3 = _slots(3)
    for daemon in sidecars.values():
        _fire(daemon, "backup", slot1)
    (first,) = _runs("backup")
    assert first.status == "succeeded", first.error
    node = _manifest(first.summary)["node"]
    assert node["address"] == f"127.0.0.1:{node_a.port}" and node["role"] == "primary"
    assert node["replication_offset"] > 0 and node["primary"] == f"127.0.0.1:{node_a.port}"

    # SIGKILL the primary. The sweep slot fires at once, first on the sidecar whose node just died: it
    # waits for Sentinel to promote the replica and sweeps the new primary; the other sidecar finds the
    # slot taken.
    bed.kill_primary(wait=False)
    for port in (node_a.port, node_b.port):
        _fire(sidecars[port], "session-sweep", slot2)
    (sweep,) = _runs("session-sweep")
    assert sweep.status == "succeeded", sweep.error
    assert sweep.summary["deleted"]["stale"] == stale
    assert bed.primary_port() == node_b.port
    assert node_b.client().dbsize() == 9 - stale

    # The next backup slot: only the sidecar beside the new primary is eligible, and it runs once.
    for daemon in sidecars.values():
        _fire(daemon, "backup", slot2)
    second, again = _runs("backup")
    assert again.id == first.id and second.status == "succeeded", second.error
    node = _manifest(second.summary)["node"]
    assert node["address"] == f"127.0.0.1:{node_b.port}" and node["role"] == "primary"
    assert (
        node["primary"] == f"127.0.0.1:{node_b.port}" and node["run_id"] != _manifest(first.summary)["run_id"]
    )
    assert second.summary["source"]["chosen"] == f"127.0.0.1:{node_b.port}"

    # source = replica with no replica left: the primary's sidecar takes the slot and fails, saying why.
    replica_only = {"REDIS_MAINT_JOBS__BACKUP__SOURCE": "replica"}
    for n in (node_a, node_b):
        _fire(Daemon(_settings(_sidecar_env(bed, n, tmp_path, **replica_only))), "backup", slot3)
    third = _runs("backup")[0]
    assert len(_runs("backup")) == 3 and third.status == "failed"
    assert "no replica may be backed up" in third.error and "source = auto" in third.error
    assert PASSWORD not in json.dumps([r.summary for r in _runs("backup")]) + (third.error or "")


def test_a_command_waits_for_the_failover_within_failover_wait(sentinel_bed_to_fail):
    from redis_maint.redis_conn import call, connect

    bed = sentinel_bed_to_fail
    client = connect(bed.url)
    try:
        new = bed.kill_primary(wait=False)
        # redis-py's own retries give up in well under a second; the failover takes about two
        assert call(bed.url, client.set, "session:after", "{}") is True
        assert new.client().get("session:after") == b"{}"
    finally:
        client.close()
    short = bed.url.split("?")[0] + "?failover_wait=0.5s"
    last = bed.node(bed.primary_port())
    last.proc.kill()  # no replica is left to promote
    last.proc.wait()
    from redis_maint.errors import RedisUnavailableError

    with pytest.raises(RedisUnavailableError, match="within failover_wait") as err:
        connect(short)
    assert PASSWORD not in str(err.value)


# -- a whole pass over the primary (keys big, a sweep) when it fails over mid-pass -----------------


def test_keys_big_through_a_failover_mid_scan_counts_every_key_once(sentinel_bed_to_fail):
    from redis_maint.keyspace import scan_big_keys
    from redis_maint.redis_conn import connect

    bed = sentinel_bed_to_fail
    old = bed.node(bed.primary_port())
    pipe = old.client().pipeline(transaction=False)
    for i in range(600):
        pipe.set(f"session:{i:04d}", "{}", px=86_400_000)
    for i in range(300):
        pipe.set(f"cart:{i:04d}", "item")
    pipe.set("big:blob", "x" * 50_000)
    pipe.execute()
    _synced(bed)
    killed: list = []

    def kill_the_primary_once(keys: list[bytes]) -> None:
        if not killed:  # after the first SCAN reply, counted by then: the scan starts again elsewhere
            killed.append(bed.kill_primary(wait=False))

    client = connect(bed.url)
    try:
        report = scan_big_keys(
            client, url=bed.url, top=2, scan_count=50, idle_cpu=False, after_scan=kill_the_primary_once
        )
    finally:
        client.close()
    assert killed and bed.primary_port() != old.port  # the scan outlived its primary
    assert report.scanned == 901 and report.complete and report.vanished == report.moved == 0
    assert {r.prefix: (r.keys, r.no_ttl) for r in report.by_prefix} == {
        "session:": (600, 0),
        "cart:": (300, 300),
        "big:": (1, 1),
    }
    assert report.top[0].key == "big:blob" and len(report.top) == 2


def test_a_sweep_through_a_failover_mid_sweep_counts_once_and_keeps_acknowledged_deletes(
    sentinel_bed_to_fail, monkeypatch
):
    from redis_maint.redis_conn import connect
    from redis_maint.sessions.engine import Batching
    from redis_maint.sessions.report import SweepReport
    from redis_maint.sessions.rules import Mode, Plan
    from redis_maint.sessions.sweeper import sweep

    bed = sentinel_bed_to_fail
    old = bed.node(bed.primary_port())
    stale = seed(old.client(), 600, stale_every=3)  # session:00000000 ... every third one stale
    _synced(bed)
    batches: list[list[bytes]] = []
    killed: list = []
    # Stale deletes whose reply was read (acknowledged) so far: how many batches' replies are read by the
    # kill depends on how replies arrived (timing), so the test counts them instead of assuming.
    acknowledged = {"now": 0, "at_kill": 0}
    applied = SweepReport.applied

    def counting(report, reason: str, code: int, n: int = 1) -> None:
        if reason == "stale" and code != 0:
            acknowledged["now"] += n
        applied(report, reason, code, n)

    monkeypatch.setattr(SweepReport, "applied", counting)

    def kill_after_some_deletes(keys: list[bytes]) -> None:
        batches.append(keys)
        if len(batches) == 6 and not killed:
            # the deletes sent so far have been made and reached the replica; some replies are unread
            time.sleep(0.3)
            _synced(bed)
            acknowledged["at_kill"] = acknowledged["now"]
            killed.append(bed.kill_primary(wait=False))

    client = connect(bed.url)
    try:
        report = sweep(
            client,
            bed.url,
            Plan(mode=Mode.SWEEP),
            batching=Batching(scan_count=50, read_batch=50),
            idle_cpu=False,
            after_read=kill_after_some_deletes,
        )
    finally:
        client.close()
    assert killed and bed.primary_port() != old.port
    new = bed.node(bed.primary_port())
    assert new.client().dbsize() == 600 - stale  # every stale session is gone from the new primary
    summary = report.summary(1.0)
    # what the lost pass saw is counted once: the new primary's pass saw every session that remains
    assert summary["remaining"] == 600 - stale and sum(summary["remaining_by_org"].values()) == 600 - stale
    assert 600 - stale <= summary["scanned"] <= 600  # each session once: none of the lost pass's twice

    # The deletes the old primary acknowledged stay counted; those of batches 1-5 whose reply was not read
    # yet were made and replicated but their reply was lost with the primary; the stale sessions of the
    # batches after them are deleted (and counted) by the new primary's pass. Counting only the new
    # primary's pass would miss the acknowledged deletes.
    def stale_in(chosen: list[list[bytes]]) -> int:
        return len({k for batch in chosen for k in batch if int(k.split(b":")[1]) % 3 == 0})

    assert acknowledged["at_kill"] > 0
    after = stale - stale_in(batches[:5])
    assert acknowledged["at_kill"] + after <= summary["deleted"]["stale"] <= stale
