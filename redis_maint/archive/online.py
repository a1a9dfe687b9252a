"""Restore into the running Redis: `backups restore (ID | --to-time T | --before-run RUN) --online --yes`.

The dataset is prepared as for a restore into a directory (download, assemble, truncate, prove),
into a private staging dir, and loaded by a throwaway `redis-server` process on this host. The live
Redis then takes it over by replication, without a restart:

1. `CONFIG SET masterauth <random>` (and an empty `masteruser`): the throwaway server has a random
   `requirepass`, listens on a free port and is bound to one address only, the one the live Redis
   reaches this host at;
2. `REPLICAOF host port`, then wait (bounded) for `master_link_status:up` and
   `master_sync_in_progress:0`: the full sync replaced the live dataset;
3. `REPLICAOF NO ONE`, the old `masterauth`/`masteruser` back, and `BGREWRITEAOF`, so the live
   AOF holds the restored data; the throwaway server is stopped and its files removed.

Which address the live Redis can reach: the one it sees this sidecar's own connection come from
(`CLIENT INFO` addr), when that address is one of this host's (it can be bound): a Redis on this
host sees 127.0.0.1, one on a compose network sees the sidecar's address there. Anything else (NAT, a
published port, a unix socket) needs `--online-host ADDR`, an address of this host the operator
knows the live Redis can connect to.

While the live Redis is a replica, writes to it are refused (READONLY, with replica-read-only yes)
or, with replica-read-only no, accepted and then replaced by the full sync: either way they are lost,
and clients see LOADING while it loads. The result records the window and the READONLY refusals
counted in it (`INFO errorstats`). A sync that fails (the throwaway server dies, the live Redis
cannot connect, the bound passes) puts the live Redis back to `REPLICAOF NO ONE` with its old
masterauth and says what its data is now: unchanged, the restored dataset, or neither (partial).
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import BusyLoadingError, ResponseError

from redis_maint.archive.online_server import Throwaway, text
from redis_maint.errors import (
    IntegrityError,
    JobFailedError,
    JobTimeoutError,
    MaintenanceError,
    UsageError,
)
from redis_maint.redact import redact, redact_url
from redis_maint.timeutil import isoformat, utcnow

log = logging.getLogger("redis_maint.archive.online")
POLL_S = 0.1
CONNECT_S = 15.0  # the live Redis must have started the sync by then, else it cannot reach the server
UNDO_S = 30.0  # REPLICAOF NO ONE is refused (LOADING) while the live Redis still loads
_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Preflight:
    """The live Redis as the pre-check found it, and where the throwaway server will listen."""

    where: str  # the live Redis's URL, masked
    host: str  # the address the throwaway server binds, and the live Redis's REPLICAOF host
    reach: str  # why the live Redis can reach it
    binary: str
    version: str
    dbsize: int
    appendonly: str
    replica_read_only: str
    warnings: list[str] = field(default_factory=list)


def preflight(
    url: str, *, via_sentinel: bool, online_host: str | None, timeout_s: float, binary: str | None = None
) -> Preflight:
    """The refusals of an online restore, before anything changes (UsageError: exit 2)."""
    where = redact_url(url)
    if via_sentinel:
        raise UsageError(
            "an online restore is refused behind Sentinel: Sentinel monitors this primary, and when it "
            "turns into a replica of a server Sentinel does not know, Sentinel reconfigures it or fails "
            "over to another node in the middle of the sync. Restore offline (--target DIR on a stopped "
            "node), or take the primary out of Sentinel (SENTINEL REMOVE) for the restore and add it back"
        )
    binary = binary or shutil.which("redis-server")
    if not binary:
        raise UsageError(
            "an online restore loads the dataset in a throwaway redis-server process on this host, and "
            "there is no redis-server on PATH: install it (Debian: apt-get install redis-server), or "
            "restore offline with --target DIR"
        )
    client = _connect(url, timeout_s)
    try:
        info = client.info()
        _refuse_role(where, info)
        host, reach = _reach(client, where, online_host)
        warnings = _warnings(info)
        version = str(info.get("redis_version", "?"))
        _refuse_newer(binary, version)
        rro = _config(client, "replica-read-only") or "yes"
        return Preflight(
            where,
            host,
            reach,
            binary,
            version,
            int(client.dbsize()),
            str(_config(client, "appendonly")),
            rro,
            warnings,
        )
    finally:
        client.close()


def _connect(url: str, timeout_s: float) -> redis.Redis:
    from datetime import timedelta

    from redis_maint.redis_conn import connect

    return connect(url, timedelta(seconds=timeout_s))


def _refuse_role(where: str, info: dict[str, Any]) -> None:
    if str(info.get("cluster_enabled", 0)) == "1":
        raise UsageError(
            f"the configured Redis ({where}) is a Redis Cluster node: REPLICAOF is not allowed in cluster "
            "mode and a shard must keep its slots, so an online restore is refused. Restore each shard "
            "offline: `redis-maint backups restore ID --shard NODE_ID --target DIR` on the stopped node"
        )
    if info.get("role") != "master":
        master = f"{info.get('master_host')}:{info.get('master_port')}"
        raise UsageError(
            f"the configured Redis ({where}) is a replica (role:slave) of {master}: an online restore goes "
            "into the primary, and its replicas then resync from it. Point REDIS_MAINT_NODE_URL (or "
            "REDIS_MAINT_REDIS_URL) at the primary and run it there"
        )


def _warnings(info: dict[str, Any]) -> list[str]:
    out = []
    if int(info.get("connected_slaves", 0) or 0):
        out.append(
            f"the live Redis has {info['connected_slaves']} replica(s): while it is a replica they follow "
            "it, and each does a full resync of the restored dataset afterwards"
        )
    return out


def _reach(client: redis.Redis, where: str, online_host: str | None) -> tuple[str, str]:
    """The address the throwaway server binds, and why the live Redis can connect to it."""
    if online_host:
        if not bindable(online_host):
            raise UsageError(
                f"--online-host {online_host} is not an address of this host (it cannot be bound): give "
                "an address of this host that the live Redis can connect to"
            )
        return online_host, "given with --online-host"
    try:
        seen = str(client.client_info().get("addr", ""))
    except ResponseError as exc:
        raise UsageError(
            f"cannot tell which address the live Redis ({where}) sees this host at: CLIENT INFO was "
            f"refused ({redact(str(exc))}). Add +client|info to the sidecar's ACL user, or pass "
            "--online-host ADDR (an address of this host the live Redis can connect to)"
        ) from None
    host = seen.rsplit(":", 1)[0].strip("[]")
    if not host or host.startswith("/") or not bindable(host):
        raise UsageError(
            f"the live Redis ({where}) cannot be shown to reach this host: it sees this sidecar's "
            f"connection come from {host or seen or 'a unix socket'!r}, which is not an address of this "
            "host (a unix socket, NAT, a proxy or a published port lies in between), so it could not "
            "connect to a throwaway server here. Pass --online-host ADDR: an address of this host that "
            "the live Redis can connect to (e.g. this container's address on the Redis network)"
        )
    return host, f"the live Redis sees this sidecar's connection come from {host} (CLIENT INFO)"


def bindable(host: str) -> bool:
    """True when `host` is an address of this host (a socket can be bound to it)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
        return True
    except (OSError, OverflowError):
        return False


