"""Benchmark the write side and the audit, each against its reference in the same run.

    python benchmarks/run_writes.py [--keys 1000000] [--small 100000] [--repeat 3] [--only audit,restore,transfer]

On throwaway Redis 7.0 servers on free loopback ports: a source filled with the same
express-session data as run.py, at --small keys and then at --keys keys, and a new empty
target for every write contestant (so each pays the same allocator growth):

  backup      session_migration.backup -> snapshot (the time the audit target is relative to)
  audit       validate_snapshot + compute_stats of that snapshot
  restore     restore(snapshot, target)                 vs  redis-cli --pipe of the SET ... PX stream
  transfer    transfer(source, target)                  vs  SCAN + MIGRATE ... COPY REPLACE KEYS (1,000 a call)

Each contestant runs in its own process, `--repeat` times alternating with its reference, and
the run with the median wall time is reported; wall time, keys/s and peak RSS are reported, and the
results go to benchmarks/results/writes-<time>-<keys>.json. Measurement only: no assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import REDIS_CLI, measure, seed, start_server  # noqa: E402

RESULTS = HERE / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def worker(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "write_worker.py"), *args]


def pipe_file(snapshot_url: str, path: Path) -> int:
    """The reference restore's input: `SET key value PX ttl` in RESP for every row (built before timing)."""
    from session_migration import open_snapshot

    now = int(time.time() * 1000)
    rows = 0
    with open(path, "wb") as out:
        for batch in open_snapshot(snapshot_url, verify=False).iter_batches(columns=["key", "value", "expire_at_ms"]):
            for key, value, expire in zip(*(batch.column(c).to_pylist() for c in ("key", "value", "expire_at_ms"))):
                ttl = b"%d" % max(1, expire - now)
                out.write(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nPX\r\n$%d\r\n%s\r\n"
                          % (len(key), key, len(value), value, len(ttl), ttl))
                rows += 1
    return rows


def record(runs: list, name: str, keys: int, m) -> dict:
    payload = {}
    for line in m.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            payload = json.loads(line[len("BENCH-RESULT "):])
    row = {"contestant": name, "keys": keys, "wall_s": round(m.wall_s, 3),
           "keys_per_s": round(keys / m.wall_s, 1) if m.wall_s else None,
           "peak_rss_mb": round(m.hwm_kb / 1024, 1),
           # with its worker processes: their PSS summed while they ran (forked pages count once)
           "total_peak_mb": round(max(m.hwm_kb, m.tree_peak_kb) / 1024, 1),
           "client_cpu_s": round(m.user_s + m.sys_s, 2),
           "server_cpu_s": round(m.server_cpu_s, 2), "returncode": m.returncode, **payload}
    if m.returncode != 0:
        row["stderr"] = m.stderr[-2000:]
    log(f"{name:>14} {keys:>9,} keys  {row['wall_s']:>8.2f} s  {row['keys_per_s'] or 0:>10,.0f} keys/s  "
        f"{row['peak_rss_mb']:>7.1f} MB")
    runs.append(row)
    return row


