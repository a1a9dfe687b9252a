"""Deep verification of a stored backup: a restore drill no operator has to remember.

1. download every file into a disposable directory, checking each sha256 against the manifest
   (redis_maint.backup.stored.download_verified: the same layout a restore uses);
2. redis-check-aof and redis-check-rdb on that copy, in one throwaway container (integrity);
3. a throwaway `redis-server` container started on the copy (no network: it listens on a unix
   socket in its tmpfs and is queried with `docker exec redis-cli`), reporting how many keys
   and how many `session:*` keys it loaded, and the loaded dataset's `DEBUG DIGEST`: after a
   restore, the restarted Redis's `DEBUG DIGEST` must equal it.

Expired is not missing. A master drops the keys whose TTL has passed while it loads an RDB, so
the count alone cannot tell a key that expired since the backup from one the backup lost. The
drill's server therefore starts as a replica of an unreachable master (127.0.0.1:1): a replica
never expires keys itself, so it keeps every key of the backup, and its DBSIZE against the
manifest's `dbsize` gives the missing keys exactly. Promoted to master (REPLICAOF NO ONE), one
SCAN of each database then drops the expired keys, and what is left is what a restored Redis
serves: the live keys, the session count and the DEBUG DIGEST. `keys` records source, loaded,
expired, live, missing and extra (more than the source had: writes between the source's count
and the copy of its AOF); they are recorded, not judged, since the source's count is taken
while it serves writes.

The drill also records the parts of a restore's time (RTO): `rto = {download_s, load_s,
total_s}` with total_s = download_s + load_s (what a restore takes: fetch the files, let Redis
load them); `checks_s` (the check tools) and `drill_s` (the whole drill) are recorded beside it.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from redis_maint.backup import stored
from redis_maint.checks import integrity
from redis_maint.checks.containers import CheckEnv, ContainerSpec, Engine, plan_mount
from redis_maint.errors import ContainerError, IntegrityError, JobCancelledError, JobTimeoutError
from redis_maint.history.catalog import verify_depth
from redis_maint.progress import Meter, Progress
from redis_maint.provenance import os_user
from redis_maint.run.interrupts import signals_cancel
from redis_maint.storage import Target

SOCKET = "/tmp/redis.sock"
POLL_S = 0.2
_INFO_FIELD = re.compile(r"^(?P<name>[a-z_]+):(?P<value>\S*)\s*$", re.M)
_KEYSPACE = re.compile(r"^db(?P<db>\d+):keys=(?P<keys>\d+),expires=(?P<expires>\d+)", re.M)
# A master that cannot be reached: the drill's server loads as its replica, so it expires nothing.
UNREACHABLE_MASTER = ("127.0.0.1", "1")
# SCAN inside one script: the server is ours alone, so blocking it costs nobody anything.
_COUNT_SCRIPT = (
    "local n, cursor = 0, '0' "
    "repeat local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000) "
    "cursor = r[1]; n = n + #r[2] until cursor == '0' return n"
)
# A Redis Cluster shard's backup (its manifest has `cluster`): up to this many of the loaded keys are
# hashed to their slots, which must all be the shard's own (else the files are another node's).
SLOT_SAMPLE = 1000
_SAMPLE_SCRIPT = (
    "local keys, cursor, n = {}, '0', tonumber(ARGV[1]) "
    "repeat local r = redis.call('SCAN', cursor, 'COUNT', 1000) cursor = r[1] "
    "for _, k in ipairs(r[2]) do if #keys < n then keys[#keys + 1] = k end end "
    "until cursor == '0' or #keys >= n return keys"
)


@dataclass(frozen=True)
class DrillOptions:
    run_id: int | str
    timeout_s: float  # for the whole drill: download, checks and the server
    session_pattern: str = "session:*"
    db: int = 0
    cancel: threading.Event | None = None
    checkpoint: Callable[[], None] | None = None
    progress: Progress | None = None  # the download and the load report here


def deep_verify(env: CheckEnv, target: Target, location: str, opts: DrillOptions) -> dict[str, Any]:
    """Download, check and load one backup; the `deep` part of a verify result (`ok` included)."""
    deadline = time.monotonic() + opts.timeout_s
    work = Path(env.docker.snapshot_dir) / f"verify-{opts.run_id}-{secrets.token_hex(3)}"
    result: dict[str, Any] = {"ok": False, "checks": [], "server": None, "problems": []}
    try:
        t0 = time.monotonic()
        try:
            manifest = stored.download_verified(target, location, work, opts.checkpoint, opts.progress)
        except IntegrityError as exc:
            result["problems"].append(str(exc))
            return result
        result["download_s"] = round(time.monotonic() - t0, 3)
        result["source_keys"] = manifest.get("dbsize")
        t1 = time.monotonic()
        result["checks"] = _checks(env, work, manifest, opts, deadline)
        result["checks_s"] = round(time.monotonic() - t1, 3)
        result["server"] = load_in_server(env, work, manifest, opts, deadline)
        result["drill_s"] = round(time.monotonic() - t0, 3)
        result["rto"] = rto(result["download_s"], result["server"]["load_s"])
        result["keys"] = key_counts(result["source_keys"], result["server"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not integrity.checks_ok(result["checks"]):
        result["problems"].append(f"integrity check: {integrity.describe_failures(result['checks'])}")
    shard = (result.get("server") or {}).get("shard_slots") or {}
    if shard.get("outside"):
        result["problems"].append(
            f"{shard['outside']} of {shard['sampled']} sampled keys hash to slots outside this shard's "
            f"{shard['slots']} (e.g. {shard['examples'][0]!r}): the files are not this Cluster node's data"
        )
    result["ok"] = not result["problems"]
    return result


def _checks(env: CheckEnv, work: Path, manifest: dict[str, Any], opts: DrillOptions, deadline: float) -> list:
    found = integrity.targets(manifest.get("aof_manifest"), manifest.get("rdb"))
    results = integrity.check_dir(
        env, work, found, run_id=opts.run_id, cancel=opts.cancel, timeout_s=_left(deadline)
    )
    return [r.to_dict() for r in results]


def load_in_server(
    env: CheckEnv, data: Path, manifest: dict[str, Any], opts: DrillOptions, deadline: float
) -> dict[str, Any]:
    """Start redis-server on `data` in a throwaway container; count what it loaded."""
    engine = Engine(env.docker, opts.run_id)
    try:
        engine.ensure_image(env.image)
        integrity.hand_over(data, env.docker.user)
        mount = plan_mount(data, env.docker)
        spec = ContainerSpec(env.image, server_command(manifest, mount.workdir), "verify-server", mount)
        t0 = time.monotonic()
        with engine.started(spec, _left(deadline)) as container:
            _wait_until_loaded(engine, container, deadline, opts)
            load_s = round(time.monotonic() - t0, 3)
            # As a replica it has expired nothing: every key of the backup is still there.
            loaded = parse_keyspace(_cli(engine, container, ["INFO", "keyspace"], deadline), opts.db)
            _cli(engine, container, ["REPLICAOF", "NO", "ONE"], deadline)
            live = sum(_scan_count(engine, container, db, deadline) for db in loaded["dbs"])
            keyspace = _cli(engine, container, ["INFO", "keyspace"], deadline)
            sessions = _cli(engine, container, _count_command(opts), deadline)
            digest = _cli(engine, container, ["DEBUG", "DIGEST"], deadline).strip()
            shard = _shard_slots(engine, container, manifest, deadline)
            log = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        engine.close()
    counts = {**parse_keyspace(keyspace, opts.db), "sessions": _int(sessions)}
    counts.pop("dbs")
    expiry = {"loaded_keys": loaded["keys"], "expired_keys": max(loaded["keys"] - live, 0)}
    shard_part = {} if shard is None else {"shard_slots": shard}
    return {**counts, **expiry, "digest": digest, "load_s": load_s, **_source(log), **shard_part}


def _shard_slots(engine: Engine, container: Any, manifest: dict[str, Any], deadline: float) -> dict | None:
    """A Cluster shard's backup: do its keys hash to the shard's slots? None for any other backup."""
    ranges = (manifest.get("cluster") or {}).get("slots")
    if ranges is None:
        return None
    out = _cli(engine, container, ["-n", "0", "EVAL", _SAMPLE_SCRIPT, "0", str(SLOT_SAMPLE)], deadline)
    keys = [k for k in out.splitlines() if k and not k.startswith("(empty")]
    return slot_check(keys, ranges)


def slot_check(keys: list[str], ranges: list[list[int]]) -> dict[str, Any]:
    """How many of `keys` hash (CRC16, hash tags honoured) to a slot outside `ranges`."""
    from redis.crc import key_slot

    outside = [k for k in keys if not any(a <= key_slot(k.encode()) <= b for a, b in ranges)]
    return {"sampled": len(keys), "outside": len(outside), "examples": outside[:5], "slots": ranges}


def _scan_count(engine: Engine, container: Any, db: int, deadline: float) -> int:
    """Live keys of one database; on a master the SCAN also drops the keys whose TTL has passed."""
    out = _cli(engine, container, ["-n", str(db), "EVAL", _COUNT_SCRIPT, "0", "*"], deadline)
    return _int(out) or 0


def rto(download_s: float, load_s: float) -> dict[str, float]:
    """The parts of a restore's time: fetching the files and Redis loading them."""
    return {"download_s": download_s, "load_s": load_s, "total_s": round(download_s + load_s, 3)}


