"""Redis behind Sentinel: the URL, a client that follows the primary, and what Sentinel knows.

`redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service_name[/db][?options]`

- The hosts are the Sentinels (port 26379 when left out); `service_name` is the name Sentinel
  monitors (`sentinel monitor NAME …`).
- The userinfo authenticates to the Redis data nodes, as in a redis:// URL: redis-py's `master_for`
  passes it to the primary. Sentinels have a password of their own (sentinel.conf `requirepass`),
  often none, so the userinfo is NOT sent to them; `?sentinel_password=…` (and `sentinel_username=`)
  is, when they need one. Both are masked wherever the URL is shown.
- `?failover_wait=30s`: how long a command waits for Sentinel to name a primary that answers
  (a failover takes `down-after-milliseconds` plus the election and promotion) before it fails.

A sidecar beside each node reads that node's files; `node_url` (redis://…) names the node, and its
run id (INFO server) is how the node is found in Sentinel's view, whatever address Sentinel announces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis
from redis.sentinel import Sentinel

from redis_maint.durations import format_duration, parse_duration
from redis_maint.errors import RedisUnavailableError
from redis_maint.redact import redact, redact_url

SCHEME = "redis+sentinel://"
DEFAULT_PORT = 26379
DEFAULT_FAILOVER_WAIT = timedelta(seconds=30)
OPTIONS = ("sentinel_username", "sentinel_password", "failover_wait")
EXAMPLE = "redis+sentinel://:PASSWORD@sentinel-1:26379,sentinel-2:26379/mymaster/0"


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME)


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    failover_wait: timedelta = DEFAULT_FAILOVER_WAIT


def parse(url: str) -> SentinelUrl:
    """The parts of a redis+sentinel:// URL; ValueError (with no secret in it) when it is not one."""
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SCHEME} URL")
    rest = url[len(SCHEME) :]
    rest, _hash, _fragment = rest.partition("#")
    rest, _q, query = rest.partition("?")
    netloc, _slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) if colon else None)
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError("no service name: the path must be /service_name[/db], e.g. /mymaster/0")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"the path must be /service_name[/db], got /{'/'.join(parts)}")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    wait = DEFAULT_FAILOVER_WAIT
    if "failover_wait" in options:
        wait = parse_duration(options["failover_wait"])
        if wait <= timedelta(0):
            raise ValueError("failover_wait must be longer than 0s")
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        failover_wait=wait,
    )


def _host_port(text: str) -> tuple[str, int]:
    if not text:
        raise ValueError("an empty Sentinel address (two commas, or no host)")
    if text.startswith("["):  # [::1]:26379
        host, _b, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _c, port = text.partition(":")
    if not host:
        raise ValueError(f"Sentinel address {text!r} has no host")
    if port and not port.isdigit():
        raise ValueError(f"Sentinel address {text!r} has a port that is not a number")
    return host, int(port) if port else DEFAULT_PORT


def failover_wait(url: str) -> timedelta:
    try:
        return parse(url).failover_wait
    except ValueError:
        return DEFAULT_FAILOVER_WAIT


def bad_url(url: str, exc: Exception) -> RedisUnavailableError:
    return RedisUnavailableError(
        f"redis_url is not a usable Sentinel URL (got {redact_url(url)!r}): {redact(str(exc))}. Try: {EXAMPLE}"
    )


class SentinelRedis(redis.Redis):
    """A client of the current primary; closing it closes its Sentinel connections too."""

    sentinel: Sentinel | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.sentinel is not None:
                self.sentinel.close()


def open_sentinel(cfg: SentinelUrl, timeout: timedelta) -> Sentinel:
    secs = timeout.total_seconds()
    socket = {"socket_timeout": secs, "socket_connect_timeout": secs}
    return Sentinel(
        list(cfg.sentinels),
        sentinel_kwargs={
            **socket,
            "username": cfg.sentinel_username,
            "password": cfg.sentinel_password,
            "client_name": "redis-maint",
        },
        **socket,
    )


def master_client(url: str, timeout: timedelta) -> SentinelRedis:
    """A client of the service's primary. redis-py asks Sentinel for the primary on every new
    connection, and drops a connection whose server turned replica (READONLY), so a retry after a
    failover reaches the new primary. Connects lazily: the first command proves it."""
    try:
        cfg = parse(url)
    except ValueError as exc:
        raise bad_url(url, exc) from None
    sentinel = open_sentinel(cfg, timeout)
    client = sentinel.master_for(
        cfg.service,
        redis_class=SentinelRedis,
        username=cfg.username,
        password=cfg.password,
        db=cfg.db,
        client_name="redis-maint",
        health_check_interval=30,
    )
    client.sentinel = sentinel
    return client


