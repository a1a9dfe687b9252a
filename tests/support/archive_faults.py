"""Helpers for the AOF archive's fault and drill tests: an in-process archiver on a real Redis, the
archive's bytes read back from the target, a writer thread, a small tmpfs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

from redis_maint.archive import layout
from redis_maint.archive.archiver import Archiver, ArchiverOptions
from redis_maint.archive.state import ArchiveState

AOF_ARGS = {"aof-timestamp-enabled": "yes"}
INSTANCE = "default"


def make_archiver(server, store, target, tmp_path: Path, state: ArchiveState | None = None, **kw) -> Archiver:
    kw.setdefault("staging_dir", tmp_path / "staging")
    options = ArchiverOptions(instance=INSTANCE, data_dir=server.dir, interval_s=0.2, **kw)
    return Archiver(options, server.client(), target, state or ArchiveState(store, INSTANCE))


def live_incr(server) -> Path:
    manifest = (server.dir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    name = [line.split()[1] for line in manifest.splitlines() if line.endswith("type i")][-1]
    return server.dir / "appendonlydir" / name


def concatenated(target, store, generation: str, incr_file: str) -> bytes:
    """The archive's bytes of one incr file: its recorded segments read from the target, following
    each other with no gap and no overlap, each matching its recorded length and sha256."""
    segs = [s for s in ArchiveState(store, INSTANCE).segments(generation) if s.incr_file == incr_file]
    out = b""
    for s in segs:
        assert s.offset == len(out), f"gap or overlap at {s.offset} (have {len(out)})"
        data = b"".join(target.read_chunks(s.key(INSTANCE)))
        assert (len(data), hashlib.sha256(data).hexdigest()) == (s.length, s.sha256), s.key(INSTANCE)
        out += data
    return out


def stored_segment_keys(target, generation: str) -> set[str]:
    prefix = layout.generation_prefix(INSTANCE, generation)
    return {o.key for o in target.list(prefix) if o.key.endswith(".seg")}


def recorded_segment_keys(store, generation: str) -> set[str]:
    return {s.key(INSTANCE) for s in ArchiveState(store, INSTANCE).segments(generation)}


def late_segments(target, store, generation: str) -> list[str]:
    """Stored segments the state never recorded: each must be an upload that landed after its
    archiver died or lost its lease (an older fencing token at a recorded offset of the same incr
    file), off the chain, so the archive read from the target alone is still the recorded one."""
    from redis_maint.archive.from_target import TargetArchive

    recorded = ArchiveState(store, INSTANCE).segments(generation)
    by_offset = {(s.incr_file, s.offset): s for s in recorded}
    late = sorted(stored_segment_keys(target, generation) - {s.key(INSTANCE) for s in recorded})
    for key in late:
        ref = layout.parse_segment_key(key)
        chained = by_offset.get((ref.incr_file, ref.offset))
        assert chained is not None and ref.fence < chained.fence, (
            f"{key} is not a late upload of an older lease"
        )
    read = TargetArchive(target, INSTANCE).segments(generation)
    assert [(s.offset, s.length, s.sha256) for s in read] == [
        (s.offset, s.length, s.sha256) for s in recorded
    ]
    return late


def write(client, n: int, prefix: str = "session:", size: int = 200) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"{prefix}{i}", os.urandom(size // 2).hex(), ex=86400)
    pipe.execute()


def digest(client) -> str:
    return client.execute_command("DEBUG", "DIGEST").decode()


class Writer:
    """A thread writing session-sized values until stopped."""

    def __init__(self, client):
        self.client, self.stop, self.n = client, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            write(self.client, 20, prefix=f"w{self.n}:")
            self.n += 1
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of `size` mounted on `path` (root only); None when this machine cannot mount one."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> Path:
    """Fill the filesystem of `path` with one ballast file until ENOSPC; the ballast's path."""
    ballast = path / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return ballast