def key_counts(source: int | None, server: dict[str, Any]) -> dict[str, int | None]:
    """The backup's keys against the source's dbsize: loaded (as a replica, nothing expired),
    expired since the backup, live, and missing or extra against the source."""
    loaded = server["loaded_keys"]
    return {
        "source": source,
        "loaded": loaded,
        "expired": server["expired_keys"],
        "live": server["keys"],
        "missing": None if source is None else max(source - loaded, 0),
        "extra": None if source is None else max(loaded - source, 0),
    }


def server_command(manifest: dict[str, Any], workdir: str) -> list[str]:
    """redis-server on the restored layout: AOF when the backup has one (Redis prefers it), else RDB."""
    rdb = manifest.get("rdb") or "dump.rdb"
    cmd = ["redis-server", "--dir", workdir, "--dbfilename", rdb, "--port", "0", "--unixsocket", SOCKET]
    cmd += ["--save", "", "--aof-load-truncated", "yes"]
    cmd += ["--enable-debug-command", "local"]  # DEBUG DIGEST: what a restored Redis must match
    cmd += ["--replicaof", *UNREACHABLE_MASTER]  # load everything, expire nothing (module docstring)
    aof = manifest.get("aof_manifest")
    if not aof:
        return [*cmd, "--appendonly", "no"]
    cmd += ["--appendonly", "yes"]
    if "/" in aof:
        directory, name = aof.split("/", 1)
        return [*cmd, "--appenddirname", directory, "--appendfilename", name.removesuffix(".manifest")]
    return [*cmd, "--appendfilename", aof]