# -- what Sentinel knows ---------------------------------------------------------------------


@dataclass
class NodeState:
    """One data node, as Sentinel and the node itself report it."""

    address: str
    role: str  # primary | replica (as Sentinel has it)
    run_id: str | None = None
    healthy: bool = True  # Sentinel does not flag it down or disconnected, and it answered us
    flags: str = ""
    reported_role: str | None = None  # the node's own INFO replication role
    offset: int | None = None  # primary: master_repl_offset; replica: slave_repl_offset
    link: str | None = None  # replica: master_link_status (up | down)
    last_io_s: int | None = None  # replica: master_last_io_seconds_ago
    ack_lag_s: int | None = None  # replica: seconds since its last ACK, as the primary sees it
    lag_bytes: int | None = None  # replica: primary's offset minus the replica's
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class View:
    service: str
    primary: NodeState
    replicas: list[NodeState]
    sentinels_answering: int
    sentinels_configured: int

    def nodes(self) -> list[NodeState]:
        return [self.primary, *self.replicas]

    def find(self, run_id: str | None, address: str | None = None) -> NodeState | None:
        """The node with this run id (else address): how a sidecar finds its own node."""
        for node in self.nodes():
            if run_id and node.run_id == run_id:
                return node
        for node in self.nodes():
            if address and node.address == address:
                return node
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "primary": self.primary.to_json(),
            "replicas": [r.to_json() for r in self.replicas],
            "sentinels": {"answering": self.sentinels_answering, "configured": self.sentinels_configured},
        }


def describe(url: str, timeout: timedelta) -> View:
    """Ask the Sentinels for the primary and replicas, then each node for its own replication state."""
    try:
        cfg = parse(url)
    except ValueError as exc:
        raise bad_url(url, exc) from None
    sentinel = open_sentinel(cfg, timeout)
    try:
        master, replicas, answering = _ask_sentinels(sentinel, cfg, url)
    finally:
        sentinel.close()
    primary = NodeState(
        address=_addr(master["ip"], master["port"]),
        role="primary",
        run_id=master.get("runid") or None,
        flags=str(master.get("flags", "")),
    )
    _probe_primary(cfg, primary, timeout)
    slaves = _primary_replicas(cfg, primary, timeout)
    nodes = [_replica_state(cfg, r, primary, slaves, timeout) for r in replicas]
    return View(cfg.service, primary, sorted(nodes, key=lambda n: n.address), answering, len(cfg.sentinels))


def _ask_sentinels(sentinel: Sentinel, cfg: SentinelUrl, url: str) -> tuple[dict, list[dict], int]:
    errors, found, answering = [], None, 0
    for client in sentinel.sentinels:
        try:
            state = client.sentinel_master(cfg.service)
            replicas = client.sentinel_slaves(cfg.service)
        except redis.ResponseError as exc:
            answering += 1
            errors.append(redact(str(exc)))
            continue
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            errors.append(redact(str(exc)))
            continue
        answering += 1
        if found is None and state.get("is_master") and not state.get("is_odown"):
            found = (state, replicas)
    if found is None:
        why = "; ".join(dict.fromkeys(errors)) or "no Sentinel names a primary that is up"
        raise RedisUnavailableError(
            f"no primary for service {cfg.service!r} from the Sentinels in {redact_url(url)} "
            f"({answering} of {len(cfg.sentinels)} answered): {why}; check the Sentinels and the service name"
        )
    return found[0], found[1], answering


def _addr(ip: str, port: int | str) -> str:
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def node_client(cfg: SentinelUrl, address: str, timeout: timedelta) -> redis.Redis:
    host, _c, port = address.rpartition(":")
    secs = timeout.total_seconds()
    return redis.Redis(
        host=host.strip("[]"),
        port=int(port),
        username=cfg.username,
        password=cfg.password,
        db=cfg.db,
        socket_timeout=secs,
        socket_connect_timeout=secs,
        client_name="redis-maint",
    )


def _info(cfg: SentinelUrl, node: NodeState, timeout: timedelta) -> dict[str, Any] | None:
    client = node_client(cfg, node.address, timeout)
    try:
        info = client.info("replication")
        info["run_id"] = client.info("server").get("run_id")
        return info
    except redis.RedisError as exc:
        node.healthy = False
        node.problem = f"did not answer: {redact(str(exc))}"
        return None
    finally:
        client.close()


