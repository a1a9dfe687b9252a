"""Sweep exactness under a real concurrent writer (another process), on single Redis and on Cluster.

The writer (tests/support/processes/sweep_writer.py) changes the same session keys while sweeps run
and logs every change with the state it found just before. The sweep's own actions are recorded as it counts them
(key, the value it read, what it did, the code its check-and-act returned). Afterwards every change
the writer did not make must be one of the sweep's actions on exactly the value the key held then:
so a session rewritten after the sweep read it can never have been deleted or given a TTL.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis import target as steer

from redis_maint import sessions
from redis_maint.sessions import engine, scripts
from redis_maint.sessions.engine import NodeSweep
from tests.support.processes import sweep_writer
from tests.support.processes.sweep_writer import OPS, Step, key_name

SWEEP = sessions.Plan(mode=sessions.Mode.SWEEP)
State = tuple[str, bytes | None, bool]  # (type, string value, has a TTL)
MISSING: State = ("none", None, False)

# -- what the sweep did -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    key: bytes
    read: bytes  # the value the sweep read and decided on
    op: bytes  # b"D" or an absolute expiry in ms
    code: int  # the check-and-act's reply: 1 deleted, 2 expiry set, 0 left alone


@pytest.fixture
def acts(monkeypatch) -> list[Act]:
    """Every check-and-act the sweeps send, with the code Redis answered (recorded, then counted as usual)."""
    seen: list[Act] = []
    counted = NodeSweep._on_acted

    def record(self, chunk, reply):
        if isinstance(reply, list):
            seen.extend(
                Act(key, value, op, code) for (key, value, op, _why), code in zip(chunk, reply, strict=True)
            )
        return counted(self, chunk, reply)

    monkeypatch.setattr(NodeSweep, "_on_acted", record)
    return seen


# -- the check ----------------------------------------------------------------------------------------


def _observed(prior: list) -> State:
    kind, value, pttl = prior
    return (kind, value.encode() if value is not None else None, kind != "none" and pttl >= 0)


def _after(entry: dict, found: State) -> State:
    """What the writer left: its op applied to what it found."""
    op, value = entry["op"], (entry["value"] or "").encode()
    if op in ("stale", "fresh"):
        return ("string", value, True)
    if op in ("stale_no_ttl", "fresh_no_ttl"):
        return ("string", value, False)
    if op.startswith("rewrite_"):
        return ("string", value, found[2])  # SET KEEPTTL
    if op == "delete":
        return MISSING
    if op == "pexpire":
        return MISSING if found == MISSING else (found[0], found[1], True)
    return ("hash", None, False)


def violations(log: list[dict], final: dict[str, State], acts: list[Act]) -> list[str]:
    """Every state change the writer did not make, that is not the sweep acting on the very value
    the key held; and every action the sweep reports that no such change accounts for."""
    pending = Counter((a.key.decode(), a.read, a.code) for a in acts if a.code in (1, 2))
    problems: list[str] = []

    def explain(key: str, left: State, found: State, when: str) -> None:
        deleted, given_ttl = (key, left[1], 1), (key, left[1], 2)
        if left[0] == "string" and found == MISSING and pending[deleted]:
            pending[deleted] -= 1
            if not left[2] and pending[given_ttl]:  # a TTL repair, then a later sweep's delete
                pending[given_ttl] -= 1
        elif left[0] == "string" and not left[2] and found == (left[0], left[1], True) and pending[given_ttl]:
            pending[given_ttl] -= 1
        else:
            problems.append(f"{key} {when}: the writer left {_show(left)} but found {_show(found)}")

    expected: dict[str, State] = {}
    for entry in sorted(log, key=lambda e: e["seq"]):
        key = entry["key"]
        found = _observed(entry["prior"])
        left = expected.get(key, MISSING)
        if found != left:
            explain(key, left, found, f"before writer seq {entry['seq']} ({entry['op']})")
        expected[key] = _after(entry, found)
    for key in sorted(set(expected) | set(final)):
        left, found = expected.get(key, MISSING), final.get(key, MISSING)
        if found != left:
            explain(key, left, found, "at the end")
    for (key, read, code), n in pending.items():
        if n:
            what = "deleted" if code == 1 else "gave a TTL to"
            problems.append(
                f"the sweep says it {what} {key} at {_version(read)}, which no change accounts for"
            )
    return problems


def _version(value: bytes | None) -> str:
    return f"version {json.loads(value)['version']}" if value else "no value"


def _show(state: State) -> str:
    kind, value, ttl = state
    if kind == "string":
        return f"a string at {_version(value)} {'with' if ttl else 'without'} a TTL"
    return "nothing" if kind == "none" else f"a {kind}"


# -- one race -----------------------------------------------------------------------------------------


SMALL = sessions.Batching(scan_count=10, read_batch=3, act_batch=2)


@dataclass
class Race:
    seed: list[Step]
    schedule: list[Step]
    batching: sessions.Batching = SMALL
    wait_ops: int = 2  # after each read, let the writer make this many changes before the sweep acts
    sweeps: int = 3


@dataclass
class Target:
    """A single Redis or a Cluster, as the sweep and the writer reach it."""

    url: str
    cluster: bool
    entry: object  # the client sessions.sweep() is given
    data: object  # a client that reaches every key (a RedisCluster on Cluster)
    flush: object = field(repr=False)


def _final(target: Target, keys: list[str]) -> dict[str, State]:
    out = {}
    for key in keys:
        kind = target.data.type(key).decode()
        value = target.data.get(key) if kind == "string" else None
        out[key] = _observed([kind, value.decode() if value else None, target.data.pttl(key)])
    return out


def run_race(target: Target, race: Race, acts: list[Act], log_path: Path) -> list[str]:
    """Seed through the writer, sweep `race.sweeps` times while it keeps writing, then check."""
    target.flush()
    acts.clear()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no sockets shared with this one
    ready, stop, progress = ctx.Event(), ctx.Event(), ctx.Value("q", 0, lock=False)
    args = (target.url, target.cluster, race.seed, race.schedule, str(log_path), ready, stop, progress)
    writer = ctx.Process(target=sweep_writer.run, args=args, daemon=True)
    writer.start()

    def let_the_writer_move(keys: list[bytes]) -> None:
        # Normally milliseconds; the bound is for a writer starved of CPU by a busy host (xdist).
        goal, deadline = progress.value + race.wait_ops, time.monotonic() + 15
        while progress.value < goal and time.monotonic() < deadline and writer.is_alive():
            time.sleep(0.0002)

    try:
        assert ready.wait(60), f"the writer did not start (exit code {writer.exitcode})"
        for _ in range(race.sweeps):
            sessions.sweep(
                target.entry,
                target.url,
                SWEEP,
                batching=race.batching,
                idle_cpu=False,
                after_read=let_the_writer_move,
            )
    finally:
        stop.set()
        writer.join(30)
        if writer.is_alive():
            writer.kill()
    assert writer.exitcode == 0, f"the writer failed (exit code {writer.exitcode})"
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    keys = sorted({key_name(s.key) for s in race.seed + race.schedule})
    return violations(log, _final(target, keys), acts)


@pytest.fixture
def single(redis_server) -> Target:
    client = redis_server.client()
    return Target(redis_server.url, False, client, client, client.flushall)


@pytest.fixture
def cluster(redis_cluster) -> Target:
    entry = redis_cluster.servers[0].client()
    return Target(redis_cluster.url, True, entry, redis_cluster.client(), redis_cluster.flush)


# -- a race that must happen, with the real script and with an unchecked delete -------------------------

KEYS = 6
# Every key stale and rewritten (still stale, new version) over and over: the sweep wants each one gone,
# and waiting for KEYS writer changes after a read makes every value it read out of date before it acts.
ALWAYS_REWRITTEN = Race(
    seed=[Step("stale", i) for i in range(KEYS)],
    schedule=[Step("rewrite_stale", i) for i in range(KEYS)],
    # One more than KEYS: a change Redis made before the read may be counted only after it.
    wait_ops=KEYS + 1,
    sweeps=2,
)
# The same check-and-act without the comparison: deletes whatever the key holds by then.
UNCHECKED = scripts.CHECK_AND_ACT.replace("if current[i] == ARGV[2 * i - 1] then", "if true then")


def test_a_session_rewritten_after_the_read_is_never_deleted(single, acts, tmp_path):
    problems = run_race(single, ALWAYS_REWRITTEN, acts, tmp_path / "writer.log")

    assert problems == []
    assert acts and all(a.code == 0 for a in acts), "every value the sweep read was rewritten before it acted"


def test_the_check_catches_a_sweep_that_deletes_without_comparing(single, acts, monkeypatch, tmp_path):
    assert UNCHECKED != scripts.CHECK_AND_ACT
    sha = scripts.sha1(UNCHECKED)
    monkeypatch.setitem(scripts.SOURCES, sha, UNCHECKED)  # the wire loads it on NOSCRIPT
    monkeypatch.setattr(engine, "CHECK_AND_ACT_SHA", sha)

    problems = run_race(single, ALWAYS_REWRITTEN, acts, tmp_path / "writer.log")

    assert any("but found nothing" in p for p in problems), problems
    assert any("which no change accounts for" in p for p in problems), problems


# -- the writer's schedule from Hypothesis -------------------------------------------------------------

MAX_KEYS = 12
STEPS = st.builds(
    Step,
    op=st.sampled_from(sorted(OPS)),
    key=st.integers(0, MAX_KEYS - 1),
    pause_us=st.sampled_from([0, 0, 0, 100, 1000]),
)
# Keys 0 and 1 start as a stale session and one without a TTL, so every example gives the sweep work.
SEED = st.lists(st.sampled_from([*sorted(OPS), None]), max_size=MAX_KEYS - 2).map(
    lambda kinds: (
        [Step("stale", 0), Step("fresh_no_ttl", 1)]
        + [Step(op, i) for i, op in enumerate(kinds, start=2) if op not in (None, "delete", "pexpire")]
    )
)
RACES = st.builds(
    Race,
    seed=SEED,
    schedule=st.lists(STEPS, min_size=1, max_size=30),
    batching=st.builds(
        sessions.Batching,
        scan_count=st.integers(2, 20),
        read_batch=st.integers(1, 5),
        act_batch=st.integers(1, 3),
    ),
    wait_ops=st.integers(0, 4),
    sweeps=st.just(2),
)
FEW = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _schedules_keep_the_sweep_exact(target: Target, acts: list[Act], tmp_path: Path) -> Counter:
    seen: Counter = Counter()

    @FEW
    @given(race=RACES)
    def check(race: Race) -> None:
        problems = run_race(target, race, acts, tmp_path / "writer.log")
        assert problems == [], "\n".join(problems)
        raced = sum(a.code == 0 for a in acts)
        steer(float(raced), label="actions left alone because the value changed")
        seen.update(raced=raced, deleted=sum(a.code == 1 for a in acts), ttl=sum(a.code == 2 for a in acts))

    check()
    print(f"\nsweep actions over {FEW.max_examples} schedules: {dict(seen)}")
    return seen


def test_hypothesis_schedules_on_single_redis(single, acts, tmp_path):
    seen = _schedules_keep_the_sweep_exact(single, acts, tmp_path)
    assert sum(seen.values()) > 0, "the sweeps never tried to change a key"


def test_hypothesis_schedules_on_a_cluster(cluster, acts, tmp_path):
    seen = _schedules_keep_the_sweep_exact(cluster, acts, tmp_path)
    assert sum(seen.values()) > 0, "the sweeps never tried to change a key"
