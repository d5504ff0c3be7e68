"""Benchmark what operators run: the `session-migration` command, process start to exit.

    python benchmarks/cli.py [--keys 1000000] [--small 100000] [--repeat 3] [--warmup 1] [--only quick,backup,restore,flow]
    python benchmarks/cli.py --only big [--big-keys 2000] [--big-bytes 1000000]

On throwaway Redis 7.0 servers on free loopback ports, with the express-session data of run.py:

  quick    without a Prefect server: an empty backup, `validate` of a small snapshot, a bad
           `--batch-size`, and `snapshots ROOT`; each 5 times, the median wall time
  backup   `session-migration backup` (direct mode) of --keys keys  vs  `redis-cli --rdb`,
           alternating, --repeat pairs; wall time and the peak memory of the CLI's process tree
  restore  `session-migration restore` into a new empty server  vs  `redis-cli --pipe` of the
           same `SET key value PX ttl` stream (built before timing), alternating
           (both: --warmup pairs first, run and not counted: the first command after the seeding
           has at times taken twice as long on this VM, whichever it was)
  flow     with a running local `prefect server start`: the same backup in flow mode
           (PREFECT_API_URL set) and in direct mode, alternating, at --small and at --keys keys,
           and of a pattern nothing matches (0 keys: the fixed cost alone): what a flow run adds;
           and Prefect's own fixed cost: an empty `@flow` in its own process vs `python -c pass`
  big      (only when asked) backup and restore as above, of --big-keys sessions of --big-bytes
           each: the peak memory of a store of big values (docs/benchmarks.md, budget.py)

Prints Markdown tables and writes benchmarks/results/cli-<time>.json. Measurement only:
nothing here asserts a timing. Every server it starts is stopped, also on error.
"""

from __future__ import annotations

import argparse
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

from common import REDIS_CLI, measure, seed, seed_big, start_server  # noqa: E402
from run import PrefectServer, _base_env  # noqa: E402
from run_writes import fresh_target, pipe_file  # noqa: E402

RESULTS = HERE / "results"
CLI = [sys.executable, "-m", "session_migration_cli"]
QUICK_RUNS = 5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def direct_env(home: Path) -> dict[str, str]:
    env = _base_env()  # no PREFECT_API_URL
    env["PREFECT_HOME"] = str(home)  # no profile that points at a server
    return env


def server_env(home: Path, api_url: str) -> dict[str, str]:
    """As `direct_env`, with the running Prefect server as the API: flow mode."""
    env = direct_env(home)
    env["PREFECT_API_URL"] = api_url
    return env


def row(name: str, keys: int, m) -> dict:
    if m.returncode not in (0, 1, 2):
        raise RuntimeError(f"{name} failed (rc={m.returncode}):\n{m.stdout[-2000:]}\n{m.stderr[-2000:]}")
    return {"contestant": name, "keys": keys, "wall_s": round(m.wall_s, 3),
            "keys_per_s": round(keys / m.wall_s, 1) if keys else None,
            "peak_mb": round(max(m.hwm_kb, m.tree_peak_kb) / 1024, 1), "returncode": m.returncode,
            "client_cpu_s": round(m.user_s + m.sys_s, 2), "server_cpu_s": round(m.server_cpu_s, 2)}