def keep_median(results: list, runs: list) -> None:
    """One row per contestant: the run with the median wall time, with every run's wall time
    and the highest memory of all runs (a VM's first touch of fresh memory makes single runs
    of the write side vary by up to 1.5x, for ours and the references alike)."""
    for name in dict.fromkeys(r["contestant"] for r in runs):
        mine = sorted((r for r in runs if r["contestant"] == name), key=lambda r: r["wall_s"])
        row = dict(mine[len(mine) // 2])
        row["runs_wall_s"] = [r["wall_s"] for r in mine]
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in mine)
        row["total_peak_mb"] = max(r["total_peak_mb"] for r in mine)
        results.append(row)


CONTESTANTS = ("audit", "restore", "transfer")


def run_size(source, keys: int, work: Path, results: list, only: tuple[str, ...] = CONTESTANTS,
             repeat: int = 3) -> None:
    """Each contestant `repeat` times, alternating with its reference; the medians are kept."""
    runs: list = []
    snapshot = None
    for i in range(repeat):
        if snapshot:
            shutil.rmtree(Path(snapshot).parent)  # keep one snapshot on disk: the last, which restore reads
        snap_root = work / f"snap-{keys}-{i}"
        record(runs, "backup", keys, measure(worker("backup", source.url, str(snap_root)), server=source))
        snapshot = str(next(snap_root.iterdir()))
        if "audit" in only:
            record(runs, "audit", keys, measure(worker("audit", snapshot), server=source))
    if "restore" in only:
        run_restore(snapshot, keys, work, runs, repeat)
    if "transfer" in only:
        run_transfer(source, keys, work, runs, repeat)
    keep_median(results, runs)


@contextlib.contextmanager
def fresh_target():
    """A new, empty target server for one contestant: a server that held the previous
    contestant's data keeps its allocator's memory after FLUSHALL, which makes the second
    writer's run cheaper (fewer page faults) and the comparison unfair."""
    target = start_server("redis")
    try:
        yield target
    finally:
        target.stop()


def run_restore(snapshot: str, keys: int, work: Path, runs: list, repeat: int) -> None:
    stream = work / f"pipe-{keys}.resp"
    pipe_file(snapshot, stream)
    os.sync()  # the stream's ~1 GB of dirty pages must not be written back during a measurement
    for _ in range(repeat):
        with fresh_target() as target:
            record(runs, "restore", keys, measure(worker("restore", snapshot, target.url), server=target))
        with fresh_target() as target:
            record(runs, "redis-cli --pipe", keys, measure(
                ["sh", "-c", f"{REDIS_CLI} -h 127.0.0.1 -p {target.port} --pipe < {stream}"], server=target))
    stream.unlink()


def run_transfer(source, keys: int, work: Path, runs: list, repeat: int) -> None:
    for i in range(repeat):
        with fresh_target() as target:
            record(runs, "transfer", keys, measure(
                worker("transfer", source.url, target.url, str(work / f"ckpt-{keys}-{i}")), server=source))
        with fresh_target() as target:
            record(runs, "MIGRATE", keys, measure(worker("migrate-ref", source.url, target.url), server=source))


def ratios(results: list) -> dict:
    out = {}
    for keys in sorted({r["keys"] for r in results}):
        by = {r["contestant"]: r for r in results if r["keys"] == keys}
        out[keys] = {}
        if "audit" in by:
            out[keys]["audit_time_over_backup_time"] = round(by["audit"]["wall_s"] / by["backup"]["wall_s"], 2)
        if "restore" in by:
            out[keys]["restore_over_pipe_throughput"] = round(
                by["restore"]["keys_per_s"] / by["redis-cli --pipe"]["keys_per_s"], 2)
        if "transfer" in by:
            out[keys]["transfer_over_migrate_throughput"] = round(
                by["transfer"]["keys_per_s"] / by["MIGRATE"]["keys_per_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contestant; the median is reported")
    parser.add_argument("--only", default=",".join(CONTESTANTS),
                        help="comma-separated subset of audit,restore,transfer (backup always runs)")
    args = parser.parse_args()
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    if set(only) - set(CONTESTANTS):
        parser.error(f"--only takes names from {','.join(CONTESTANTS)}")
    RESULTS.mkdir(exist_ok=True)
    results: list = []
    source = start_server("redis")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
            work = Path(tmp)
            seeded = 0
            for size in (args.small, args.keys):
                log(f"seeding the source up to {size:,} keys")
                seed(source, size - seeded, seed_value=20261125 + seeded)
                seeded = size
                run_size(source, size, work, results, only, args.repeat)
    finally:
        source.stop()
    summary = {"finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(["python", "benchmarks/run_writes.py", *sys.argv[1:]]),
               "results": results, "ratios": ratios(results)}
    path = RESULTS / f"writes-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{args.keys}.json"
    path.write_text(json.dumps(summary, indent=1))
    print("| contestant | keys | wall s | keys/s | peak RSS MB | process tree MB |\n|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['contestant']} | {r['keys']:,} | {r['wall_s']:.2f} | {r['keys_per_s'] or 0:,.0f} "
              f"| {r['peak_rss_mb']:.1f} | {r['total_peak_mb']:.1f} |")
    print(json.dumps(summary["ratios"], indent=1))
    log(f"results: {path}")


if __name__ == "__main__":
    main()