def _refuse_newer(binary: str, live_version: str) -> None:
    """A replica cannot load the RDB of a newer Redis: the throwaway server must not be newer."""
    ours, theirs = server_version(binary), _VERSION.search(f"v={live_version}")
    if ours and theirs and ours[:2] > tuple(int(x) for x in theirs.groups())[:2]:
        raise UsageError(
            f"this host's {binary} is Redis {'.'.join(map(str, ours))}, newer than the live Redis "
            f"{live_version}: the live Redis could not load its full sync. Install the live Redis's "
            "version here, or restore offline with --target DIR"
        )


def server_version(binary: str) -> tuple[int, int, int] | None:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = _VERSION.search(out)
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


def _config(client: redis.Redis, name: str) -> str | None:
    try:
        return client.config_get(name).get(name)
    except ResponseError:
        return None


def explain(pre: Preflight, what: str) -> str:
    """What an online restore will do and what it loses: the refusal without --yes."""
    ro = (
        "refused with READONLY errors"
        if pre.replica_read_only == "yes"
        else "accepted and then thrown away (replica-read-only is no)"
    )
    lines = [
        f"an online restore replaces the whole dataset of the live Redis {pre.where} "
        f"({pre.dbsize} keys now, Redis {pre.version}) with {what}. It will:",
        f"  1. prepare the dataset in a staging dir and load it in a throwaway redis-server bound to {pre.host} "
        f"({pre.reach}), with a random password, on a free port;",
        "  2. CONFIG SET masterauth on the live Redis, REPLICAOF the throwaway server, and wait for the full sync;",
        "  3. REPLICAOF NO ONE, restore masterauth, BGREWRITEAOF, and remove the throwaway server.",
        "What is lost: every write since the restored point; and writes made to the live Redis during the "
        f"sync are {ro}: the full sync replaces the dataset. Clients see LOADING while it loads.",
        *(f"Note: {w}" for w in pre.warnings),
        "Run the same command again with --yes to do it.",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Options:
    run_id: int | str
    sync_timeout_s: float
    timeout_s: float  # connect and command timeout for the live Redis
    checkpoint: Callable[[], None] | None = None


# ---- the sync --------------------------------------------------------------------------------


def load_and_sync(
    url: str, pre: Preflight, work: Path, data: Path, files: list[str], opts: Options
) -> dict[str, Any]:
    """Serve `data` from a throwaway server and make the live Redis at `url` take it over."""
    deadline = time.monotonic() + opts.sync_timeout_s
    server = Throwaway(pre.binary, work, data, pre.host, files)
    try:
        t0 = time.monotonic()
        server.start(deadline)
        served = {**server.describe(), "load_s": round(time.monotonic() - t0, 3)}
        client = _connect(url, opts.timeout_s)
        try:
            return _take_over(client, pre, server, served, opts, deadline)
        finally:
            client.close()
    finally:
        server.stop()


def _take_over(client, pre: Preflight, server: Throwaway, served: dict, opts: Options, deadline: float):
    before = state(client)
    if before["role"] != "master":  # changed since the pre-check
        raise UsageError(
            f"the live Redis ({pre.where}) became a {before['role']} since the pre-check; nothing changed"
        )
    saved = {k: _config(client, k) for k in ("masterauth", "masteruser")}
    started, t0 = utcnow(), time.monotonic()
    try:
        client.config_set("masterauth", server.password)
        if saved["masteruser"]:
            client.config_set("masteruser", "")  # the throwaway server's password is the default user's
        log.info(
            "live Redis replicating from the throwaway server", extra={"host": pre.host, "port": server.port}
        )
        client.execute_command("REPLICAOF", server.host, str(server.port))
        _wait_synced(client, server, opts, deadline)
    except BaseException as exc:
        undone = _undo(client, saved)
        if not isinstance(exc, MaintenanceError | redis.RedisError):
            raise
        _failed(exc, pre, before, served, undone, client)
    window = {
        "from": isoformat(started),
        "to": isoformat(utcnow()),
        "seconds": round(time.monotonic() - t0, 3),
    }
    undone = _undo(client, saved)
    if undone:
        raise JobFailedError(f"the restored dataset is in the live Redis, but {undone}")
    rewrite = rewrite_aof(client, pre, opts, deadline)
    after = state(client)
    return result(pre, before, after, served, window, rewrite)


def _wait_synced(client: redis.Redis, server: Throwaway, opts: Options, deadline: float) -> None:
    connect_by = time.monotonic() + CONNECT_S
    started = False
    while True:
        if opts.checkpoint is not None:
            opts.checkpoint()
        if not server.alive():
            raise IntegrityError(
                f"the throwaway redis-server exited during the sync (exit {server.proc and server.proc.returncode}):\n"
                f"{server.log_tail(4)}"
            )
        info = client.info("replication")
        if info.get("master_link_status") == "up" and not info.get("master_sync_in_progress"):
            return
        started = (
            started or bool(info.get("master_sync_in_progress")) or info.get("master_link_status") == "up"
        )
        now = time.monotonic()
        if not started and now >= connect_by:
            raise IntegrityError(
                f"the live Redis did not start the sync from the throwaway server at {server.host}:{server.port} "
                f"within {CONNECT_S:g}s: it cannot reach that address (pass --online-host with one it can)"
            )
        if now >= deadline:
            raise JobTimeoutError(
                "the full sync had not finished within the bound (jobs.backup_restore.online_sync_timeout)"
            )
        time.sleep(POLL_S)


def _undo(client: redis.Redis, saved: dict[str, str | None]) -> str | None:
    """REPLICAOF NO ONE and the old masterauth/masteruser; what could not be undone, or None."""
    deadline = time.monotonic() + UNDO_S
    while True:
        try:
            client.execute_command("REPLICAOF", "NO", "ONE")
            break
        except BusyLoadingError:
            if time.monotonic() >= deadline:
                return "it was still loading after 30s: run `redis-cli REPLICAOF NO ONE` on it"
            time.sleep(POLL_S)
        except redis.RedisError as exc:
            return f"REPLICAOF NO ONE failed ({redact(str(exc))}): run `redis-cli REPLICAOF NO ONE` on it"
    try:
        for name, value in saved.items():
            if value is not None:
                client.config_set(name, value)
    except redis.RedisError as exc:
        return f"its masterauth/masteruser could not be set back ({redact(str(exc))}): set them again"
    return None


def state(client: redis.Redis) -> dict[str, Any]:
    """What an online restore records of the live Redis, before and after."""
    info = client.info("replication")
    errors = client.info("errorstats")
    return {
        "role": info.get("role"),
        "dbsize": int(client.dbsize()),
        "digest": digest(client),
        "master_repl_offset": info.get("master_repl_offset"),
        "readonly_errors": int((errors.get("errorstat_READONLY") or {}).get("count", 0)),
    }


def digest(client: redis.Redis) -> str | None:
    """DEBUG DIGEST, or None when the live Redis refuses DEBUG (enable-debug-command, the ACL)."""
    try:
        return text(client.execute_command("DEBUG", "DIGEST"))
    except ResponseError:
        return None


def rewrite_aof(client: redis.Redis, pre: Preflight, opts: Options, deadline: float) -> dict[str, Any]:
    """BGREWRITEAOF, once no rewrite runs (the full sync itself starts one when appendonly is yes)."""
    if pre.appendonly != "yes":
        return {"skipped": "appendonly is no on the live Redis: its RDB saves hold the data"}
    t0 = time.monotonic()
    _wait_no_rewrite(client, deadline)
    client.bgrewriteaof()
    _wait_no_rewrite(client, deadline)
    status = client.info("persistence").get("aof_last_bgrewrite_status")
    if status != "ok":
        raise JobFailedError(
            f"the restored dataset is in the live Redis's memory, but BGREWRITEAOF failed (status {status}): "
            "a restart would lose it; check the Redis log and run `redis-cli BGREWRITEAOF` again"
        )
    return {"status": status, "s": round(time.monotonic() - t0, 3)}


def _wait_no_rewrite(client: redis.Redis, deadline: float) -> None:
    while True:
        p = client.info("persistence")
        if not p.get("aof_rewrite_in_progress") and not p.get("aof_rewrite_scheduled"):
            return
        if time.monotonic() >= deadline:
            raise JobTimeoutError("the live Redis's AOF rewrite was still running at the deadline")
        time.sleep(POLL_S)


def result(
    pre: Preflight, before: dict, after: dict, served: dict, window: dict, rewrite: dict
) -> dict[str, Any]:
    refused = after["readonly_errors"] - before["readonly_errors"]
    return {
        "online": True,
        "live": {"redis": pre.where, "version": pre.version, "reach": pre.reach},
        "before": _public(before),
        "after": _public(after),
        "keys_before": before["dbsize"],
        "keys_after": after["dbsize"],
        "throwaway": served,
        "digest_matches": None if after["digest"] is None else after["digest"] == served["digest"],
        "sync": window,
        "lost": lost(pre, window, refused),
        "aof_rewrite": rewrite,
        "masterauth_restored": True,
        "warnings": pre.warnings + ([] if after["digest"] else [_NO_DIGEST]),
    }


_NO_DIGEST = "the live Redis refuses DEBUG DIGEST: compare `redis-cli DBSIZE` with keys_after instead"


def lost(pre: Preflight, window: dict, refused: int) -> dict[str, Any]:
    how = "refused (READONLY)" if pre.replica_read_only == "yes" else "accepted, then replaced by the sync"
    return {
        "window": {"from": window["from"], "to": window["to"], "seconds": window["seconds"]},
        "writes_refused": refused if pre.replica_read_only == "yes" else None,
        "note": f"writes to the live Redis from {window['from']} to {window['to']} ({window['seconds']}s) were "
        f"{how}: {refused} READONLY errors were counted in that window",
    }


def _public(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("role", "dbsize", "digest")}


def _failed(
    exc: BaseException, pre: Preflight, before: dict, served: dict, undone: str | None, client
) -> None:
    try:
        after = state(client)
    except redis.RedisError as err:
        after = {"role": None, "dbsize": None, "digest": None, "error": redact(str(err))}
    data = _what_data(before, after, served)
    put_back = (
        f"it could not be put back: {undone}"
        if undone
        else "it was put back to REPLICAOF NO ONE (a primary again) with its old masterauth"
    )
    message = f"the online restore failed: {redact(str(exc))}. The live Redis ({pre.where}) {put_back}; its data: {data}"
    summary = {"online": True, "before": _public(before), "after": _public({**after}), "throwaway": served}
    summary |= {"keys_before": before["dbsize"], "keys_after": after["dbsize"], "data": data}
    raise JobFailedError(message, summary) from None


def _what_data(before: dict, after: dict, served: dict) -> str:
    if after["digest"] is None:
        return (
            f"unknown (DEBUG DIGEST refused): DBSIZE {after['dbsize']}, was {before['dbsize']}, the restored "
            f"dataset has {served['keys']}; it may be partial: check it, then restore again"
        )
    if after["digest"] == before["digest"]:
        return f"unchanged (DEBUG DIGEST as before the restore, {after['dbsize']} keys)"
    if after["digest"] == served["digest"]:
        return f"the restored dataset (DEBUG DIGEST equals the throwaway server's, {after['dbsize']} keys)"
    return (
        f"neither the old nor the restored dataset ({after['dbsize']} keys): it may be partial; restore again "
        "(online or offline)"
    )