def median(rows: list[dict], name: str, keys: int) -> dict:
    mine = sorted((r for r in rows if r["contestant"] == name and r["keys"] == keys), key=lambda r: r["wall_s"])
    chosen = dict(mine[len(mine) // 2])
    chosen["runs_wall_s"] = [r["wall_s"] for r in mine]
    chosen["peak_mb"] = max(r["peak_mb"] for r in mine)
    return chosen


def quick(work: Path, home: Path) -> list[dict]:
    """Commands that do almost nothing: what the CLI's own start-up costs."""
    server = start_server("redis")
    try:
        seed(server, 840, seed_value=5)
        snap_root = work / "quick-snaps"
        env = direct_env(home)
        made = measure([*CLI, "backup", server.url, str(snap_root), "-p", "sess:*", "--snapshot-id", "small"],
                       server=server, env=env)
        assert made.returncode == 0, made.stderr
        cases = {
            "empty backup": [*CLI, "backup", server.url, str(work / "empty"), "-p", "nothing:*"],
            "validate (840 rows)": [*CLI, "validate", str(snap_root / "small")],
            "bad --batch-size": [*CLI, "backup", server.url, str(work / "bad"), "--batch-size", "0"],
            "snapshots ROOT": [*CLI, "snapshots", str(snap_root)],
        }
        rows = []
        for _ in range(QUICK_RUNS):
            for name, cmd in cases.items():
                rows.append(row(name, 0, measure(cmd, server=server, env=env)))
                log(f"{name:>22}: {rows[-1]['wall_s']:.2f} s (exit {rows[-1]['returncode']})")
        return [median(rows, name, 0) for name in cases]
    finally:
        server.stop()


def backup_vs_rdb(source, keys: int, work: Path, home: Path, repeat: int, warmup: int) -> list[dict]:
    rows = []
    for i in range(-warmup, repeat):  # negative: a warm-up pair, dropped below
        dest = work / f"cli-backup-{i}"
        rows.append(row("cli backup", keys, measure([*CLI, "backup", source.url, str(dest), "-p", "sess:*"],
                                                    server=source, env=direct_env(home))))
        shutil.rmtree(dest, ignore_errors=True)
        rdb = work / "x.rdb"
        rows.append(row("redis-cli --rdb", keys, measure([REDIS_CLI, "-h", "127.0.0.1", "-p", str(source.port),
                                                          "--rdb", str(rdb)], server=source,
                                                         settle=source.wait_no_child)))
        rdb.unlink(missing_ok=True)
        log(f"backup pair {i + 1 if i >= 0 else 'warm-up'}: cli {rows[-2]['wall_s']:.2f} s "
            f"({rows[-2]['peak_mb']:.0f} MB), rdb {rows[-1]['wall_s']:.2f} s")
        if i < 0:
            del rows[-2:]
    return [median(rows, "cli backup", keys), median(rows, "redis-cli --rdb", keys)]


def restore_vs_pipe(source, keys: int, work: Path, home: Path, repeat: int, warmup: int) -> list[dict]:
    snap_root = work / "restore-snaps"
    made = measure([*CLI, "backup", source.url, str(snap_root), "-p", "sess:*", "--snapshot-id", "r"], server=source,
                   env=direct_env(home))
    assert made.returncode == 0, made.stderr
    snapshot = str(snap_root / "r")
    stream = work / "pipe.resp"
    pipe_file(snapshot, stream)
    os.sync()
    rows = []
    for i in range(-warmup, repeat):  # negative: a warm-up pair, dropped below
        with fresh_target() as target:
            rows.append(row("cli restore", keys, measure([*CLI, "restore", snapshot, target.url], server=target,
                                                         env=direct_env(home))))
        with fresh_target() as target:
            rows.append(row("redis-cli --pipe", keys, measure(
                ["sh", "-c", f"{REDIS_CLI} -h 127.0.0.1 -p {target.port} --pipe < {stream}"], server=target)))
        log(f"restore pair {i + 1 if i >= 0 else 'warm-up'}: cli {rows[-2]['wall_s']:.2f} s, "
            f"pipe {rows[-1]['wall_s']:.2f} s")
        if i < 0:
            del rows[-2:]
    stream.unlink()
    shutil.rmtree(snap_root, ignore_errors=True)
    return [median(rows, "cli restore", keys), median(rows, "redis-cli --pipe", keys)]


def flow_vs_direct(source, keys: int, work: Path, home: Path, api_url: str, repeat: int,
                   pattern: str = "sess:*") -> list[dict]:
    """`keys` is the count in scope; with `pattern="none:*"` (0 keys) what is left is the fixed cost."""
    rows = []
    flow_env = server_env(home, api_url)
    for i in range(repeat):
        for name, env in (("cli backup, direct", direct_env(home)), ("cli backup, flow (server)", flow_env)):
            dest = work / f"flow-{keys}-{i}"
            rows.append(row(name, keys, measure([*CLI, "backup", source.url, str(dest), "-p", pattern],
                                                server=source, env=env)))
            shutil.rmtree(dest, ignore_errors=True)
        log(f"{keys:,} keys, pair {i + 1}: direct {rows[-2]['wall_s']:.2f} s, flow {rows[-1]['wall_s']:.2f} s")
    return [median(rows, "cli backup, direct", keys), median(rows, "cli backup, flow (server)", keys)]


EMPTY_FLOW = """from prefect import flow

@flow(name="empty")
def empty() -> None:
    return None

empty()
"""


def prefect_floor(source, work: Path, home: Path, api_url: str, repeat: int) -> list[dict]:
    """Prefect's own fixed cost, which the issue accepts: an empty `@flow` run in a process of its
    own against the same server, against a bare interpreter; alternating."""
    script = work / "empty_flow.py"
    script.write_text(EMPTY_FLOW)
    env = server_env(home, api_url)
    rows = []
    for i in range(repeat):
        rows.append(row("empty Prefect flow, own process", 0, measure([sys.executable, str(script)], server=source,
                                                                      env=env)))
        rows.append(row("python -c pass", 0, measure([sys.executable, "-c", "pass"], server=source, env=env)))
        log(f"Prefect floor, pair {i + 1}: empty flow {rows[-2]['wall_s']:.2f} s, bare {rows[-1]['wall_s']:.2f} s")
    return [median(rows, "empty Prefect flow, own process", 0), median(rows, "python -c pass", 0)]


def markdown(results: list[dict]) -> str:
    lines = ["| contestant | keys | wall s (median) | runs | keys/s | peak MB |", "|---|---:|---:|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r['contestant']} | {r['keys']:,} | {r['wall_s']:.2f} | "
                     f"{', '.join(f'{w:.2f}' for w in r['runs_wall_s'])} | "
                     f"{r['keys_per_s'] or 0:,.0f} | {r['peak_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="pairs run first and not counted (backup, restore)")
    parser.add_argument("--only", default="quick,backup,restore,flow")
    parser.add_argument("--big-keys", type=int, default=2000)
    parser.add_argument("--big-bytes", type=int, default=1_000_000)
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    home = work / "prefect-home"
    results: list[dict] = []
    try:
        if "quick" in only:
            results += quick(work, home)
        if only & {"backup", "restore", "flow"}:
            source = start_server("redis")
            try:
                sizes = [args.keys] if only <= {"backup", "restore"} else [args.small, args.keys]
                seeded = 0
                for keys in sizes:
                    seed(source, keys - seeded, seed_value=11 + seeded)
                    seeded = keys
                    if "flow" in only:
                        server = PrefectServer()
                        try:
                            if keys == sizes[0]:  # nothing in scope: the fixed cost alone, and Prefect's own
                                results += flow_vs_direct(source, 0, work, home, server.api_url, args.repeat,
                                                          pattern="none:*")
                                results += prefect_floor(source, work, home, server.api_url, args.repeat)
                            results += flow_vs_direct(source, keys, work, home, server.api_url, args.repeat)
                        finally:
                            server.stop()
                    if keys == args.keys and "backup" in only:
                        results += backup_vs_rdb(source, keys, work, home, args.repeat, args.warmup)
                    if keys == args.keys and "restore" in only:
                        results += restore_vs_pipe(source, keys, work, home, args.repeat, args.warmup)
            finally:
                source.stop()
        if "big" in only:
            source = start_server("redis")
            try:
                seed_big(source, args.big_keys, args.big_bytes, seed_value=13)
                results += backup_vs_rdb(source, args.big_keys, work, home, args.repeat, args.warmup)
                results += restore_vs_pipe(source, args.big_keys, work, home, args.repeat, args.warmup)
            finally:
                source.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(results))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cli-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=1))
    by = {(r["contestant"], r["keys"]): r for r in results}
    for keys in sorted({r["keys"] for r in results}):
        pairs = {"backup vs rdb (x faster)": ("redis-cli --rdb", "cli backup"),
                 "restore vs pipe (x throughput)": ("redis-cli --pipe", "cli restore")}
        for label, (ref, ours) in pairs.items():
            if (ref, keys) in by and (ours, keys) in by:
                print(f"{keys:,} keys, {label}: {by[ref, keys]['wall_s'] / by[ours, keys]['wall_s']:.2f}")
        flow, direct = by.get(("cli backup, flow (server)", keys)), by.get(("cli backup, direct", keys))
        if flow and direct:
            print(f"{keys:,} keys, flow run adds: {flow['wall_s'] - direct['wall_s']:+.2f} s "
                  f"(median of {args.repeat} alternating pairs)")
    empty, bare = by.get(("empty Prefect flow, own process", 0)), by.get(("python -c pass", 0))
    if empty and bare:
        print(f"Prefect's own fixed cost (an empty flow's process minus a bare interpreter): "
              f"{empty['wall_s'] - bare['wall_s']:.2f} s")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
