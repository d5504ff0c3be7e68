"""Benchmark a 3-master Redis Cluster against one server holding the same keys.

    python benchmarks/cluster.py [--keys 1000000] [--repeat 3] [--only backup,restore,transfer] [--server valkey]

Redis 7.0 everywhere (or Valkey with `--server valkey`), throwaway servers on free loopback ports, the express-session data of
run.py (~1 KB JSON sessions with TTLs). Each contestant is the `session-migration` command in
direct mode (no Prefect API), its own process, timed from spawn to exit; single node and
cluster alternate, --repeat pairs, medians. References measured in the same run:

  backup    `redis-cli --rdb` of the single server; of the cluster, `redis-cli --rdb` of each
            master one after the other (what an operator would script)
  restore   into a new empty single server / new empty cluster; reference `redis-cli --pipe` of
            the same `SET key value PX ttl` stream, for the cluster split by slot owner and
            piped into the three masters at once
  transfer  single server -> new single server, and single server -> new cluster

On this 2-core machine the cluster's three servers share the same two cores as the single
server did, so the comparison is per key of work, not a scale-out. Prints Markdown tables
and writes benchmarks/results/cluster-<time>.json. Measurement only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from cli import direct_env, median, row  # noqa: E402
from common import REDIS_CLI, _resp, measure, seed, session, start_server  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from servers import free_cluster_port  # noqa: E402

RESULTS = HERE / "results"
SERVER = "redis"  # or "valkey": --server
CLI = [sys.executable, "-m", "session_migration_cli"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchCluster:
    """Three cluster-enabled masters; looks like a `common.Server` to `measure`."""

    def __init__(self) -> None:
        self.nodes = []
        try:
            for _ in range(3):
                self.nodes.append(start_server(SERVER, port=free_cluster_port(), extra=(
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")))
            subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 30
            while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok")
                time.sleep(0.05)
            # which node owns which slot, from the node itself
            self.owner = [0] * 16384
            ports = [n.port for n in self.nodes]
            for first, last, port in _slot_ranges(self.nodes[0]):
                for slot in range(first, last + 1):
                    self.owner[slot] = ports.index(port)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def cpu_seconds(self) -> float:
        return sum(n.cpu_seconds() for n in self.nodes)

    def dbsize(self) -> int:
        return sum(n.dbsize() for n in self.nodes)

    def wait_no_child(self) -> None:
        for n in self.nodes:
            n.wait_no_child()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def _slot_ranges(node) -> list[tuple[int, int, int]]:
    import redis

    reply = redis.Redis(port=node.port).execute_command("CLUSTER", "SLOTS")
    return [(int(first), int(last), int(master[1])) for first, last, master, *_ in reply]


@contextmanager
def fresh(kind: str):
    target = BenchCluster() if kind == "cluster" else start_server(SERVER)
    try:
        yield target
    finally:
        target.stop()


def split_stream(keys: int, seed_value: int, work: Path, owner: list[int] | None) -> list[Path]:
    """`SET key value PX ttl` for the seed data, one file (or one per cluster node)."""
    rng = random.Random(seed_value)
    now = int(time.time() * 1000)
    paths = [work / f"stream-{i}.resp" for i in range(3 if owner else 1)]
    files = [open(p, "wb") for p in paths]
    try:
        for _ in range(keys):
            key, value, ttl = session(rng, now)
            files[owner[key_slot(key)] if owner else 0].write(_resp(b"SET", key, value, b"PX", b"%d" % ttl))
    finally:
        for f in files:
            f.close()
    return paths


def seed_cluster(cluster: BenchCluster, keys: int, seed_value: int, work: Path) -> None:
    paths = split_stream(keys, seed_value, work, cluster.owner)
    procs = [subprocess.Popen(["sh", "-c", f"{REDIS_CLI} -h 127.0.0.1 -p {n.port} --pipe < {p}"],
                              stdout=subprocess.DEVNULL) for n, p in zip(cluster.nodes, paths)]
    for proc in procs:
        proc.wait(600)
    for p in paths:
        p.unlink()


def pipe_all(target, paths: list[Path]) -> list[str]:
    nodes = target.nodes if isinstance(target, BenchCluster) else [target]
    script = " & ".join(f"{REDIS_CLI} -h 127.0.0.1 -p {n.port} --pipe < {p} > /dev/null" for n, p in zip(nodes, paths))
    return ["sh", "-c", f"{script}; wait"]


def rdb_all(target, work: Path) -> list[str]:
    nodes = target.nodes if isinstance(target, BenchCluster) else [target]
    return ["sh", "-c", " && ".join(f"{REDIS_CLI} -h 127.0.0.1 -p {n.port} --rdb {work}/n{i}.rdb > /dev/null"
                                    for i, n in enumerate(nodes))]


def bench_backup(sources: dict, keys: int, work: Path, home: Path, repeat: int) -> list[dict]:
    rows = []
    for i in range(repeat):
        for kind, source in sources.items():
            dest = work / f"backup-{kind}-{i}"
            rows.append(row(f"backup, {kind}", keys, measure([*CLI, "backup", source.url, str(dest), "-p", "sess:*"],
                                                             server=source, env=direct_env(home))))
            shutil.rmtree(dest, ignore_errors=True)
            rows.append(row(f"redis-cli --rdb, {kind}", keys, measure(rdb_all(source, work), server=source,
                                                                       settle=source.wait_no_child)))
            for f in work.glob("n*.rdb"):
                f.unlink()
        log("backup pair %d: %s" % (i + 1, ", ".join(f"{r['contestant']} {r['wall_s']:.2f} s" for r in rows[-4:])))
    return [median(rows, name, keys) for name in dict.fromkeys(r["contestant"] for r in rows)]


def bench_restore(single, keys: int, work: Path, home: Path, repeat: int, owner: list[int]) -> list[dict]:
    snap_root = work / "snaps"
    made = measure([*CLI, "backup", single.url, str(snap_root), "-p", "sess:*", "--snapshot-id", "r"], server=single,
                   env=direct_env(home))
    assert made.returncode == 0, made.stderr
    snapshot = str(snap_root / "r")
    streams = {"single": split_stream(keys, 1, work / "one", None), "cluster": split_stream(keys, 1, work / "three", owner)}
    rows = []
    for i in range(repeat):
        for kind in ("single", "cluster"):
            with fresh(kind) as target:
                rows.append(row(f"restore, {kind}", keys, measure([*CLI, "restore", snapshot, target.url],
                                                                  server=target, env=direct_env(home))))
            with fresh(kind) as target:
                rows.append(row(f"redis-cli --pipe, {kind}", keys, measure(pipe_all(target, streams[kind]),
                                                                            server=target)))
        log("restore pair %d: %s" % (i + 1, ", ".join(f"{r['contestant']} {r['wall_s']:.2f} s" for r in rows[-4:])))
    return [median(rows, name, keys) for name in dict.fromkeys(r["contestant"] for r in rows)]


def bench_transfer(single, keys: int, work: Path, home: Path, repeat: int) -> list[dict]:
    rows = []
    for i in range(repeat):
        for kind in ("single", "cluster"):
            with fresh(kind) as target, tempfile.TemporaryDirectory() as state:
                env = {**direct_env(home), "SESSION_MIGRATION_STATE_DIR": state}
                rows.append(row(f"transfer, single -> {kind}", keys, measure(
                    [*CLI, "transfer", single.url, target.url, "-p", "sess:*"], server=target, env=env)))
        log("transfer pair %d: %s" % (i + 1, ", ".join(f"{r['contestant']} {r['wall_s']:.2f} s" for r in rows[-2:])))
    return [median(rows, name, keys) for name in dict.fromkeys(r["contestant"] for r in rows)]


def markdown(results: list[dict]) -> str:
    lines = ["| contestant | keys | wall s (median) | runs | keys/s | client CPU s | servers CPU s |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['contestant']} | {r['keys']:,} | {r['wall_s']:.2f} | "
                     f"{', '.join(f'{w:.2f}' for w in r['runs_wall_s'])} | {r['keys_per_s'] or 0:,.0f} | "
                     f"{r['client_cpu_s']:.1f} | {r['server_cpu_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="backup,restore,transfer")
    parser.add_argument("--server", choices=["redis", "valkey"], default="redis")
    args = parser.parse_args()
    global SERVER
    SERVER = args.server
    only = set(args.only.split(","))
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work, home = Path(tmp), Path(tmp) / "prefect-home"
        for sub in ("one", "three"):
            (work / sub).mkdir()
        single, cluster = start_server(SERVER), BenchCluster()
        try:
            log(f"seeding {args.keys:,} keys into one server and into the cluster")
            seed(single, args.keys, 1)
            seed_cluster(cluster, args.keys, 1, work)
            assert cluster.dbsize() == single.dbsize() == args.keys
            if "backup" in only:
                results += bench_backup({"single": single, "cluster": cluster}, args.keys, work, home, args.repeat)
            if "restore" in only:
                results += bench_restore(single, args.keys, work, home, args.repeat, cluster.owner)
            if "transfer" in only:
                results += bench_transfer(single, args.keys, work, home, args.repeat)
        finally:
            single.stop()
            cluster.stop()
    print(markdown(results))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cluster-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2))
    log(f"results in {out}")


if __name__ == "__main__":
    main()