def parse_keyspace(info: str, db: int) -> dict[str, Any]:
    """`INFO keyspace` -> total keys and expires, the keys of the sessions' db, and which dbs have keys."""
    dbs = {int(m["db"]): (int(m["keys"]), int(m["expires"])) for m in _KEYSPACE.finditer(info)}
    return {
        "keys": sum(k for k, _ in dbs.values()),
        "expires": sum(e for _, e in dbs.values()),
        "db": db,
        "db_keys": dbs.get(db, (0, 0))[0],
        "dbs": sorted(dbs),
    }


def _count_command(opts: DrillOptions) -> list[str]:
    return ["-n", str(opts.db), "EVAL", _COUNT_SCRIPT, "0", opts.session_pattern]


def _wait_until_loaded(engine: Engine, container: Any, deadline: float, opts: DrillOptions) -> None:
    meter = Meter(opts.progress, "loading the backup", "bytes")
    try:
        _poll_until_loaded(engine, container, deadline, opts.cancel, meter)
    finally:
        meter.finish()


def _poll_until_loaded(
    engine: Engine, container: Any, deadline: float, cancel: threading.Event | None, meter: Meter
) -> None:
    while True:
        if cancel is not None and cancel.is_set():
            raise JobCancelledError("stopped because the daemon is shutting down")
        container.reload()
        if container.status in ("exited", "dead"):
            log = container.logs(tail=8).decode("utf-8", "replace").strip()
            raise IntegrityError(f"redis-server could not load the backup and exited:\n{log}")
        code, out = engine.exec(container, ["redis-cli", "-s", SOCKET, "PING"], _left(deadline))
        if code == 0 and out.strip() == "PONG":
            return
        if out.startswith("LOADING"):  # INFO answers while loading: how far it got
            _, info = engine.exec(
                container, ["redis-cli", "-s", SOCKET, "INFO", "persistence"], _left(deadline)
            )
            meter.reading(*load_progress(info))
        else:
            meter.reading(None, None)  # starting up: show the wait's elapsed time
        if time.monotonic() >= deadline:
            raise JobTimeoutError(
                f"redis-server was still loading the backup at the deadline (last: {out.strip()})"
            )
        time.sleep(POLL_S)


