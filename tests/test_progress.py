"""Progress on every wait that lasts: drawn for people at a terminal, never for scripts or pipes."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import threading
from datetime import timedelta

import pytest
from rich.console import Console

from redis_maint.backup import stored
from redis_maint.checks.restore_drill import load_progress
from redis_maint.cli.progress import BarProgress, human_bytes, human_eta, human_rate, wants_progress
from redis_maint.history.catalog import Catalog
from redis_maint.progress import Meter, Progress
from redis_maint.snapshot.bgsave import bgsave_and_wait
from tests.support.common import json_out, wait_for
from tests.support.history import current_store
from tests.support.pty_cli import run_in_pty

MIB = 1 << 20
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What a drawn bar leaves in a terminal: rich hides the cursor, then draws bar glyphs, done/total, an ETA.
BAR_MARKS = ("\x1b[?25l", "━", "eta ")
BYTES_DONE = re.compile(r"[\d.]+/[\d.]+ [KMG]?i?B")


class Recorder(Progress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, total, label, unit="items") -> None:
        self.calls.append(("start", total, label, unit))

    def advance(self, n: int = 1) -> None:
        self.calls.append(("advance", n))

    def finish(self) -> None:
        self.calls.append(("finish",))


def plain(terminal: str) -> str:
    return ANSI.sub("", terminal)


# -- formatting ---------------------------------------------------------------------------------


def test_rates_are_binary_bytes_or_keys_per_second():
    assert human_rate(12.34 * MIB, "bytes") == "12.3 MiB/s"
    assert human_rate(512, "bytes") == "512 B/s"
    assert human_rate(45_210, "keys") == "45.2k keys/s"
    assert human_rate(1_300_000, "keys") == "1.3M keys/s"
    assert human_rate(950, "keys") == "950 keys/s"
    assert human_rate(None, "keys") == "? keys/s"


def test_eta_reads_as_a_clock_and_says_when_it_is_unknown():
    assert human_eta(7) == "eta 0:07"
    assert human_eta(725) == "eta 12:05"
    assert human_eta(7384) == "eta 2:03:04"
    assert human_eta(-3) == "eta 0:00"
    assert human_eta(None) == "eta ?"


def test_sizes_use_binary_units():
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"


# -- the bar ------------------------------------------------------------------------------------


def _console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)


def test_a_byte_bar_shows_sizes_rate_and_eta():
    console = _console()
    bar = BarProgress(show_after=0, console=console)
    bar.start(100 * MIB, "uploading", "bytes")
    for _ in range(5):
        bar.advance(10 * MIB)
        threading.Event().wait(0.05)
    bar.finish()
    text = plain(console.file.getvalue())
    assert re.search(r"uploading .*50\.0/100\.0 MiB [\d.]+ MiB/s eta 0:0\d", text), text


def test_a_wait_shorter_than_a_second_draws_nothing():
    console = _console()
    bar = BarProgress(console=console)
    bar.start(1000, "counting sessions", "keys")
    bar.advance(1000)
    bar.finish()
    assert console.file.getvalue() == ""


def test_bars_only_for_people_at_a_terminal(monkeypatch):
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr("sys.stderr", tty)
        monkeypatch.setenv("TERM", "xterm")
        assert wants_progress(False) and wants_progress(False, "table")
        assert not wants_progress(True)
        assert not any(wants_progress(False, o) for o in ("wide", "tsv", "csv", "json"))
        monkeypatch.setenv("TERM", "dumb")
        assert not wants_progress(False)
    os.close(master)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setenv("TERM", "xterm")
    assert not wants_progress(False)


# -- readings from Redis ------------------------------------------------------------------------


def test_meter_starts_a_bar_once_a_total_is_known():
    rec = Recorder()
    meter = Meter(rec, "BGSAVE", "keys")
    for done, total in [(None, None), (None, None), (10, 100), (40, 100), (40, 100)]:
        meter.reading(done, total)
    meter.finish()
    assert rec.calls == [
        ("start", None, "BGSAVE", "keys"),
        ("start", 100, "BGSAVE", "keys"),
        ("advance", 10),
        ("advance", 30),
        ("finish",),
    ]
    untouched = Recorder()
    Meter(untouched, "x", "keys").finish()
    assert untouched.calls == []


def test_bgsave_reports_keys_saved_from_info_persistence(redis_server):
    client = redis_server.client()
    client.execute_command("DEBUG", "POPULATE", "5000", "k")
    client.config_set("rdb-key-save-delay", "400")  # µs per key: a save of about 2 s
    rec = Recorder()
    bgsave_and_wait(client, checkpoint=lambda: None, timeout=timedelta(minutes=1), progress=rec)
    assert ("start", 5000, "BGSAVE", "keys") in rec.calls
    advanced = sum(c[1] for c in rec.calls if c[0] == "advance")
    assert 1 <= advanced <= 5000
    assert rec.calls[-1] == ("finish",)


def test_load_progress_reads_a_loading_redis(redis_server):
    client = redis_server.client()
    client.execute_command("DEBUG", "POPULATE", "20000", "k", "64")
    client.config_set("key-load-delay", "100")  # µs per key: a load of about 2 s
    client.config_set("loading-process-events-interval-bytes", "1024")  # answer INFO while loading
    reload = threading.Thread(target=lambda: redis_server.client().execute_command("DEBUG", "RELOAD"))
    reload.start()
    seen: list[tuple] = []

    def loading() -> bool:
        info = subprocess.run(
            ["redis-cli", "-p", str(redis_server.port), "INFO", "persistence"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seen.append(load_progress(info))
        return seen[-1] != (None, None)

    wait_for(loading, timeout=20, what="INFO persistence to show loading:1")
    reload.join(30)
    done, total = seen[-1]
    assert total == (redis_server.dir / "dump.rdb").stat().st_size
    assert 0 <= done <= total
    assert load_progress("loading:0\r\nloading_total_bytes:0\r\n") == (None, None)


# -- what an operator sees ----------------------------------------------------------------------


def _seed_blobs(client, n: int = 60) -> None:
    """Incompressible values: dump.rdb and the AOF base are ~n MiB each; with the upload slowed to one
    5 MiB part at a time (`_slow_upload`), it takes seconds."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"blob:{i}", os.urandom(MIB))
    pipe.execute()


