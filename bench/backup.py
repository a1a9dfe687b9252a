"""Benchmark of the backup job: peak RSS and upload throughput against a bare boto3 upload_file.

    .venv/bin/python bench/backup.py                 # 1 GiB dump.rdb
    .venv/bin/python bench/backup.py --size-mib 256  # quicker

It starts a real redis-server with an (uncompressed) dataset of the requested size, a moto S3
server, then runs `redis-maint run backup` in a subprocess (BGSAVE, snapshot, upload with
SHA256 part checksums, catalog, retention) and reads that process's peak RSS from wait4().
The same dump.rdb is then uploaded with a bare `boto3 upload_file` in a subprocess of its own,
to the same endpoint, with boto3's defaults and again with ChecksumAlgorithm=SHA256.
Goals: peak RSS < 150 MB; our upload >= 0.9x the bare one.

Both sides are timed alike: ours is the job's upload phase (durations_s.upload: the files and the
manifest, after the job has created its S3 client and checked the bucket); the bare process
creates its client and HEADs the bucket, then times upload_file alone. Process start-up and
client creation are outside both clocks. The throughput rounds rotate the order of the three
uploads (ours, bare, bare SHA256), so with 3 rounds each goes first, second and last once.
moto keeps objects in its own process: its memory is not ours and is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.services.moto import MotoServer  # noqa: E402
from tests.support.services.redis import RedisServer  # noqa: E402

MIB = 1024 * 1024
BUCKET = "bench"
APPROACHES = ["ours", "bare", "bare_sha256"]

# The bare upload is timed as ours is: our job creates its S3 client and checks the bucket
# (HEAD) before its upload clock starts, so the bare process does the same outside its clock.
BARE = """
import sys, time, boto3
path, key = sys.argv[1], sys.argv[2]
extra = {"ChecksumAlgorithm": "SHA256"} if sys.argv[3] == "sha256" else None
client = boto3.client("s3")
client.head_bucket(Bucket="bench")
t0 = time.monotonic()
client.upload_file(path, "bench", key, ExtraArgs=extra)
print(time.monotonic() - t0)
"""


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str, int]:
    """Run `cmd`; return (exit code, stdout, stderr, peak RSS in bytes) of that process alone."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss * 1024


def fill(server: RedisServer, size_mib: int, aof: bool) -> None:
    client = server.client(socket_timeout=600)
    client.config_set("rdbcompression", "no")  # so dump.rdb is as large as the dataset
    value = 4096
    keys = size_mib * MIB // value
    t0 = time.monotonic()
    client.execute_command("DEBUG", "POPULATE", keys, "session", value)
    if aof:
        client.bgrewriteaof()
    print(f"dataset: {keys} keys x {value} B in {time.monotonic() - t0:.1f}s", file=sys.stderr)


def machine() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next((line.split()[1] for line in meminfo if line.startswith("MemTotal")), "0")
    import boto3
    import botocore
    import s3transfer

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(int(mem) / MIB, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "s3transfer": s3transfer.__version__,
    }


def bare_upload(path: Path, env: dict[str, str], checksum: str) -> tuple[float, int]:
    code, out, err, rss = run_measured(
        [sys.executable, "-c", BARE, str(path), f"bare/{path.name}", checksum], env
    )
    if code:
        raise SystemExit(f"bare upload failed: {err}")
    return float(out.strip()), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="dataset (and dump.rdb) size")
    parser.add_argument("--aof", action="store_true", help="appendonly yes: the AOF is backed up too")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are reported)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="redis-maint-bench-"))
    moto = MotoServer().start()
    server = RedisServer(
        dir=work / "redis",
        args={"maxmemory": "0", "appendonly": "yes" if args.aof else "no", "save": ""},
    ).start()
    try:
        env = {**os.environ, **moto.env()}
        import boto3

        os.environ.update(moto.env())
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        fill(server, args.size_mib, args.aof)
        figures = bench(server, work, env, args.rounds)
        figures["machine"] = machine()
        figures["size_mib"] = args.size_mib
        report(figures, args.json)
    finally:
        server.stop()
        moto.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def bench(server: RedisServer, work: Path, env: dict[str, str], rounds: int) -> dict[str, object]:
    """One full job (BGSAVE on) for RSS and phases, then `rounds` throughput rounds.

    In the throughput rounds the job runs with bgsave off and every upload starts after sync():
    otherwise our upload competes with the writeback of the dump BGSAVE just wrote, and the bare
    upload that follows does not. Each round rotates the order of the three uploads, so over three
    rounds each takes every place once. Medians tame the noise of a shared machine.
    """
    dump = server.dir / "dump.rdb"
    summary, peak = run_job(server, work, env, bgsave=True)
    full = {"durations_s": summary["durations_s"], "peak_rss_mb": round(peak / 1e6, 1)}
    empty_bucket()
    speeds: dict[str, list[float]] = {name: [] for name in APPROACHES}
    rss, bare_rss, orders = [peak], [], []
    for n in range(rounds):
        order = APPROACHES[n % 3 :] + APPROACHES[: n % 3]
        orders.append(order)
        for name in order:
            os.sync()
            if name == "ours":
                summary, peak = run_job(server, work, env, bgsave=False)
                rss.append(peak)
                speeds["ours"].append(summary["bytes"] / MIB / summary["durations_s"]["upload"])
            else:
                checksum = "sha256" if name == "bare_sha256" else "default"
                speeds[name].append(_bare(dump, env, checksum, bare_rss))
        empty_bucket()
    return {
        "rounds": rounds,
        "orders": orders,
        "backup_bytes": summary["bytes"],
        "files": [f["path"] for f in summary["files"]],
        "full_run": full,
        "peak_rss_mb": round(max(rss) / 1e6, 1),
        "ours_upload_mib_s": round(statistics.median(speeds["ours"]), 1),
        "bare_upload_mib_s": round(statistics.median(speeds["bare"]), 1),
        "bare_sha256_upload_mib_s": round(statistics.median(speeds["bare_sha256"]), 1),
        "all_mib_s": {name: _r(values) for name, values in speeds.items()},
        "bare_peak_rss_mb": round(max(bare_rss) / 1e6, 1),
    }