def load_progress(info: str) -> tuple[int | None, int | None]:
    """(bytes loaded, bytes to load) from a loading server's INFO persistence text; (None, None)
    when it does not say (not loading, or no total): the wait then shows its elapsed time."""
    fields = {m["name"]: m["value"] for m in _INFO_FIELD.finditer(info)}
    total, done = _int(fields.get("loading_total_bytes", "")), _int(fields.get("loading_loaded_bytes", ""))
    if fields.get("loading") != "1" or not total:
        return None, None
    return done, total


def _cli(engine: Engine, container: Any, args: list[str], deadline: float) -> str:
    code, out = engine.exec(container, ["redis-cli", "-s", SOCKET, *args], _left(deadline))
    if code != 0 or out.startswith(("ERR", "(error)")):
        raise ContainerError(
            f"redis-cli {args[0]} in the verify container failed (exit {code}): {out.strip()[:300]}"
        )
    return out


def _source(log: str) -> dict[str, Any]:
    if "DB loaded from append only file" in log:
        return {"loaded_from": "aof"}
    if "DB loaded from disk" in log:
        return {"loaded_from": "rdb"}
    return {"loaded_from": None}


def _int(text: str) -> int | None:
    text = text.strip().removeprefix("(integer) ")
    return int(text) if text.lstrip("-").isdigit() else None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise JobTimeoutError("deep verification ran out of time; raise the job's timeout or docker.timeout")
    return left


def add_deep(
    env: CheckEnv, target: Target, location: str, result: dict[str, Any], opts: DrillOptions
) -> dict[str, Any]:
    """Extend a `stored.verify` result with the drill (skipped when a sha256 already failed)."""
    if not result["ok"]:
        result["deep"] = {"ok": False, "skipped": "the stored files failed their sha256 check"}
        return result
    if opts.cancel is None:
        opts = replace(opts, cancel=threading.Event())
    # SIGTERM/^C in a foreground `backups verify --deep` kills and removes the containers too.
    with signals_cancel(opts.cancel):
        deep = deep_verify(env, target, location, opts)
    result["deep"] = deep
    result["problems"] = [*result["problems"], *deep["problems"]]
    result["ok"] = bool(deep["ok"])
    return result


def describe(result: dict[str, Any]) -> list[str]:
    """Lines for people: each check's verdict and what the throwaway server loaded."""
    deep = result.get("deep")
    if not deep:
        return []
    if "skipped" in deep:
        return [f"deep: skipped ({deep['skipped']})"]
    lines = [f"{c['verdict']:8} {c['file']} ({c['tool']})" for c in deep["checks"]]
    server = deep.get("server")
    if server:
        lines.append(
            f"loaded   {server['keys']} keys ({server['sessions']} sessions) "
            f"from {server['loaded_from'] or '?'} in {server['load_s']}s; the source had {deep.get('source_keys')}"
        )
        lines.append(f"digest   {server.get('digest')} (DEBUG DIGEST of the loaded dataset)")
        if server.get("shard_slots"):
            sh = server["shard_slots"]
            lines.append(
                f"slots    {sh['sampled'] - sh['outside']} of {sh['sampled']} sampled keys in the shard's slots"
            )
    keys, parts = deep.get("keys"), deep.get("rto")
    if keys:
        lines.append(
            f"keys     {keys['loaded']} of the source's {keys['source']} loaded; {keys['expired']} expired "
            f"since the backup (not missing); {keys['missing']} missing"
        )
    if parts:
        lines.append(
            f"rto      download {parts['download_s']}s + load {parts['load_s']}s = {parts['total_s']}s"
        )
    return lines


def evidence(result: dict[str, Any]) -> dict[str, Any]:
    """What a verification proves, for its summary and the catalog's `verified` event: its depth,
    and for a drill the RTO parts and the key counts."""
    deep = result.get("deep") or {}
    out: dict[str, Any] = {"depth": verify_depth(result)}
    if deep.get("rto"):
        out["rto"] = deep["rto"]
    if deep.get("keys"):
        out["keys"] = deep["keys"]
    return out


def verified_by(result: dict[str, Any], *, run_id: int, requested_by: str | None) -> dict[str, Any]:
    """The facts of the catalog's `verified` event: the evidence, who ran it (the claim and the OS
    user) and in which run."""
    return {**evidence(result), "run_id": run_id, "requested_by": requested_by, "os_user": os_user()}


def session_db(redis_url: str) -> int:
    """The db index of the maintained Redis URL (/N, or ?db=N for unix sockets)."""
    from redis.connection import parse_url

    from redis_maint.topology.sentinel import is_sentinel_url, parse

    if is_sentinel_url(redis_url):  # redis+sentinel://…/service/N
        return parse(redis_url).db
    return int(parse_url(redis_url).get("db") or 0)