@pytest.fixture
def _slow_upload(monkeypatch):
    monkeypatch.setenv("REDIS_MAINT_TARGET__S3__MAX_CONCURRENCY", "1")
    monkeypatch.setenv("REDIS_MAINT_TARGET__S3__MULTIPART_CHUNK_MIB", "5")


@pytest.mark.usefixtures("backup_env", "bucket", "_slow_upload")
def test_backup_upload_shows_bytes_rate_and_eta_on_a_terminal(redis_server):
    _seed_blobs(redis_server.client())
    backup = run_in_pty("run", "backup", columns=100)
    assert backup.code == 0, backup.terminal
    shown = plain(backup.terminal)
    assert re.search(r"uploading .*[\d.]+/[\d.]+ MiB [\d.]+ MiB/s eta \d+:\d\d", shown), shown


@pytest.mark.usefixtures("backup_env", "bucket", "_slow_upload")
def test_no_progress_with_json_or_when_piped(redis_server, cli_process):
    _seed_blobs(redis_server.client())
    as_json = run_in_pty("run", "backup", "--json", columns=100, stdout_pipe=True)
    assert as_json.code == 0, as_json.terminal
    assert json_out(as_json)["status"] == "succeeded"
    assert [m for m in BAR_MARKS if m in as_json.terminal] == []
    assert not BYTES_DONE.search(as_json.terminal)
    piped = cli_process("run", "backup")
    assert piped.returncode == 0, piped.stderr
    assert [m for m in BAR_MARKS if m in piped.stderr + piped.stdout] == []
    assert not BYTES_DONE.search(piped.stderr + piped.stdout)


@pytest.mark.usefixtures("backup_env", "bucket")
def test_verify_and_restore_downloads_report_every_byte(redis_server, cli, settings, tmp_path):
    _seed_blobs(redis_server.client(), 3)
    assert cli("run", "backup", "--json").exit_code == 0
    record = Catalog(current_store()).list(limit=1)[0]
    target = settings().target.open(record.target_root)
    try:
        read, downloaded = Recorder(), Recorder()
        assert stored.verify(target, record.location, record.id, progress=read)["ok"]
        stored.download_verified(target, record.location, tmp_path / "copy", progress=downloaded)
    finally:
        target.close()
    for rec, label in ((read, "reading"), (downloaded, "downloading")):
        assert rec.calls[0] == ("start", record.size, label, "bytes")
        assert sum(c[1] for c in rec.calls if c[0] == "advance") == record.size
        assert rec.calls[-1] == ("finish",)


def test_sessions_count_on_a_terminal_shows_keys_per_second(redis_server):
    redis_server.client().execute_command("DEBUG", "POPULATE", "600000", "session")
    count = run_in_pty("sessions", "count", "--by-org", columns=120)  # reads every value: seconds
    assert count.code == 0, count.terminal
    shown = plain(count.terminal)
    assert re.search(r"counting sessions .*[\d,]+/600,000 keys [\d.]+k? keys/s", shown), shown