def run_job(server: RedisServer, work: Path, env: dict[str, str], *, bgsave: bool) -> tuple[dict, int]:
    job_env = {
        **env,
        "REDIS_MAINT_REDIS_URL": server.url,
        "REDIS_MAINT_DATA_DIR": str(server.dir),
        "REDIS_MAINT_HISTORY_URL": f"sqlite:///{work}/history.db",
        "REDIS_MAINT_TARGET__URI": f"s3://{BUCKET}/ours",
        "REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD": "false",
        "REDIS_MAINT_JOBS__BACKUP__STAGING_DIR": str(work / "staging"),
        "REDIS_MAINT_JOBS__BACKUP__BGSAVE_TIMEOUT": "30m",
        "REDIS_MAINT_JOBS__BACKUP__BGSAVE": "true" if bgsave else "false",
        "REDIS_MAINT_HTTP__PORT": "0",
    }
    code, out, err, rss = run_measured([sys.executable, "scheduler.py", "run", "backup", "--json"], job_env)
    run = json.loads(out) if out.strip() else {}
    if code:
        raise SystemExit(f"backup failed: {run.get('error')}\n{err[-2000:]}")
    return run["summary"], rss


def _bare(path: Path, env: dict[str, str], checksum: str, rss: list[int]) -> float:
    seconds, peak = bare_upload(path, env, checksum)
    rss.append(peak)
    return path.stat().st_size / MIB / seconds


def empty_bucket() -> None:
    """moto holds objects in its own memory: drop them between rounds."""
    import boto3

    client = boto3.client("s3")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def _r(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]


def report(f: dict, as_json: bool) -> None:
    ratio = f["ours_upload_mib_s"] / f["bare_upload_mib_s"]
    ratio_sha = f["ours_upload_mib_s"] / f["bare_sha256_upload_mib_s"]
    f["throughput_ratio_vs_bare"] = round(ratio, 2)
    f["throughput_ratio_vs_bare_sha256"] = round(ratio_sha, 2)
    if as_json:
        print(json.dumps(f, indent=2))
        return
    m = f["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['os']}, Python {m['python']}")
    print(f"         boto3 {m['boto3']}, botocore {m['botocore']}, s3transfer {m['s3transfer']}")
    print(f"backup:  {f['backup_bytes'] / MIB:.0f} MiB in {', '.join(f['files'])}")
    print(
        f"full run (BGSAVE on): phases {f['full_run']['durations_s']}, peak RSS {f['full_run']['peak_rss_mb']} MB"
    )
    print(f"MiB/s per round: {f['all_mib_s']} (medians below, {f['rounds']} rounds)")
    print(f"order per round: {[' > '.join(order) for order in f['orders']]}")
    goal = "ok" if f["peak_rss_mb"] < 150 else "OVER"
    print(f"peak RSS of `redis-maint run backup` (all runs): {f['peak_rss_mb']} MB (goal < 150 MB: {goal})")
    print(f"         bare boto3 upload_file process: {f['bare_peak_rss_mb']} MB")
    print(f"upload:  ours {f['ours_upload_mib_s']} MiB/s (SHA256 part checksums, sha256 metadata)")
    print(f"         bare boto3 upload_file {f['bare_upload_mib_s']} MiB/s (defaults)")
    print(f"         bare boto3 upload_file {f['bare_sha256_upload_mib_s']} MiB/s (ChecksumAlgorithm=SHA256)")
    goal = "ok" if ratio >= 0.9 else "UNDER"
    print(f"ratio:   {ratio:.2f}x vs bare defaults (goal >= 0.9x: {goal}), {ratio_sha:.2f}x vs bare SHA256")


if __name__ == "__main__":
    main()