def _probe_primary(cfg: SentinelUrl, primary: NodeState, timeout: timedelta) -> None:
    info = _info(cfg, primary, timeout)
    if info is None:
        return
    primary.run_id = info.get("run_id") or primary.run_id
    primary.reported_role = _role(info.get("role"))
    primary.offset = info.get("master_repl_offset")
    if primary.reported_role != "primary":
        primary.healthy = False
        primary.problem = f"Sentinel names it the primary, but it reports role:{info.get('role')}"


def _primary_replicas(cfg: SentinelUrl, primary: NodeState, timeout: timedelta) -> dict[str, dict]:
    """The primary's own list of replicas (INFO replication slaveN): ack lag and offset per address."""
    client = node_client(cfg, primary.address, timeout)
    try:
        info = client.info("replication")
    except redis.RedisError:
        return {}
    finally:
        client.close()
    out = {}
    for key, value in info.items():
        if key.startswith("slave") and isinstance(value, dict) and "ip" in value:
            out[_addr(value["ip"], value["port"])] = value
    return out


def _replica_state(
    cfg: SentinelUrl, r: dict[str, Any], primary: NodeState, slaves: dict[str, dict], timeout: timedelta
) -> NodeState:
    node = NodeState(
        address=_addr(r["ip"], r["port"]),
        role="replica",
        run_id=r.get("runid") or None,
        flags=str(r.get("flags", "")),
    )
    down = [f for f in ("s_down", "o_down", "disconnected") if f in node.flags.split(",")]
    if down:
        node.healthy = False
        node.problem = f"Sentinel flags it {','.join(down)}"
        return node
    info = _info(cfg, node, timeout)
    if info is None:
        return node
    node.run_id = info.get("run_id") or node.run_id
    node.reported_role = _role(info.get("role"))
    node.link = info.get("master_link_status")
    node.last_io_s = info.get("master_last_io_seconds_ago")
    node.offset = info.get("slave_repl_offset")
    seen = slaves.get(node.address)
    if seen is not None:
        node.ack_lag_s = seen.get("lag")
    if primary.offset is not None and node.offset is not None:
        node.lag_bytes = max(primary.offset - node.offset, 0)
    if node.reported_role != "replica":
        node.healthy = False
        node.problem = f"Sentinel lists it as a replica, but it reports role:{info.get('role')}"
    elif node.link != "up":
        node.healthy = False
        node.problem = f"its link to the primary is {node.link}"
    return node


def _role(role: Any) -> str | None:
    return {"master": "primary", "slave": "replica"}.get(str(role), None if role is None else str(role))


def replica_lag_problem(node: NodeState, max_lag: timedelta) -> str | None:
    """Why a replica is not fresh enough to stand in for the primary (None: it is).

    Lag is time, as in Redis's own `min-replicas-max-lag`: seconds since the replica last heard
    from the primary, and since the primary last had its ACK. The byte gap is reported, not judged.
    """
    if not node.healthy:
        return node.problem or "unhealthy"
    limit = max_lag.total_seconds()
    for what, value in (("last heard from the primary", node.last_io_s), ("last ACKed", node.ack_lag_s)):
        if value is not None and value > limit:
            return f"{what} {value}s ago (over {format_duration(max_lag)})"
    return None


@dataclass
class SourcePick:
    """Which node a backup comes from, and why."""

    chosen: NodeState | None
    why: str
    view: View

    def to_json(self) -> dict[str, Any]:
        return {"chosen": None if self.chosen is None else self.chosen.address, "why": self.why}


def choose_source(view: View, source: str, max_lag: timedelta) -> SourcePick:
    """`primary`; `replica`: the freshest healthy replica (None if there is none); `auto`: that
    replica, else the primary. Ties go to the smallest byte gap, then the address, so every sidecar
    computes the same answer from the same view."""
    if source == "primary":
        return SourcePick(view.primary, "source = primary", view)
    fit, unfit = [], []
    for node in view.replicas:
        problem = replica_lag_problem(node, max_lag)
        (unfit.append(f"{node.address}: {problem}") if problem else fit.append(node))
    if fit:
        best = min(fit, key=lambda n: (n.lag_bytes if n.lag_bytes is not None else 1 << 62, n.address))
        return SourcePick(best, f"source = {source}: the freshest healthy replica", view)
    reasons = "; ".join(unfit) or "Sentinel knows no replica"
    if source == "replica":
        return SourcePick(None, f"source = replica, but no replica is fit ({reasons})", view)
    return SourcePick(
        view.primary, f"source = auto: no replica within max_replica_lag ({reasons}), so the primary", view
    )


def node_run_id(client: redis.Redis) -> str | None:
    return client.info("server").get("run_id")
